//! The live model table and the model lifecycle: loading, reloading and unloading models
//! (Triton's model control modes), canary routing, and scale to zero with an in-process
//! activator.
//!
//! The shape: [`lifecycle`] is the model table as a pure state machine (event in, next table
//! and effects out); `loader`, `activator` and `rollout` are the drivers that do the IO (read
//! and load versions, cold starts, the traffic API and canary verdicts), feed events to it and
//! carry out its effects; this module holds the types and the public facade.
//!
//! What is locked, and when:
//! - Requests ([`ModelRegistry::route`] and [`Routed::infer`]) take no mutex on a ready
//!   version: one [`ArcSwap`] load of the table, and the model's runtime state
//!   ([`ModelRuntime`]: split counter, last use, judge) is reached from its table entry through
//!   atomics. Two exceptions: while a split with a rollback rule runs, each request of the split
//!   locks that model's judge briefly to record its outcome; and a request to a scaled-to-zero
//!   version waits for the model's control lock while it loads (the activator).
//! - Changes to one model (load, unload, traffic change, activation, scale to zero) are
//!   serialized by that model's async control mutex; each builds a new table and swaps it in
//!   whole (retrying if another model changed the table meanwhile). An automatic rollback swaps
//!   without the control lock: it only ends a split, and the pure transition is re-applied to
//!   whatever table is current.
//! - The registry's map of runtimes (to find a model's control lock before its first entry
//!   exists) and its set of models being loaded are std mutexes taken only by control
//!   operations and the repository index, never by requests.
//!
//! A request holds an `Arc` of the version it runs on, so a version replaced or unloaded
//! mid-request finishes its requests and is dropped — weights, scheduler and threads — only
//! when the last one completes.

mod activator;
pub mod fingerprint;
pub mod judge;
pub mod lifecycle;
mod loader;
pub mod policy;
mod rollout;
mod routed;
pub mod traffic;

use std::{
    collections::{HashMap, HashSet},
    path::{Component, Path, PathBuf},
    str::FromStr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use crate::{
    model::{LoadOptions, ModelVersion, VersionInfo},
    repository::{model_names, ModelDirectory, RepositoryError},
    ServeError,
};
use fingerprint::Fingerprint;
use judge::{CanaryJudge, RollbackRule};
pub use lifecycle::UNLOADED;
use lifecycle::{Effect, Event, Kinds};
pub use routed::Routed;
use traffic::Revision;

/// The handle types of the live table: loaded versions, their metadata, where they were read
/// from and each model's runtime state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live;

impl Kinds for Live {
    type Model = Arc<ModelVersion>;
    type Info = Arc<VersionInfo>;
    type Source = Arc<ModelSource>;
    type Runtime = Arc<ModelRuntime>;

    fn info(model: &Arc<ModelVersion>) -> Arc<VersionInfo> {
        model.info().clone()
    }
}

/// The state of one model version.
pub type VersionState = lifecycle::VersionState<Live>;
/// What the server knows of one model.
pub type ModelEntry = lifecycle::ModelEntry<Live>;
/// An immutable snapshot of every model.
pub type ModelTable = lifecycle::ModelTable<Live>;

/// Where a model's versions were loaded from: the directory as read (with any config given in
/// the load request) and its fingerprint, for reloads and cold starts.
#[derive(Debug)]
pub struct ModelSource {
    pub(crate) dir: Arc<ModelDirectory>,
    pub(crate) fingerprint: Fingerprint,
}

/// State of a model that outlives table swaps: what requests update. Every table entry of the
/// model holds the same one.
#[derive(Debug)]
pub struct ModelRuntime {
    /// Unversioned requests so far, for the split.
    pub(crate) routed: AtomicU64,
    /// The canary comparison, while a split with a rollback rule runs (empty otherwise, so
    /// requests skip its lock).
    pub(crate) judge: ArcSwapOption<Mutex<CanaryJudge>>,
    /// The second of the last rollback check.
    pub(crate) judged_at: AtomicU64,
    /// Requests routed to this model so far (an autoscaler's requests-per-second source).
    pub(crate) requests: AtomicU64,
    /// Serializes loads, unloads, activations and rollout changes of this model.
    pub(crate) control: tokio::sync::Mutex<()>,
    /// Requests waiting for a cold start (the activator's buffer).
    pub(crate) cold_waiters: AtomicUsize,
}

impl ModelRuntime {
    fn new() -> ModelRuntime {
        ModelRuntime {
            routed: AtomicU64::new(0),
            judge: ArcSwapOption::empty(),
            judged_at: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            control: tokio::sync::Mutex::new(()),
            cold_waiters: AtomicUsize::new(0),
        }
    }

    /// The rule of the running judge, if any.
    fn rollback_rule(&self) -> Option<RollbackRule> {
        self.judge.load().as_ref().map(|j| *lock(j).rule())
    }
}

/// The table and what the drivers share with requests in flight (never the registry itself).
#[derive(Debug)]
pub(crate) struct Shared {
    table: ArcSwap<ModelTable>,
    epoch: Instant,
    load: LoadOptions,
}

impl Shared {
    /// Milliseconds since the registry started.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Applies `event` to `name` through the pure core and swaps the result in; returns the
    /// effects of the transition that took.
    pub(crate) fn apply(&self, name: &str, event: &Event<Live>) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.table.rcu(|table| {
            let (next, fx) = lifecycle::apply(table, name, event);
            effects = fx;
            next
        });
        effects
    }

    /// Carries out the bookkeeping effects on the model's runtime state, logs and metrics;
    /// returns the message of a refusal or failure for the caller.
    pub(crate) fn perform(&self, name: &str, runtime: &ModelRuntime, effects: &[Effect]) -> Result<(), String> {
        let mut failure = Ok(());
        for effect in effects {
            match effect {
                Effect::Judge(rule) => runtime.judge.store(rule.map(|r| Arc::new(Mutex::new(CanaryJudge::new(r))))),
                Effect::LoadFailed(m) | Effect::ReadFailed(m) | Effect::Refused(m) => failure = Err(m.clone()),
                Effect::CanaryIgnored(e) => tracing::warn!(model = name, "config canary ignored: {e}"),
                Effect::Unloaded => tracing::info!(model = name, "unloaded; versions are released as their requests finish"),
                Effect::Removed => tracing::info!(model = name, "removed; versions are released as their requests finish"),
                Effect::ScaledToZero(released) => {
                    metrics::counter!("quiver_model_scale_to_zero_total", "model" => name.to_string()).increment(1);
                    tracing::info!(model = name, "idle: scaled to zero (versions {released:?} released)");
                }
                Effect::Activated(_) => {}
                Effect::TrafficChanged(split) => tracing::info!(model = name, "traffic: {split:?}"),
                Effect::RolledBack { trigger, reason } => {
                    metrics::counter!("quiver_canary_rollbacks_total", "model" => name.to_string(), "trigger" => trigger.as_str())
                        .increment(1);
                    if *trigger == lifecycle::Trigger::Auto {
                        tracing::warn!(model = name, "canary rolled back: {reason}");
                    }
                }
            }
        }
        failure
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version, empty for a model that could not be read.
    pub version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is not ready, or `scaled to zero`.
    pub reason: String,
}

/// How a repository load went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSummary {
    /// Models whose selected versions all loaded.
    pub ready: usize,
    /// Models with at least one version (or the model itself) unavailable.
    pub failed: usize,
}

/// Triton's `--model-control-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Load every model at startup; the load/unload API is refused.
    #[default]
    None,
    /// Load only `--load-model` models at startup (`*` for all); the API loads and unloads.
    Explicit,
    /// Load every model at startup and rescan the repository periodically; the API is refused.
    Poll,
}

impl FromStr for ControlMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ControlMode::None),
            "explicit" => Ok(ControlMode::Explicit),
            "poll" => Ok(ControlMode::Poll),
            other => Err(format!("unknown model control mode '{other}' (expected none, explicit or poll)")),
        }
    }
}

/// How the registry loads models.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Settings for every model load.
    pub load: LoadOptions,
    /// When models load and unload.
    pub control_mode: ControlMode,
    /// Explicit mode: the models loaded at startup (`*` for all).
    pub startup_models: Vec<String>,
}

/// The rollout of a model as the traffic API shows it (KServe's traffic status, per model).
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    /// Model name.
    pub model: String,
    /// Versions that can take traffic.
    pub ready_versions: Vec<String>,
    /// The version unversioned requests go to without a split.
    pub default_version: Option<String>,
    /// Each side's version and share, while a split runs.
    pub traffic: Vec<TrafficTarget>,
    /// The version that last took all traffic.
    pub latest_rolledout_version: Option<String>,
    /// The version rolled out before it.
    pub previous_rolledout_version: Option<String>,
    /// The automatic rollback rule, if any.
    pub rollback_rule: Option<RollbackRule>,
    /// Rollbacks so far.
    pub rollbacks: u64,
    /// Why the last rollback happened.
    pub last_rollback_reason: Option<String>,
}

/// One side of a split.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficTarget {
    /// `stable` or `canary`.
    pub tag: Revision,
    /// Its version.
    pub version: String,
    /// Its share of unversioned requests.
    pub percent: u32,
}

/// A change of a model's traffic through the API.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficChange {
    /// Start or adjust a split.
    Split {
        /// The canary version.
        canary: u64,
        /// Its share, 0 to 100.
        percent: u32,
        /// The stable version (default: the one serving now).
        stable: Option<u64>,
        /// An automatic rollback rule for it.
        rollback: Option<RollbackRule>,
    },
    /// The canary takes all traffic.
    Promote,
    /// All traffic returns to the stable version.
    Rollback,
    /// All unpinned traffic goes to `version`, which becomes the rolled-out version; a split in
    /// progress ends. A control plane uses it to decide which version serves before a newer one
    /// finishes loading (without it the highest version that serves takes traffic).
    Pin {
        /// The version to serve.
        version: u64,
    },
}

/// The models of one repository.
#[derive(Debug)]
pub struct ModelRegistry {
    repository: PathBuf,
    options: RegistryOptions,
    shared: Arc<Shared>,
    loaded: AtomicBool,
    /// Each model's runtime state, so a model's first load finds its control lock; control
    /// operations only.
    runtimes: Mutex<HashMap<String, Arc<ModelRuntime>>>,
    /// Models with a load in progress (shown as LOADING until they first enter the table).
    loading: Mutex<HashSet<String>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ModelRegistry {
    /// An empty registry for `repository`; call [`ModelRegistry::load_startup`] to fill it.
    pub fn new(repository: PathBuf, options: RegistryOptions) -> ModelRegistry {
        let shared =
            Arc::new(Shared { table: ArcSwap::from_pointee(ModelTable::default()), epoch: Instant::now(), load: options.load.clone() });
        ModelRegistry {
            repository,
            options,
            shared,
            loaded: AtomicBool::new(false),
            runtimes: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashSet::new()),
        }
    }

    /// The control mode.
    pub fn control_mode(&self) -> ControlMode {
        self.options.control_mode
    }

    /// Loads the startup models: all of them, or in explicit mode those named by
    /// `--load-model`. Models that fail are recorded as unavailable with the reason.
    pub async fn load_startup(&self) -> Result<LoadSummary, RepositoryError> {
        let all = model_names(&self.repository)?;
        let names: Vec<String> = match self.options.control_mode {
            ControlMode::None | ControlMode::Poll => all,
            ControlMode::Explicit if self.options.startup_models.iter().any(|m| m == "*") => all,
            ControlMode::Explicit => self.options.startup_models.clone(),
        };
        for name in &names {
            if let Err(e) = self.load_model(name, None).await {
                tracing::error!(model = %name, "{e}");
            }
        }
        self.loaded.store(true, Ordering::Release);
        let table = self.shared.table.load();
        let ready = names.iter().filter_map(|n| table.models.get(n)).filter(|m| m.fully_ready()).count();
        Ok(LoadSummary { ready, failed: names.len() - ready })
    }

    /// The load API (`POST /v2/repository/models/{m}/load`): loads or reloads `name`,
    /// optionally with a configuration replacing its `config.pbtxt`. Versions whose files
    /// and config did not change keep serving as they are; new ones are loaded and warmed up
    /// before they take traffic. On failure the versions serving before keep serving.
    pub async fn load(&self, name: &str, config: Option<quiver_core::ModelConfig>) -> Result<(), ServeError> {
        self.check_api_allowed()?;
        check_model_name(name)?;
        if !self.repository.join(name).is_dir() {
            return Err(ServeError::InvalidInput(format!("failed to load '{name}': no model directory '{name}' in the repository")));
        }
        self.load_model(name, config).await.map_err(ServeError::InvalidInput)
    }

    /// The unload API: stops routing to every version of `name`. Requests in flight finish;
    /// each version is released when its last request completes.
    pub async fn unload(&self, name: &str) -> Result<(), ServeError> {
        self.check_api_allowed()?;
        check_model_name(name)?;
        // Unloading a model that is not loaded succeeds, as in Triton.
        self.unload_model(name).await;
        Ok(())
    }

    /// Removes `name` for good (its owner, a control plane, deleted it): unloaded as by the
    /// unload API, then gone from the index, the metadata and the routes (404), where an
    /// unloaded model stays listed as unavailable. Requests in flight finish.
    pub async fn remove(&self, name: &str) -> Result<(), ServeError> {
        self.check_api_allowed()?;
        check_model_name(name)?;
        let Some(runtime) = self.shared.table.load().models.get(name).map(|e| e.runtime.clone()) else { return Ok(()) };
        let _control = runtime.control.lock().await;
        let effects = self.shared.apply(name, &Event::Remove);
        let _ = self.shared.perform(name, &runtime, &effects);
        lock(&self.runtimes).remove(name);
        Ok(())
    }

    fn check_api_allowed(&self) -> Result<(), ServeError> {
        match self.options.control_mode {
            ControlMode::Explicit => Ok(()),
            mode => Err(ServeError::InvalidInput(format!(
                "explicit model load / unload is not allowed in model control mode '{}'; start the server with --model-control-mode explicit",
                match mode {
                    ControlMode::Poll => "poll",
                    _ => "none",
                }
            ))),
        }
    }

    /// Whether the startup load includes `name`.
    fn is_startup_model(&self, name: &str) -> bool {
        match self.options.control_mode {
            ControlMode::None | ControlMode::Poll => true,
            ControlMode::Explicit => self.options.startup_models.iter().any(|m| m == "*" || m == name),
        }
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<ModelTable> {
        self.shared.table.load_full()
    }

    /// Whether the startup load finished and every model loaded (and not unloaded since) has
    /// a version that serves.
    pub fn all_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self.shared.table.load().models.values().filter(|m| !m.unloaded()).all(|m| m.versions.values().any(VersionState::servable))
    }

    /// The metadata of `name` at `version` (empty = the version unversioned requests go to,
    /// without a split's weighting), without loading weights (a scaled-to-zero version answers
    /// from what it kept).
    pub fn info(&self, name: &str, version: &str) -> Result<Arc<VersionInfo>, ServeError> {
        let table = self.shared.table.load();
        let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
        let number = if version.is_empty() {
            entry.default_version().ok_or_else(|| lifecycle::no_versions(name, entry))?
        } else {
            version.parse().map_err(|_| lifecycle::unknown_version(name, version))?
        };
        match entry.versions.get(&number).ok_or_else(|| lifecycle::unknown_version(name, version))? {
            VersionState::Ready(m) => Ok(m.info().clone()),
            VersionState::Idle(info) => Ok(info.clone()),
            VersionState::Unavailable(reason) => {
                Err(ServeError::Unavailable(format!("model '{name}' version {number} is not ready: {reason}")))
            }
        }
    }

    /// Whether `name` at `version` can take requests (a scaled-to-zero version can).
    pub fn is_ready(&self, name: &str, version: &str) -> bool {
        self.info(name, version).is_ok()
    }

    /// The versions of a model that can take requests, ascending, as the metadata lists them.
    pub fn ready_versions(&self, name: &str) -> Vec<String> {
        let table = self.shared.table.load();
        table
            .models
            .get(name)
            .map(|e| e.versions.iter().filter(|(_, s)| s.servable()).map(|(v, _)| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// The repository index: every model version and its state. With `ready_only`, only
    /// ready versions.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let table = self.shared.table.load();
        let mut rows = Vec::new();
        for (name, entry) in &table.models {
            if let Some(error) = &entry.error {
                if !ready_only {
                    rows.push(IndexEntry { name: name.clone(), version: String::new(), state: "UNAVAILABLE", reason: error.clone() });
                }
                continue;
            }
            for (version, state) in &entry.versions {
                let (state, reason) = match state {
                    VersionState::Ready(_) => ("READY", String::new()),
                    VersionState::Idle(_) => ("READY", "scaled to zero".to_string()),
                    VersionState::Unavailable(reason) => ("UNAVAILABLE", reason.clone()),
                };
                if !ready_only || state == "READY" {
                    rows.push(IndexEntry { name: name.clone(), version: version.to_string(), state, reason });
                }
            }
            if let (Some(error), false) = (&entry.reload_error, ready_only) {
                // A reload that failed as a whole while the versions above keep serving.
                rows.push(IndexEntry { name: name.clone(), version: String::new(), state: "UNAVAILABLE", reason: error.clone() });
            }
        }
        if !ready_only {
            // Models in the repository that are not in the table: still to come in the startup
            // load (LOADING), or never loaded (explicit mode), as Triton lists them.
            let starting = !self.loaded.load(Ordering::Acquire);
            for name in model_names(&self.repository).unwrap_or_default() {
                if table.models.contains_key(&name) {
                    continue;
                }
                let (state, reason) = if (starting && self.is_startup_model(&name)) || lock(&self.loading).contains(&name) {
                    ("LOADING", String::new())
                } else {
                    ("UNAVAILABLE", "not loaded".to_string())
                };
                rows.push(IndexEntry { name, version: String::new(), state, reason });
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
        }
        rows
    }
}

/// Refuses model names that are not a single directory name: no separator (`/`, or `\\`
/// which some clients and file systems treat as one), no `.`/`..` or hidden name, no NUL or
/// control character. The HTTP edge has percent-decoded the name once, so `%2e%2e` and `%2f`
/// arrive here as `..` and `/`.
fn check_model_name(name: &str) -> Result<(), ServeError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None)
            if !name.starts_with('.') && !name.contains(['/', '\\']) && !name.chars().any(char::is_control) =>
        {
            Ok(())
        }
        _ => Err(ServeError::InvalidInput(format!(
            "'{}' is not a model name (a single directory name of the repository)",
            name.escape_debug()
        ))),
    }
}

fn unknown_model(name: &str) -> ServeError {
    ServeError::NotFound(format!("Request for unknown model: '{name}' is not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_modes_parse() {
        assert_eq!("none".parse::<ControlMode>().unwrap(), ControlMode::None);
        assert_eq!("EXPLICIT".parse::<ControlMode>().unwrap(), ControlMode::Explicit);
        assert_eq!("poll".parse::<ControlMode>().unwrap(), ControlMode::Poll);
        assert!("auto".parse::<ControlMode>().is_err());
    }

    #[test]
    fn model_names_are_single_directories() {
        assert!(check_model_name("mlp").is_ok());
        assert!(check_model_name("my model-2").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "..\\x", "a\\b", "a\0b", "a\nb", "./a", "a/"] {
            assert!(check_model_name(bad).is_err(), "{bad}");
        }
    }
}
