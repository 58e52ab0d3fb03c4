//! Routing a request to a version, and running it there: [`ModelRegistry::route`] picks the
//! version with one lock-free read of the table; [`Routed::infer`] wakes it first when it is
//! scaled to zero.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use tracing::Instrument;

use super::{activator, policy::ColdStart, rollout, traffic::Revision, unknown_model, ModelRegistry, ModelRuntime, Shared, VersionState};
use crate::{
    infer::InferResponse,
    model::{ModelVersion, VersionInfo},
    validate::ValidRequest,
    ServeError,
};

/// The version a request goes to, loaded or scaled to zero.
#[derive(Debug)]
enum Target {
    Ready(Arc<ModelVersion>),
    Idle(Arc<VersionInfo>),
}

/// A request's chosen version, ready to run it. It holds what running needs (the version,
/// the model's runtime state, the table for a cold start or a rollback), not the registry.
#[derive(Debug)]
pub struct Routed {
    target: Target,
    version: u64,
    revision: Option<Revision>,
    cold_start: ColdStart,
    runtime: Arc<ModelRuntime>,
    shared: Arc<Shared>,
}

impl ModelRegistry {
    /// Picks the version that serves a request to `name` (`version` empty: the default, or a
    /// side of the canary split, or the side `pin` names). Loads nothing: a scaled-to-zero
    /// version is woken by [`Routed::infer`], so a request can be checked against
    /// [`Routed::info`] first.
    pub fn route(&self, name: &str, version: &str, pin: Option<Revision>) -> Result<Routed, ServeError> {
        let table = self.shared.table.load();
        let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
        let runtime = &entry.runtime;
        runtime.requests.fetch_add(1, Ordering::Relaxed);
        let (number, revision, state) = entry.pick(name, version, pin, || runtime.routed.fetch_add(1, Ordering::Relaxed))?;
        let target = match state {
            VersionState::Ready(model) => Target::Ready(model.clone()),
            VersionState::Idle(info) => Target::Idle(info.clone()),
            VersionState::Unavailable(reason) => {
                return Err(ServeError::Unavailable(format!("model '{name}' version {number} is not ready: {reason}")))
            }
        };
        if let Some(revision) = revision {
            metrics::counter!("quiver_traffic_requests_total", "model" => name.to_string(), "version" => number.to_string(), "revision" => revision.as_str())
                .increment(1);
        }
        Ok(Routed {
            target,
            version: number,
            revision,
            cold_start: entry.cold_start(),
            runtime: runtime.clone(),
            shared: self.shared.clone(),
        })
    }
}

impl Routed {
    /// The version's metadata (for decoding requests against its inputs), without loading it.
    pub fn info(&self) -> &Arc<VersionInfo> {
        match &self.target {
            Target::Ready(model) => model.info(),
            Target::Idle(info) => info,
        }
    }

    /// The side of a split that serves the request, when a split is active.
    pub fn revision(&self) -> Option<Revision> {
        self.revision
    }

    /// Runs the request on the chosen version, waking it first when it is scaled to zero, and
    /// feeds the canary comparison.
    pub async fn infer(self, request: ValidRequest) -> Result<InferResponse, ServeError> {
        let model = self.wake().await?;
        self.run(&model, request).await
    }

    /// Runs several requests on the chosen version at once (one per text of an embeddings
    /// request): routed once and woken at most once, each request queued and batched on its
    /// own. Fails with the first request that fails.
    pub async fn infer_all(self, requests: Vec<ValidRequest>) -> Result<Vec<InferResponse>, ServeError> {
        let model = self.wake().await?;
        futures_util::future::try_join_all(requests.into_iter().map(|request| self.run(&model, request))).await
    }

    /// The loaded version, loading it first when it is scaled to zero.
    async fn wake(&self) -> Result<Arc<ModelVersion>, ServeError> {
        match &self.target {
            Target::Ready(model) => Ok(model.clone()),
            // Boxed: the cold start's future is large and rare; inline, it would grow the
            // future of every request routed here.
            Target::Idle(info) => {
                Box::pin(activator::activate(&self.shared, &self.runtime, info.name(), self.version, self.cold_start)).await
            }
        }
    }

    async fn run(&self, model: &ModelVersion, request: ValidRequest) -> Result<InferResponse, ServeError> {
        // Only the canary comparison reads the elapsed time.
        let started = self.revision.map(|_| Instant::now());
        let span =
            tracing::debug_span!("model", model = model.name(), version = model.version(), revision = self.revision.map(|r| r.as_str()));
        let result = model.infer(request).instrument(span).await;
        if let (Some(revision), Some(started)) = (self.revision, started) {
            // Only server-side failures count against a version; a client's bad request says
            // nothing of the model.
            let ok = !matches!(&result, Err(e) if !matches!(e, ServeError::InvalidInput(_) | ServeError::NotFound(_)));
            rollout::judge(&self.shared, &self.runtime, model.name(), revision, ok, started.elapsed());
        }
        result
    }
}
