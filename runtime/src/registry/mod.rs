//! The live model table and the model lifecycle: loading, reloading and unloading models
//! (Triton's model control modes), canary routing, and scale to zero with an in-process
//! activator.
//!
//! Every request reads the table without a lock (an [`ArcSwap`]); every change builds a new
//! table and swaps it in whole. A request holds an `Arc` of the version it runs on, so a
//! version replaced or unloaded mid-request finishes its requests and is dropped — weights,
//! scheduler and threads — only when the last one completes. Changes to one model are
//! serialized by that model's control lock; requests never take it.

pub mod fingerprint;
pub mod judge;
pub mod policy;
pub mod traffic;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Component, Path, PathBuf},
    str::FromStr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use quiver_core::ModelConfig;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::{
    infer::InferResponse,
    model::{elapsed_ms, LoadOptions, ModelVersion, VersionInfo},
    repository::{model_names, ModelDirectory, RepositoryError},
    validate::ValidRequest,
    ServeError,
};
use fingerprint::{fingerprint, hash_bytes, Fingerprint};
use judge::{CanaryJudge, RollbackRule};
use policy::{model_policy, ModelPolicy};
use traffic::{Revision, Rollout, RolloutError};

/// The state of one model version.
#[derive(Debug, Clone)]
pub enum VersionState {
    /// Loaded, warmed up and serving.
    Ready(Arc<ModelVersion>),
    /// Scaled to zero: the weights are released, the metadata stays, and the next request
    /// loads it again.
    Idle(Arc<VersionInfo>),
    /// Not serving, with the reason (failed to load, or unloaded).
    Unavailable(String),
}

impl VersionState {
    /// Whether it can take requests (directly, or after a cold start).
    pub fn servable(&self) -> bool {
        !matches!(self, VersionState::Unavailable(_))
    }

    /// Its metadata, when it has any.
    pub fn info(&self) -> Option<&Arc<VersionInfo>> {
        match self {
            VersionState::Ready(m) => Some(m.info()),
            VersionState::Idle(info) => Some(info),
            VersionState::Unavailable(_) => None,
        }
    }
}

/// Where a model's versions were loaded from: the directory as read (with any config given in
/// the load request) and its fingerprint, for reloads and cold starts.
#[derive(Debug)]
struct ModelSource {
    dir: Arc<ModelDirectory>,
    fingerprint: Fingerprint,
}

/// Reason recorded for the versions of an unloaded model (Triton's wording).
pub const UNLOADED: &str = "unloaded";

/// What the server knows of one model.
#[derive(Debug, Clone, Default)]
pub struct ModelEntry {
    /// Its versions, ascending.
    pub versions: BTreeMap<u64, VersionState>,
    /// Why the model could not be read at all (invalid config, no versions), when it has no
    /// version to show for it.
    pub error: Option<String>,
    /// Which versions failed in the last load (their rows in the index say why).
    pub load_error: Option<String>,
    /// Why the last reload failed as a whole (say, a broken config) while the versions loaded
    /// before went on serving.
    pub reload_error: Option<String>,
    /// Canary split and rollout bookkeeping.
    pub rollout: Rollout,
    /// Lifecycle settings from the config.
    pub policy: ModelPolicy,
    source: Option<Arc<ModelSource>>,
}

impl ModelEntry {
    /// The highest version that can serve.
    pub fn highest_servable(&self) -> Option<u64> {
        self.versions.iter().rev().find(|(_, s)| s.servable()).map(|(v, _)| *v)
    }

    /// The version unversioned requests go to when no split is active.
    pub fn default_version(&self) -> Option<u64> {
        self.rollout.latest_rolledout.filter(|v| self.servable(*v)).or_else(|| self.highest_servable())
    }

    fn servable(&self, version: u64) -> bool {
        self.versions.get(&version).is_some_and(VersionState::servable)
    }

    /// Whether every selected version loaded.
    pub fn fully_ready(&self) -> bool {
        self.error.is_none() && !self.versions.is_empty() && self.versions.values().all(VersionState::servable)
    }

    /// Whether the model was unloaded (and not loaded again).
    pub fn unloaded(&self) -> bool {
        !self.versions.is_empty() && self.versions.values().all(|s| matches!(s, VersionState::Unavailable(r) if r == UNLOADED))
    }
}

/// An immutable snapshot of every model.
#[derive(Debug, Clone, Default)]
pub struct ModelTable {
    /// Models by name.
    pub models: BTreeMap<String, ModelEntry>,
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

/// State of a model that outlives table swaps: what requests update.
#[derive(Debug)]
struct ModelRuntime {
    /// Unversioned requests so far, for the split.
    routed: AtomicU64,
    /// The canary comparison, while a split with a rollback rule runs.
    judge: Mutex<Option<CanaryJudge>>,
    /// The second of the last rollback check.
    judged_at: AtomicU64,
    /// Milliseconds since the registry's epoch of the last request.
    last_used_ms: AtomicU64,
    /// Serializes loads, unloads and rollout changes of this model.
    control: tokio::sync::Mutex<()>,
    /// Requests waiting for a cold start (the activator's buffer).
    cold_waiters: AtomicUsize,
}

impl ModelRuntime {
    fn new() -> ModelRuntime {
        ModelRuntime {
            routed: AtomicU64::new(0),
            judge: Mutex::new(None),
            judged_at: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(0),
            control: tokio::sync::Mutex::new(()),
            cold_waiters: AtomicUsize::new(0),
        }
    }
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
}

/// The models of one repository.
#[derive(Debug)]
pub struct ModelRegistry {
    repository: PathBuf,
    options: RegistryOptions,
    table: ArcSwap<ModelTable>,
    loaded: AtomicBool,
    runtimes: Mutex<HashMap<String, Arc<ModelRuntime>>>,
    /// Models with a load in progress (shown as LOADING until they first enter the table).
    loading: Mutex<HashSet<String>>,
    epoch: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ModelRegistry {
    /// An empty registry for `repository`; call [`ModelRegistry::load_startup`] to fill it.
    pub fn new(repository: PathBuf, options: RegistryOptions) -> ModelRegistry {
        ModelRegistry {
            repository,
            options,
            table: ArcSwap::from_pointee(ModelTable::default()),
            loaded: AtomicBool::new(false),
            runtimes: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashSet::new()),
            epoch: Instant::now(),
        }
    }

    /// The control mode.
    pub fn control_mode(&self) -> ControlMode {
        self.options.control_mode
    }

    fn runtime(&self, name: &str) -> Arc<ModelRuntime> {
        lock(&self.runtimes).entry(name.to_string()).or_insert_with(|| Arc::new(ModelRuntime::new())).clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
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
                error!(model = %name, "{e}");
            }
        }
        self.loaded.store(true, Ordering::Release);
        let table = self.table.load();
        let startup = || names.iter().filter_map(|n| table.models.get(n));
        Ok(LoadSummary {
            ready: startup().filter(|m| m.fully_ready()).count(),
            failed: names.len() - startup().filter(|m| m.fully_ready()).count(),
        })
    }

    /// The load API (`POST /v2/repository/models/{m}/load`): loads or reloads `name`,
    /// optionally with a configuration replacing its `config.pbtxt`. Versions whose files
    /// and config did not change keep serving as they are; new ones are loaded and warmed up
    /// before they take traffic. On failure the versions serving before keep serving.
    pub async fn load(&self, name: &str, config: Option<ModelConfig>) -> Result<(), ServeError> {
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
        if self.table.load().models.contains_key(name) {
            self.unload_model(name).await;
        }
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

    /// Poll mode: loads new and changed models, unloads removed ones.
    pub async fn poll(&self) {
        let names = match model_names(&self.repository) {
            Ok(names) => names,
            Err(e) => {
                warn!("polling the model repository: {e}");
                return;
            }
        };
        for name in &names {
            if self.changed_on_disk(name) {
                if let Err(e) = self.load_model(name, None).await {
                    warn!(model = %name, "{e}");
                }
            }
        }
        let gone: Vec<String> =
            self.table.load().models.iter().filter(|(n, e)| !names.contains(n) && !e.unloaded()).map(|(n, _)| n.clone()).collect();
        for name in gone {
            info!(model = %name, "removed from the repository; unloading");
            self.unload_model(&name).await;
        }
    }

    /// Whether `name` on disk differs from what was last loaded (or last failed) for it.
    fn changed_on_disk(&self, name: &str) -> bool {
        let table = self.table.load();
        let Some(entry) = table.models.get(name) else { return true };
        if entry.unloaded() {
            return true;
        }
        let read = ModelDirectory::read(&self.repository, name).and_then(|d| d.selected_versions().map(|v| (d, v)));
        match (&entry.source, read) {
            (Some(source), Ok((dir, versions))) => source.fingerprint != fingerprint(&dir.path, &versions),
            // Broken now: worth recording once, not again every interval.
            (Some(_), Err(e)) => entry.reload_error.as_deref() != Some(e.to_string().as_str()),
            (None, Ok(_)) => true,
            (None, Err(e)) => entry.error.as_deref() != Some(e.to_string().as_str()),
        }
    }

    /// Whether the startup load includes `name`.
    fn is_startup_model(&self, name: &str) -> bool {
        match self.options.control_mode {
            ControlMode::None | ControlMode::Poll => true,
            ControlMode::Explicit => self.options.startup_models.iter().any(|m| m == "*" || m == name),
        }
    }

    /// Loads `name` and swaps it into the table; returns what failed.
    async fn load_model(&self, name: &str, config: Option<ModelConfig>) -> Result<(), String> {
        lock(&self.loading).insert(name.to_string());
        let result = self.load_model_now(name, config).await;
        lock(&self.loading).remove(name);
        result
    }

    async fn load_model_now(&self, name: &str, config: Option<ModelConfig>) -> Result<(), String> {
        let runtime = self.runtime(name);
        let _control = runtime.control.lock().await;
        let started = Instant::now();
        let read = ModelDirectory::read(&self.repository, name).map(|mut dir| {
            if let Some(config) = &config {
                dir.config = config.clone();
            }
            dir
        });
        let selected = read.as_ref().map_err(Clone::clone).and_then(ModelDirectory::selected_versions);
        let policy = read.as_ref().map_err(|e| e.to_string()).and_then(|dir| model_policy(&dir.config));
        let (dir, versions, policy) = match (read, selected, policy) {
            (Ok(dir), Ok(versions), Ok(policy)) => (dir, versions, policy),
            (Err(e), _, _) | (_, Err(e), _) => return Err(self.record_failure(name, e.to_string())),
            (_, _, Err(e)) => return Err(self.record_failure(name, format!("model '{name}': {e}"))),
        };
        // One pass over the files; a config given in the request stands in for the file's.
        let mut fp = fingerprint(&dir.path, &versions);
        if let Some(config) = &config {
            fp.config = hash_bytes(format!("{config:?}").as_bytes());
        }
        let dir = Arc::new(dir);
        let old = self.table.load().models.get(name).cloned();
        let old_source = old.as_ref().and_then(|e| e.source.clone());

        let mut states = BTreeMap::new();
        let mut failures = Vec::new();
        for &version in &versions {
            let previous = old.as_ref().and_then(|e| e.versions.get(&version)).filter(|s| s.servable());
            let unchanged = old_source
                .as_ref()
                .is_some_and(|s| s.fingerprint.config == fp.config && s.fingerprint.versions.get(&version) == fp.versions.get(&version));
            if let (Some(previous), true) = (previous, unchanged) {
                states.insert(version, previous.clone());
                continue;
            }
            match self.load_version(&dir, version).await {
                Ok(model) => {
                    states.insert(version, VersionState::Ready(model));
                }
                Err(e) => {
                    error!(model = name, version, "failed to load: {e}");
                    failures.push(format!("version {version}: {e}"));
                    // A version that served before goes on serving.
                    let kept = previous.cloned().unwrap_or(VersionState::Unavailable(e));
                    states.insert(version, kept);
                }
            }
        }
        // Versions the reload no longer selects stay listed as unloaded, as Triton lists them.
        for (version, state) in old.iter().flat_map(|e| &e.versions) {
            if !states.contains_key(version) && (state.servable() || matches!(state, VersionState::Unavailable(r) if r == UNLOADED)) {
                states.insert(*version, VersionState::Unavailable(UNLOADED.into()));
            }
        }
        let load_error = (!failures.is_empty()).then(|| format!("failed to load '{name}': {}", failures.join("; ")));
        let source = Arc::new(ModelSource { dir, fingerprint: fp });
        let judge_rule = policy.rollback;
        self.swap_entry(name, |current| {
            let mut rollout = current.map(|c| c.rollout.clone()).unwrap_or_default();
            let servable = |v: u64| states.get(&v).is_some_and(VersionState::servable);
            let had_split = rollout.split.is_some();
            rollout.retain(servable);
            if let Some(canary) = policy.canary.filter(|_| !had_split) {
                let default = states.iter().rev().find(|(v, s)| s.servable() && **v != canary.canary).map(|(v, _)| *v);
                if let Err(e) = rollout.set_canary(canary.canary, canary.percent, canary.stable, default, servable) {
                    warn!(model = name, "config canary ignored: {e}");
                }
            }
            Some(ModelEntry {
                versions: states.clone(),
                error: None,
                load_error: load_error.clone(),
                reload_error: None,
                rollout,
                policy: policy.clone(),
                source: Some(source.clone()),
            })
        });
        *lock(&runtime.judge) = judge_rule.map(CanaryJudge::new);
        runtime.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        info!(model = name, "loaded in {} ms", elapsed_ms(started));
        load_error.map_or(Ok(()), Err)
    }

    /// Records that `name` could not be read: a model with versions serving keeps them and
    /// shows the failure; one without shows only the failure.
    fn record_failure(&self, name: &str, message: String) -> String {
        error!(model = name, "failed to read model: {message}");
        self.swap_entry(name, |current| {
            Some(match current {
                Some(entry) if entry.versions.values().any(VersionState::servable) => {
                    ModelEntry { reload_error: Some(message.clone()), ..entry.clone() }
                }
                _ => ModelEntry { error: Some(message.clone()), ..Default::default() },
            })
        });
        format!("failed to load '{name}': {message}")
    }

    /// Loads and warms up one version (blocking work off the reactor).
    async fn load_version(&self, dir: &Arc<ModelDirectory>, version: u64) -> Result<Arc<ModelVersion>, String> {
        let started = Instant::now();
        let (load_dir, options) = (dir.clone(), self.options.load.clone());
        let model = tokio::task::spawn_blocking(move || ModelVersion::load(&load_dir, version, &options))
            .await
            .map_err(|e| format!("loader task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        model.warmup(&dir.path).await.map_err(|e| e.to_string())?;
        info!(model = %dir.name, version, "loaded and warmed up in {} ms", elapsed_ms(started));
        Ok(Arc::new(model))
    }

    async fn unload_model(&self, name: &str) {
        let runtime = self.runtime(name);
        let _control = runtime.control.lock().await;
        self.swap_entry(name, |current| {
            let current = current?;
            Some(ModelEntry {
                versions: current.versions.keys().map(|&v| (v, VersionState::Unavailable(UNLOADED.into()))).collect(),
                source: None,
                ..Default::default()
            })
        });
        *lock(&runtime.judge) = None;
        info!(model = name, "unloaded; versions are released as their requests finish");
    }

    /// Replaces one model's entry, computed from the current one, atomically (retrying if
    /// another model changed the table meanwhile). `None` removes nothing and changes nothing.
    fn swap_entry(&self, name: &str, mut f: impl FnMut(Option<&ModelEntry>) -> Option<ModelEntry>) {
        self.table.rcu(|table| {
            // The new entry first: while `f` runs, a version's only references are the
            // table's and those of requests in flight (which `scale_idle` counts on).
            let entry = f(table.models.get(name));
            let mut next = ModelTable::clone(table);
            if let Some(entry) = entry {
                next.models.insert(name.to_string(), entry);
            }
            next
        });
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<ModelTable> {
        self.table.load_full()
    }

    /// Whether the startup load finished and every model loaded (and not unloaded since) has
    /// a version that serves.
    pub fn all_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self.table.load().models.values().filter(|m| !m.unloaded()).all(|m| m.versions.values().any(VersionState::servable))
    }

    /// The state of `name` at `version` (empty = the version unversioned requests go to,
    /// without a split's weighting).
    fn lookup(&self, name: &str, version: &str) -> Result<(u64, VersionState), ServeError> {
        let table = self.table.load();
        let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
        let number = if version.is_empty() {
            entry.default_version().ok_or_else(|| no_versions(name, entry))?
        } else {
            version.parse().map_err(|_| unknown_version(name, version))?
        };
        let state = entry.versions.get(&number).cloned().ok_or_else(|| unknown_version(name, version))?;
        Ok((number, state))
    }

    /// The metadata of `name` at `version`, without loading weights (a scaled-to-zero version
    /// answers from what it kept).
    pub fn info(&self, name: &str, version: &str) -> Result<Arc<VersionInfo>, ServeError> {
        match self.lookup(name, version)? {
            (_, VersionState::Ready(m)) => Ok(m.info().clone()),
            (_, VersionState::Idle(info)) => Ok(info),
            (v, VersionState::Unavailable(reason)) => {
                Err(ServeError::Unavailable(format!("model '{name}' version {v} is not ready: {reason}")))
            }
        }
    }

    /// Whether `name` at `version` can take requests (a scaled-to-zero version can).
    pub fn is_ready(&self, name: &str, version: &str) -> bool {
        self.info(name, version).is_ok()
    }

    /// The versions of a model that can take requests, ascending, as the metadata lists them.
    pub fn ready_versions(&self, name: &str) -> Vec<String> {
        let table = self.table.load();
        table
            .models
            .get(name)
            .map(|e| e.versions.iter().filter(|(_, s)| s.servable()).map(|(v, _)| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// The repository index: every model version and its state. With `ready_only`, only
    /// ready versions.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let table = self.table.load();
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

    /// Picks the version that serves a request to `name` (`version` empty: the default, or a
    /// side of the canary split, or the side `pin` names) and, when it is scaled to zero,
    /// loads it while the request waits (the activator).
    pub async fn route(&self, name: &str, version: &str, pin: Option<Revision>) -> Result<Routed<'_>, ServeError> {
        let (number, state, revision, runtime) = {
            let table = self.table.load();
            let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
            // Only known models get lifecycle state: request names are the client's to choose.
            let runtime = self.runtime(name);
            runtime.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
            let (number, revision) = if version.is_empty() {
                let n = runtime.routed.fetch_add(1, Ordering::Relaxed);
                let (chosen, revision) = entry.rollout.choose(n, pin, entry.highest_servable()).map_err(|e| match e {
                    RolloutError::NoCanary => ServeError::InvalidInput(format!("model '{name}' has no canary to pin a request to")),
                    RolloutError::Invalid(m) => ServeError::InvalidInput(m),
                })?;
                (chosen.ok_or_else(|| no_versions(name, entry))?, revision)
            } else {
                (version.parse().map_err(|_| unknown_version(name, version))?, None)
            };
            let state = entry.versions.get(&number).cloned().ok_or_else(|| unknown_version(name, version))?;
            (number, state, revision, runtime)
        };
        let model = match state {
            VersionState::Ready(model) => model,
            VersionState::Idle(_) => self.activate(name, number, &runtime).await?,
            VersionState::Unavailable(reason) => {
                return Err(ServeError::Unavailable(format!("model '{name}' version {number} is not ready: {reason}")))
            }
        };
        if let Some(revision) = revision {
            metrics::counter!("quiver_traffic_requests_total", "model" => name.to_string(), "version" => number.to_string(), "revision" => revision.as_str())
                .increment(1);
        }
        Ok(Routed { registry: self, model, revision, runtime })
    }

    /// Loads a scaled-to-zero version while the request waits: one load however many requests
    /// arrive, each waiting in a bounded buffer up to the cold-start timeout.
    async fn activate(&self, name: &str, version: u64, runtime: &Arc<ModelRuntime>) -> Result<Arc<ModelVersion>, ServeError> {
        let cold_start = self.table.load().models.get(name).map(|e| e.policy.cold_start).unwrap_or(ModelPolicy::default().cold_start);
        let _waiting = Waiting::enter(&runtime.cold_waiters, cold_start.buffer).ok_or_else(|| {
            ServeError::Unavailable(format!(
                "model '{name}' is starting and its cold-start buffer of {} requests is full",
                cold_start.buffer
            ))
        })?;
        let load = async {
            let _control = runtime.control.lock().await;
            let (source, info) = {
                let table = self.table.load();
                let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
                match entry.versions.get(&version) {
                    Some(VersionState::Ready(m)) => return Ok(m.clone()), // another request activated it
                    Some(VersionState::Idle(info)) => (entry.source.clone(), info.clone()),
                    _ => return Err(ServeError::Unavailable(format!("model '{name}' version {version} was unloaded"))),
                }
            };
            let source = source.ok_or_else(|| ServeError::Unavailable(format!("model '{name}' has no source to load from")))?;
            let started = Instant::now();
            let model = self
                .load_version(&source.dir, version)
                .await
                .map_err(|e| ServeError::Unavailable(format!("model '{name}' version {version} failed to start: {e}")))?;
            let cold_start_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.swap_entry(name, |current| {
                let mut entry = current?.clone();
                if matches!(entry.versions.get(&version), Some(VersionState::Idle(_))) {
                    entry.versions.insert(version, VersionState::Ready(model.clone()));
                }
                Some(entry)
            });
            let labels = [("model", name.to_string()), ("version", info.version().to_string())];
            metrics::counter!("quiver_model_cold_starts_total", &labels).increment(1);
            metrics::counter!("quiver_model_cold_start_duration_us", &labels).increment(cold_start_us);
            metrics::gauge!("quiver_model_last_cold_start_us", &labels).set(cold_start_us as f64);
            info!(model = name, version, "cold start in {} µs", cold_start_us);
            Ok(model)
        };
        tokio::time::timeout(cold_start.timeout, load)
            .await
            .map_err(|_| ServeError::Unavailable(format!("model '{name}' did not start within {:?}", cold_start.timeout)))?
    }

    /// Scales idle models to zero: a model with `min_instances: 0` and no request for its
    /// grace period releases every ready version that has no request in flight (the table
    /// then holds the only reference). Call it periodically.
    pub async fn scale_idle(&self) {
        let now = self.now_ms();
        let candidates: Vec<String> = self
            .table
            .load()
            .models
            .iter()
            .filter(|(_, e)| e.versions.values().any(|s| matches!(s, VersionState::Ready(_))))
            .filter_map(|(name, e)| {
                let grace = e.policy.idle?.grace;
                let idle_ms = now.saturating_sub(self.runtime(name).last_used_ms.load(Ordering::Relaxed));
                (u128::from(idle_ms) >= grace.as_millis()).then(|| name.clone())
            })
            .collect();
        for name in candidates {
            let runtime = self.runtime(&name);
            // A load or activation in progress wins; the next pass looks again.
            let Ok(_control) = runtime.control.try_lock() else { continue };
            let mut released = Vec::new();
            self.swap_entry(&name, |current| {
                let mut entry = current?.clone();
                let grace = entry.policy.idle?.grace;
                let idle_ms = self.now_ms().saturating_sub(runtime.last_used_ms.load(Ordering::Relaxed));
                if u128::from(idle_ms) < grace.as_millis() {
                    return None;
                }
                for state in entry.versions.values_mut() {
                    if let VersionState::Ready(m) = state {
                        // The table's reference plus this entry's copy: nothing in flight.
                        if Arc::strong_count(m) <= 2 {
                            *state = VersionState::Idle(m.info().clone());
                        }
                    }
                }
                Some(entry)
            });
            for (v, s) in &self.table.load().models.get(&name).map(|e| e.versions.clone()).unwrap_or_default() {
                if matches!(s, VersionState::Idle(_)) {
                    released.push(*v);
                }
            }
            if !released.is_empty() {
                metrics::counter!("quiver_model_scale_to_zero_total", "model" => name.clone()).increment(1);
                info!(model = %name, "idle: scaled to zero (versions {released:?} released)");
            }
        }
    }

    /// The rollout of `name`.
    pub fn traffic(&self, name: &str) -> Result<TrafficStatus, ServeError> {
        let table = self.table.load();
        let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
        let split = entry.rollout.split;
        Ok(TrafficStatus {
            model: name.to_string(),
            ready_versions: entry.versions.iter().filter(|(_, s)| s.servable()).map(|(v, _)| v.to_string()).collect(),
            default_version: entry.default_version().map(|v| v.to_string()),
            traffic: split
                .map(|s| {
                    vec![
                        TrafficTarget { tag: Revision::Stable, version: s.stable.to_string(), percent: 100 - s.canary_percent.min(100) },
                        TrafficTarget { tag: Revision::Canary, version: s.canary.to_string(), percent: s.canary_percent.min(100) },
                    ]
                })
                .unwrap_or_default(),
            latest_rolledout_version: entry.rollout.latest_rolledout.map(|v| v.to_string()),
            previous_rolledout_version: entry.rollout.previous_rolledout.map(|v| v.to_string()),
            rollback_rule: lock(&self.runtime(name).judge).as_ref().map(|j| *j.rule()),
            rollbacks: entry.rollout.rollbacks,
            last_rollback_reason: entry.rollout.last_rollback_reason.clone(),
        })
    }

    /// Changes the rollout of `name` through the API.
    pub async fn change_traffic(&self, name: &str, change: TrafficChange) -> Result<TrafficStatus, ServeError> {
        if !self.table.load().models.contains_key(name) {
            return Err(unknown_model(name));
        }
        let runtime = self.runtime(name);
        let _control = runtime.control.lock().await;
        let table = self.table.load();
        let entry = table.models.get(name).ok_or_else(|| unknown_model(name))?;
        let mut rollout = entry.rollout.clone();
        let outcome = match &change {
            TrafficChange::Split { canary, percent, stable, rollback } => {
                let servable = |v: u64| entry.servable(v);
                // The stable side: what serves now, or else the highest other version.
                let current = entry
                    .default_version()
                    .filter(|v| v != canary)
                    .or_else(|| entry.versions.iter().rev().find(|(v, s)| s.servable() && *v != canary).map(|(v, _)| *v));
                let set = rollout.set_canary(*canary, *percent, *stable, current, servable);
                if set.is_ok() {
                    *lock(&runtime.judge) = rollback.or(entry.policy.rollback).map(CanaryJudge::new);
                }
                set
            }
            TrafficChange::Promote => rollout.promote().map(|_| ()),
            TrafficChange::Rollback => {
                let back = rollout.rollback("rolled back through the API").map(|_| ());
                if back.is_ok() {
                    metrics::counter!("quiver_canary_rollbacks_total", "model" => name.to_string(), "trigger" => "api").increment(1);
                }
                back
            }
        };
        outcome.map_err(|e| ServeError::InvalidInput(format!("model '{name}': {e}")))?;
        info!(model = name, "traffic: {change:?} -> {:?}", rollout.split);
        self.swap_entry(name, |current| Some(ModelEntry { rollout: rollout.clone(), ..current?.clone() }));
        self.traffic(name)
    }

    /// Checks the canary of `name` against its rule (at most once a second) and rolls it
    /// back when it trips.
    fn judge(&self, name: &str, runtime: &ModelRuntime, revision: Revision, ok: bool, latency: Duration) {
        let now_s = self.epoch.elapsed().as_secs();
        let verdict = {
            let mut judge = lock(&runtime.judge);
            let Some(judge) = judge.as_mut() else { return };
            judge.record(now_s, revision, ok, u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            if runtime.judged_at.swap(now_s, Ordering::Relaxed) == now_s {
                return;
            }
            judge.verdict(now_s)
        };
        let Some(reason) = verdict else { return };
        let mut rolled_back = false;
        self.swap_entry(name, |current| {
            let mut entry = current?.clone();
            rolled_back = entry.rollout.rollback(format!("automatic: {reason}")).is_ok();
            rolled_back.then_some(entry)
        });
        if rolled_back {
            *lock(&runtime.judge) = None;
            metrics::counter!("quiver_canary_rollbacks_total", "model" => name.to_string(), "trigger" => "auto").increment(1);
            warn!(model = name, "canary rolled back automatically: {reason}");
        }
    }
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

/// A request's chosen version, ready to run it.
#[derive(Debug)]
pub struct Routed<'a> {
    registry: &'a ModelRegistry,
    model: Arc<ModelVersion>,
    revision: Option<Revision>,
    runtime: Arc<ModelRuntime>,
}

impl Routed<'_> {
    /// The version's metadata (for decoding requests against its inputs).
    pub fn info(&self) -> &Arc<VersionInfo> {
        self.model.info()
    }

    /// The side of a split that serves the request, when a split is active.
    pub fn revision(&self) -> Option<Revision> {
        self.revision
    }

    /// Runs the request on the chosen version, feeding the canary comparison.
    pub async fn infer(self, request: ValidRequest) -> Result<InferResponse, ServeError> {
        let started = Instant::now();
        let result = self.model.infer(request).await;
        self.runtime.last_used_ms.store(self.registry.now_ms(), Ordering::Relaxed);
        if let Some(revision) = self.revision {
            // Only server-side failures count against a version; a client's bad request says
            // nothing of the model.
            let ok = !matches!(&result, Err(e) if !matches!(e, ServeError::InvalidInput(_) | ServeError::NotFound(_)));
            self.registry.judge(self.model.name(), &self.runtime, revision, ok, started.elapsed());
        }
        result
    }
}

/// Header (HTTP) and metadata key (gRPC) pinning an unversioned request to a side of a canary
/// split (KServe's tag routing); HTTP responses carry the side that served under the same name.
pub const REVISION_HEADER: &str = "x-quiver-revision";

/// The side a request pins itself to, from the bytes of its [`REVISION_HEADER`], if present.
pub fn pinned_revision(value: Option<&[u8]>) -> Result<Option<Revision>, ServeError> {
    let Some(value) = value else { return Ok(None) };
    let text = std::str::from_utf8(value).map_err(|_| ServeError::InvalidInput(format!("{REVISION_HEADER} is not valid text")))?;
    text.parse().map(Some).map_err(|e| ServeError::InvalidInput(format!("{REVISION_HEADER}: {e}")))
}

/// Parses the configuration a load request gives (Triton's `config` load parameter: the
/// model configuration as JSON), which replaces the model's `config.pbtxt` for that load.
pub fn parse_config_override(json: &str) -> Result<ModelConfig, ServeError> {
    quiver_core::config::parse_json(json).map_err(|e| ServeError::InvalidInput(format!("load parameter 'config': {e}")))
}

/// Reads Triton's load parameters, the same for HTTP and gRPC: `config` (`None`: absent;
/// `Some(None)`: present but not a string; `Some(Some(json))`) replaces `config.pbtxt` for the
/// load; model files sent inline (keys `file:...`) are refused.
pub fn load_parameters<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    config: Option<Option<&str>>,
) -> Result<Option<ModelConfig>, ServeError> {
    if let Some(key) = keys.find(|k| k.starts_with("file:")) {
        return Err(ServeError::InvalidInput(format!(
            "load parameter '{key}': model files sent in the request are not supported; put them in the repository"
        )));
    }
    match config {
        None => Ok(None),
        Some(Some(json)) => parse_config_override(json).map(Some),
        Some(None) => Err(ServeError::InvalidInput("load parameter 'config' must be a string holding the config as JSON".into())),
    }
}

/// Refuses model names that are not a single directory name.
fn check_model_name(name: &str) -> Result<(), ServeError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !name.starts_with('.') => Ok(()),
        _ => Err(ServeError::InvalidInput(format!("'{name}' is not a model name"))),
    }
}

fn unknown_model(name: &str) -> ServeError {
    ServeError::NotFound(format!("Request for unknown model: '{name}' is not found"))
}

fn unknown_version(name: &str, version: &str) -> ServeError {
    ServeError::NotFound(format!("Request for unknown model: '{name}' version {version} is not found"))
}

fn no_versions(name: &str, entry: &ModelEntry) -> ServeError {
    let why =
        entry.error.as_ref().or(entry.reload_error.as_ref()).or(entry.load_error.as_ref()).map(|e| format!(": {e}")).unwrap_or_default();
    ServeError::Unavailable(format!("Request for unknown model: '{name}' has no available versions{why}"))
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
    fn revision_pins_parse() {
        assert_eq!(pinned_revision(None).unwrap(), None);
        assert_eq!(pinned_revision(Some(b"canary")).unwrap(), Some(Revision::Canary));
        assert_eq!(pinned_revision(Some(b" Stable ")).unwrap(), Some(Revision::Stable));
        assert!(matches!(pinned_revision(Some(b"blue")), Err(ServeError::InvalidInput(_))));
        assert!(matches!(pinned_revision(Some(b"\xff")), Err(ServeError::InvalidInput(_))));
    }

    #[test]
    fn model_names_are_single_directories() {
        assert!(check_model_name("mlp").is_ok());
        assert!(check_model_name("my model-2").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "/abs", ".hidden"] {
            assert!(check_model_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_pick_defaults_and_report_readiness() {
        let mut e = ModelEntry::default();
        assert_eq!(e.default_version(), None);
        assert!(!e.fully_ready());
        e.versions.insert(1, VersionState::Unavailable("bad".into()));
        e.versions.insert(2, VersionState::Unavailable("bad".into()));
        assert_eq!(e.highest_servable(), None);
        assert!(!e.unloaded());
        e.versions.insert(1, VersionState::Unavailable(UNLOADED.into()));
        e.versions.insert(2, VersionState::Unavailable(UNLOADED.into()));
        assert!(e.unloaded());
    }
}
