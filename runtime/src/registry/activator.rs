//! The activator driver: scale to zero of idle models, and the cold start of a scaled-to-zero
//! version when a request reaches it (one load per burst, each request waiting in a bounded
//! buffer up to the cold-start timeout).

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use tracing::info;

use super::{
    lifecycle::{Effect, Event},
    loader::load_version,
    policy::ColdStart,
    unknown_model, ModelRegistry, ModelRuntime, Shared, VersionState,
};
use crate::{model::ModelVersion, ServeError};

impl ModelRegistry {
    /// The models whose configuration lets them scale to zero (`min_instances: 0`), with their
    /// grace period: what `quiver serve`'s autoscaler drives.
    pub fn scale_to_zero_policies(&self) -> Vec<(String, std::time::Duration)> {
        let table = self.shared.table.load();
        table.models.iter().filter_map(|(name, e)| e.policy.idle.map(|idle| (name.clone(), idle.grace))).collect()
    }

    /// Whether `name` has a version loaded (not scaled to zero, not unloaded).
    pub fn is_loaded(&self, name: &str) -> bool {
        let table = self.shared.table.load();
        table.models.get(name).is_some_and(|e| e.versions.values().any(|s| matches!(s, VersionState::Ready(_))))
    }
}

impl ModelRegistry {
    /// Requests in flight on `name` (queued or executing, on every loaded version): the
    /// concurrency an autoscaler samples, with the requests waiting for a cold start. Each
    /// request holds its version, and the table one more reference; 0 for an unknown model.
    pub fn in_flight(&self, name: &str) -> u32 {
        let table = self.shared.table.load();
        let Some(entry) = table.models.get(name) else { return 0 };
        // Requests waiting for a cold start count too: they are the load that woke it.
        let waiting = entry.runtime.cold_waiters.load(Ordering::Relaxed);
        let held: usize = waiting
            + entry
                .versions
                .values()
                .map(|s| match s {
                    VersionState::Ready(m) => Arc::strong_count(m).saturating_sub(1),
                    _ => 0,
                })
                .sum::<usize>();
        u32::try_from(held).unwrap_or(u32::MAX)
    }

    /// Requests routed to `name` since it was first loaded (0 for an unknown model): an
    /// autoscaler's requests-per-second source, as the difference of two readings.
    pub fn requests(&self, name: &str) -> u64 {
        self.shared.table.load().models.get(name).map_or(0, |e| e.runtime.requests.load(Ordering::Relaxed))
    }

    /// Sets the replicas of `name` as an autoscaler decided them: 0 releases every loaded
    /// version without requests in flight (the next request loads it again, as for idle scale
    /// to zero); above 0, each loaded version lets that many instances execute at once (up to
    /// the instances its config starts). Returns the replicas ready now: the active instances
    /// of the version that serves unversioned requests, 0 while it is scaled to zero.
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<u32, ServeError> {
        let runtime = self.shared.table.load().models.get(name).map(|e| e.runtime.clone()).ok_or_else(|| unknown_model(name))?;
        if replicas == 0 {
            // A load or activation in progress wins; the autoscaler asks again next tick.
            if let Ok(_control) = runtime.control.try_lock() {
                let busy = busy_versions(&self.shared, name);
                let effects = self.shared.apply(name, &Event::Release { busy });
                let _ = self.shared.perform(name, &runtime, &effects);
            }
        }
        let table = self.shared.table.load();
        let Some(entry) = table.models.get(name) else { return Ok(0) };
        let mut ready = 0;
        for (version, state) in &entry.versions {
            if let VersionState::Ready(model) = state {
                let active = if replicas == 0 { model.instances().0 } else { model.set_active_instances(replicas as usize) };
                if Some(*version) == entry.default_version() {
                    ready = u32::try_from(active).unwrap_or(u32::MAX);
                }
            }
        }
        Ok(ready)
    }
}

/// The ready versions of `name` with requests in flight. The table holds one reference to
/// each loaded version and every request one more; this guard holds none (it borrows the
/// table), so a count above one means a request holds it.
fn busy_versions(shared: &Shared, name: &str) -> BTreeSet<u64> {
    let table = shared.table.load();
    let Some(entry) = table.models.get(name) else { return BTreeSet::new() };
    entry
        .versions
        .iter()
        .filter_map(|(v, s)| match s {
            VersionState::Ready(m) if Arc::strong_count(m) > 1 => Some(*v),
            _ => None,
        })
        .collect()
}

/// Loads scaled-to-zero `version` of `name` while the request waits: one load however many
/// requests arrive, each waiting in a bounded buffer up to the cold-start timeout.
pub(super) async fn activate(
    shared: &Shared,
    runtime: &ModelRuntime,
    name: &str,
    version: u64,
    cold_start: ColdStart,
) -> Result<Arc<ModelVersion>, ServeError> {
    let _waiting = Waiting::enter(&runtime.cold_waiters, cold_start.buffer).ok_or_else(|| {
        ServeError::Unavailable(format!("model '{name}' is starting and its cold-start buffer of {} requests is full", cold_start.buffer))
    })?;
    let load = async {
        let _control = runtime.control.lock().await;
        let source = {
            let table = shared.table.load();
            let entry = table.models.get(name).ok_or_else(|| super::unknown_model(name))?;
            match entry.versions.get(&version) {
                Some(VersionState::Ready(m)) => return Ok(m.clone()), // another request activated it
                Some(VersionState::Idle(_)) => entry.source.clone(),
                _ => return Err(ServeError::Unavailable(format!("model '{name}' version {version} was unloaded"))),
            }
        };
        let source = source.ok_or_else(|| ServeError::Unavailable(format!("model '{name}' has no source to load from")))?;
        let started = Instant::now();
        let model = match load_version(&source.dir, version, &shared.load).await {
            Ok(model) => model,
            Err(e) => {
                shared.apply(name, &Event::ActivationFailed { version });
                return Err(ServeError::Unavailable(format!("model '{name}' version {version} failed to start: {e}")));
            }
        };
        let cold_start_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let effects = shared.apply(name, &Event::Activated { version, model: model.clone() });
        if effects.contains(&Effect::Activated(version)) {
            let labels = [("model", name.to_string()), ("version", model.version().to_string())];
            metrics::counter!("quiver_model_cold_starts_total", &labels).increment(1);
            metrics::counter!("quiver_model_cold_start_duration_us", &labels).increment(cold_start_us);
            metrics::gauge!("quiver_model_last_cold_start_us", &labels).set(cold_start_us as f64);
            info!(model = name, version, "cold start in {} µs", cold_start_us);
        }
        Ok(model)
    };
    tokio::time::timeout(cold_start.timeout, load)
        .await
        .map_err(|_| ServeError::Unavailable(format!("model '{name}' did not start within {:?}", cold_start.timeout)))?
}

/// A place in the cold-start buffer, given back when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, limit: usize) -> Option<Waiting<'a>> {
        if count.fetch_add(1, Ordering::AcqRel) >= limit {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_bounded_and_places_come_back() {
        let count = AtomicUsize::new(0);
        let a = Waiting::enter(&count, 2).unwrap();
        let b = Waiting::enter(&count, 2).unwrap();
        assert!(Waiting::enter(&count, 2).is_none());
        drop(a);
        assert!(Waiting::enter(&count, 2).is_some());
        drop(b);
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
