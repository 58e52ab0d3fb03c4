//! The embedded controller: one task that watches the store, reconciles each changed
//! InferenceService with the pure core, and carries the plan out on the runtime. Fetches and
//! loads run as their own tasks and report back, so a slow download never holds up another
//! service; a periodic resync catches what no store change announces (a load finishing, a
//! version failing).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use quiver_runtime::registry::{ModelRegistry, TrafficChange};
use serde_json::Value;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};
use tracing::{info, warn};

use quiver_autoscaler::Settings;

use super::{
    repository,
    scaling::ServiceScaler,
    state::{ServiceState, STATE_RESOURCE},
    ISVC_RESOURCE,
};
use crate::{
    isvc::{
        reconcile::{reconcile, revision_name, Action, ObservedRevision, RevisionNumber, RevisionState, Traffic},
        status::{self, StatusInputs},
    },
    resources::predictor::{PredictorSpec, Protocol, Scaling},
    storage,
    store::{ChangeKind, EventType, Store, StoreError},
};

/// How often every service is looked at even without a store change.
const RESYNC: Duration = Duration::from_secs(1);
/// Most fetch/load reports waiting for the controller.
const REPORTS: usize = 1024;
/// Fetch progress is reported at most this often per revision.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often the requests in flight are sampled for the autoscaler (averaged per second).
const SAMPLE: Duration = Duration::from_millis(100);

/// (namespace, name).
type Key = (String, String);

/// Where the controller keeps models and how it names their endpoints.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// The managed model repository (`$QUIVER_HOME/repository`), the runtime's repository.
    pub repository: PathBuf,
    /// The download cache (`$QUIVER_HOME/cache`).
    pub cache: PathBuf,
    /// The server's base URL for status `url`s, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Cluster-wide autoscaler settings (Knative's `config-autoscaler` keys), under each
    /// service's own annotations and fields.
    pub autoscaler: Settings,
}

/// What a fetch-and-load task reports.
#[derive(Debug)]
enum Report {
    Progress { key: Key, number: RevisionNumber, done_bytes: u64, total_bytes: Option<u64> },
    Fetched { key: Key, number: RevisionNumber, config: Value },
    Done { key: Key, number: RevisionNumber, state: RevisionState },
}

/// A running fetch-and-load. Aborted only while it fetches: a load in progress runs to its end
/// (the runtime's load is not cancellable), and what it loaded is cleaned up when it reports.
#[derive(Debug)]
struct Task {
    handle: JoinHandle<()>,
    loading: Arc<std::sync::atomic::AtomicBool>,
}

impl Task {
    /// Stops the task if it is still fetching; whether it stopped.
    fn cancel(&self) -> bool {
        if self.loading.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        self.handle.abort();
        true
    }
}

/// The embedded InferenceService controller.
#[derive(Debug)]
pub struct Controller {
    store: Arc<Store>,
    registry: Arc<ModelRegistry>,
    options: ControllerOptions,
    services: HashMap<Key, ServiceState>,
    tasks: HashMap<(Key, RevisionNumber), Task>,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    /// Which key serves each model name (models are named after their service).
    owners: HashMap<String, Key>,
    /// The `(desired, ready)` replicas last reported, per service.
    replicas: HashMap<Key, (u32, u32)>,
    /// Each serving service's KPA.
    scalers: HashMap<Key, ServiceScaler>,
    /// The KPA's clock starts here.
    started: Instant,
}

impl Controller {
    /// A controller over `store`, driving `registry`. Call [`Controller::restore`] before the
    /// server takes requests, then [`Controller::run`].
    pub fn new(store: Arc<Store>, registry: Arc<ModelRegistry>, options: ControllerOptions) -> Controller {
        let (reports_tx, reports) = mpsc::channel(REPORTS);
        Controller {
            store,
            registry,
            options,
            services: HashMap::new(),
            tasks: HashMap::new(),
            reports_tx,
            reports,
            owners: HashMap::new(),
            replicas: HashMap::new(),
            scalers: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// Brings back what was serving before a restart: loads every revision whose files are in
    /// the managed repository, restarts interrupted fetches, and routes traffic as it was,
    /// before the server answers its first request.
    pub async fn restore(&mut self) -> Result<usize, StoreError> {
        let listed = self.store.blocking(|s| s.list(STATE_RESOURCE, None)).await?;
        for object in listed.items {
            let meta = |f: &str| object.get("metadata").and_then(|m| m.get(f)).and_then(Value::as_str).unwrap_or_default().to_string();
            let key = (meta("namespace"), meta("name"));
            match ServiceState::from_object(&object) {
                Ok(state) => {
                    self.owners.insert(key.1.clone(), key.clone());
                    self.services.insert(key, state);
                }
                Err(e) => warn!(namespace = %key.0, name = %key.1, "dropping an unreadable controller record: {e}"),
            }
        }
        let keys: Vec<Key> = self.services.keys().cloned().collect();
        for key in &keys {
            self.reload(key).await;
            let Some(state) = self.services.get_mut(key) else { continue };
            let interrupted: Vec<(RevisionNumber, PredictorSpec)> = state
                .observed
                .revisions
                .iter()
                .filter(|r| matches!(r.state, RevisionState::Fetching { .. }))
                .map(|r| (r.number, r.template.clone()))
                .collect();
            for (number, template) in interrupted {
                self.spawn_fetch(key.clone(), number, template);
            }
        }
        for key in &keys {
            self.reconcile_one(key).await;
        }
        Ok(keys.len())
    }

    /// Reconciles until the store closes: on every change of an InferenceService, on every
    /// report of a fetch or load, and once a second for everything.
    pub async fn run(mut self) {
        let mut changes = self.store.subscribe();
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sample = tokio::time::interval(SAMPLE);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let mut dirty = BTreeSet::new();
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) if change.resource == ISVC_RESOURCE => {
                        let key = (change.namespace, change.name);
                        if change.kind == ChangeKind::Deleted {
                            self.remove(&key).await;
                        } else {
                            dirty.insert(key);
                        }
                    }
                    Ok(_) => {}
                    // Missed changes: the resync below looks at everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty.extend(self.all_keys().await),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(report) = self.reports.recv() => {
                    if let Some((key, event)) = self.apply_report(report).await {
                        if let Some((kind, reason, message)) = event {
                            self.event(&key, kind, reason, &message).await;
                        }
                        dirty.insert(key);
                    }
                }
                _ = sample.tick() => {
                    for (key, scaler) in &mut self.scalers {
                        scaler.sample(self.registry.in_flight(&key.1));
                    }
                }
                _ = resync.tick() => {
                    dirty.extend(self.scale().await);
                    dirty.extend(self.all_keys().await);
                }
            }
            for key in dirty {
                self.reconcile_one(&key).await;
            }
        }
    }

    /// Every service in the store or known to the controller.
    async fn all_keys(&self) -> BTreeSet<Key> {
        let mut keys: BTreeSet<Key> = self.services.keys().cloned().collect();
        if let Ok(listed) = self.store.blocking(|s| s.list(ISVC_RESOURCE, None)).await {
            keys.extend(listed.items.iter().filter_map(object_key));
        }
        keys
    }

    /// Records a task's report; the service to reconcile again, and an event to record.
    async fn apply_report(&mut self, report: Report) -> Option<(Key, Option<(EventType, &'static str, String)>)> {
        let (key, number, new_state) = match report {
            Report::Progress { key, number, done_bytes, total_bytes } => (key, number, RevisionState::Fetching { done_bytes, total_bytes }),
            Report::Fetched { key, number, config } => {
                if let Some(state) = self.services.get_mut(&key) {
                    state.config = Some(config);
                }
                (key, number, RevisionState::Loading)
            }
            Report::Done { key, number, state } => {
                self.tasks.remove(&(key.clone(), number));
                if !self.services.contains_key(&key) {
                    // Deleted while it loaded: finish the removal now that nothing runs.
                    self.owners.insert(key.1.clone(), key.clone());
                    self.remove(&key).await;
                    return None;
                }
                (key, number, state)
            }
        };
        let revision = self.services.get_mut(&key)?.observed.revisions.iter_mut().find(|r| r.number == number)?;
        let event = match &new_state {
            RevisionState::Ready if revision.state != RevisionState::Ready => {
                Some((EventType::Normal, "RevisionReady", format!("revision {} is ready", revision_name(&key.1, number))))
            }
            RevisionState::Failed { message, .. } => {
                Some((EventType::Warning, "RevisionFailed", format!("revision {} failed: {message}", revision_name(&key.1, number))))
            }
            _ => None,
        };
        revision.state = new_state;
        Some((key, event))
    }

    /// One reconcile of one service: dereference, validate, plan, carry out, report.
    async fn reconcile_one(&mut self, key: &Key) {
        let (ns, name) = (key.0.clone(), key.1.clone());
        let object = match self.store.blocking(move |s| s.get(ISVC_RESOURCE, &ns, &name)).await {
            Ok(object) => object,
            Err(StoreError::NotFound { .. }) => {
                self.remove(key).await;
                return;
            }
            Err(e) => {
                warn!(namespace = %key.0, name = %key.1, "reading the InferenceService: {e}");
                return;
            }
        };
        let generation = object.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(0);
        let previous_status = object.get("status").cloned();
        let now = crate::store::now_rfc3339();

        // Models are named after their service, so a name serves one namespace at a time.
        if let Some(owner) = self.owners.get(&key.1).filter(|owner| *owner != key) {
            let message = format!("model name '{}' is already served by InferenceService {}/{}", key.1, owner.0, owner.1);
            self.write_status(key, status::invalid(generation, &message, previous_status.as_ref(), &now)).await;
            return;
        }
        let desired = match desired(&object) {
            Ok(desired) => desired,
            Err(message) => {
                self.write_status(key, status::invalid(generation, &message, previous_status.as_ref(), &now)).await;
                return;
            }
        };
        self.owners.insert(key.1.clone(), key.clone());
        self.refresh_states(key);

        let state = self.services.entry(key.clone()).or_default();
        let before = state.clone();
        let plan = reconcile(&desired, &state.observed);
        state.observed.history = plan.history;
        state.observed.last_number = plan.last_number;
        for action in &plan.actions {
            match action {
                Action::CreateRevision { number, template } => {
                    if let Some(state) = self.services.get_mut(key) {
                        state.observed.revisions.push(ObservedRevision {
                            number: *number,
                            template: template.clone(),
                            state: RevisionState::Fetching { done_bytes: 0, total_bytes: None },
                        });
                    }
                    self.spawn_fetch(key.clone(), *number, template.clone());
                    let message = format!("created revision {} from {}", revision_name(&key.1, *number), template.storage_uri);
                    self.event(key, EventType::Normal, "RevisionCreated", &message).await;
                }
                Action::Route(traffic) => self.route(key, *traffic).await,
                Action::Retire(number) => self.retire(key, *number).await,
            }
        }

        let Some(state) = self.services.get(key).cloned() else { return };
        if state != before {
            self.save(key, &state).await;
        }
        let base_url = self.options.base_url.clone();
        let model_path = match desired.protocol {
            Protocol::V1 => format!("/v1/models/{}", key.1),
            Protocol::V2 => format!("/v2/models/{}", key.1),
        };
        let replicas = self.replicas(key, &desired.scaling, &plan.traffic);
        let status = status::status(&StatusInputs {
            name: &key.1,
            generation,
            observed: &state.observed,
            plan: &plan,
            base_url: &base_url,
            model_path: &model_path,
            replicas: Some(replicas),
            previous: previous_status.as_ref(),
            now: &now,
        });
        let was_ready = is_ready(previous_status.as_ref());
        let ready = is_ready(Some(&status));
        self.write_status(key, status).await;
        if ready != was_ready {
            let (kind, reason, message) = if ready {
                (EventType::Normal, "InferenceServiceReady", format!("InferenceService {} is ready", key.1))
            } else {
                (EventType::Warning, "InferenceServiceNotReady", format!("InferenceService {} is not ready", key.1))
            };
            self.event(key, kind, reason, &message).await;
        }
    }

    /// The `(desired, ready)` replicas to report; keeps the service's KPA in step with its spec.
    fn replicas(&mut self, key: &Key, scaling: &Scaling, traffic: &Traffic) -> (u32, u32) {
        if matches!(traffic, Traffic::None) {
            self.scalers.remove(key);
            self.replicas.remove(key);
            return (0, 0);
        }
        if !self.scalers.get(key).is_some_and(|s| s.follows(scaling)) {
            match ServiceScaler::new(&self.options.autoscaler, scaling, self.started.elapsed().as_secs()) {
                Ok(scaler) => {
                    self.scalers.insert(key.clone(), scaler);
                }
                Err(e) => warn!(model = %key.1, "autoscaling: {e}"),
            }
        }
        *self.replicas.entry(key.clone()).or_insert((1, 1))
    }

    /// One autoscaling decision per serving service, carried out on the runtime; the services
    /// whose replicas changed.
    async fn scale(&mut self) -> Vec<Key> {
        let now_s = self.started.elapsed().as_secs();
        let mut changed = Vec::new();
        for (key, scaler) in &mut self.scalers {
            let before = self.replicas.get(key).copied().unwrap_or((1, 1));
            let decision = scaler.decide(now_s, self.registry.requests(&key.1), before.1);
            let ready = match self.registry.scale(&key.1, decision.desired).await {
                Ok(ready) => ready,
                Err(e) => {
                    warn!(model = %key.1, "scaling to {}: {e}", decision.desired);
                    continue;
                }
            };
            let after = (decision.desired, ready);
            if after != before {
                info!(model = %key.1, desired = after.0, ready = after.1, panic = decision.panic, "replicas");
                self.replicas.insert(key.clone(), after);
                changed.push(key.clone());
            }
        }
        changed
    }

    /// Updates loading revisions from the runtime's index (a load that finished or failed).
    fn refresh_states(&mut self, key: &Key) {
        let Some(state) = self.services.get_mut(key) else { return };
        let index = self.registry.index(false);
        for revision in &mut state.observed.revisions {
            if !matches!(revision.state, RevisionState::Loading | RevisionState::Ready)
                || self.tasks.contains_key(&(key.clone(), revision.number))
            {
                continue;
            }
            let version = revision.number.to_string();
            let row = index.iter().find(|r| r.name == key.1 && r.version == version);
            revision.state = match row {
                Some(row) if row.state == "READY" => RevisionState::Ready,
                Some(row) if row.state == "LOADING" => RevisionState::Loading,
                Some(row) => RevisionState::Failed { reason: "ModelLoadFailed".into(), message: row.reason.clone() },
                None => RevisionState::Failed {
                    reason: "ModelLoadFailed".into(),
                    message: format!("revision {} is not loaded in the runtime", revision_name(&key.1, revision.number)),
                },
            };
        }
    }

    /// Starts fetching and loading revision `number`.
    fn spawn_fetch(&mut self, key: Key, number: RevisionNumber, template: PredictorSpec) {
        let registry = self.registry.clone();
        let options = self.options.clone();
        let reports = self.reports_tx.clone();
        let task_key = (key.clone(), number);
        let loading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = loading.clone();
        let handle = tokio::spawn(async move {
            let state = fetch_and_load(&registry, &options, &reports, &key, number, &template, &flag).await;
            let _ = reports.send(Report::Done { key, number, state }).await;
        });
        if let Some(old) = self.tasks.insert(task_key, Task { handle, loading }) {
            old.cancel();
        }
    }

    /// Applies the plan's traffic to the runtime, unless it already routes so.
    async fn route(&self, key: &Key, traffic: Traffic) {
        let name = &key.1;
        let current = self.registry.traffic(name).ok();
        let change = match traffic {
            Traffic::None => return,
            Traffic::All(n) => {
                let pinned = current
                    .as_ref()
                    .is_some_and(|t| t.traffic.is_empty() && t.latest_rolledout_version.as_deref() == Some(n.to_string().as_str()));
                if pinned {
                    return;
                }
                TrafficChange::Pin { version: n }
            }
            Traffic::Split { stable, canary, canary_percent } => {
                let same = current.as_ref().is_some_and(|t| {
                    let side = |v: u64, p: u32| t.traffic.iter().any(|s| s.version == v.to_string() && s.percent == p);
                    side(stable, 100 - canary_percent) && side(canary, canary_percent)
                });
                if same {
                    return;
                }
                TrafficChange::Split { canary, percent: canary_percent, stable: Some(stable), rollback: None }
            }
        };
        match self.registry.change_traffic(name, change.clone()).await {
            Ok(_) => {
                let message = match traffic {
                    Traffic::Split { stable, canary, canary_percent } => format!(
                        "traffic: {}% to {}, {}% to {}",
                        100 - canary_percent,
                        revision_name(name, stable),
                        canary_percent,
                        revision_name(name, canary)
                    ),
                    Traffic::All(n) => format!("traffic: 100% to {}", revision_name(name, n)),
                    Traffic::None => String::new(),
                };
                info!(model = %name, "{message}");
                self.event(key, EventType::Normal, "TrafficChanged", &message).await;
            }
            Err(e) => warn!(model = %name, "routing {change:?}: {e}"),
        }
    }

    /// Unloads and forgets revision `number`.
    async fn retire(&mut self, key: &Key, number: RevisionNumber) {
        let task_key = (key.clone(), number);
        if let Some(task) = self.tasks.get(&task_key) {
            if !task.cancel() {
                return; // retired when its load reports (the next reconcile plans it again)
            }
            self.tasks.remove(&task_key);
        }
        if let Some(state) = self.services.get_mut(key) {
            state.observed.revisions.retain(|r| r.number != number);
        }
        let repository = self.options.repository.clone();
        let name = key.1.clone();
        let removed = tokio::task::spawn_blocking(move || repository::remove_version(&repository, &name, number)).await;
        if let Ok(Err(e)) = removed {
            warn!(model = %key.1, "removing revision {number}: {e}");
        }
        self.reload(key).await;
        self.event(key, EventType::Normal, "RevisionRetired", &format!("retired revision {}", revision_name(&key.1, number))).await;
    }

    /// Loads the model of `key` as its version directories are now (serving versions that did
    /// not change keep serving; removed ones are dropped).
    async fn reload(&mut self, key: &Key) {
        let Some(state) = self.services.get(key) else { return };
        let dir = self.options.repository.join(&key.1);
        if !dir.is_dir()
            || !state.observed.revisions.iter().any(|r| repository::version_dir(&self.options.repository, &key.1, r.number).is_dir())
        {
            return;
        }
        let config = state.config.as_ref().and_then(|c| quiver_core::config::parse_json(&c.to_string()).ok());
        if let Err(e) = self.registry.load(&key.1, config).await {
            warn!(model = %key.1, "reloading: {e}");
        }
        // Versions on disk that the load found are no longer loading.
        if let Some(state) = self.services.get_mut(key) {
            for revision in &mut state.observed.revisions {
                if matches!(revision.state, RevisionState::Ready) {
                    revision.state = RevisionState::Loading;
                }
            }
        }
        self.refresh_states(key);
    }

    /// Forgets a deleted service: its fetches, its model, its files and its record.
    async fn remove(&mut self, key: &Key) {
        let tasks: Vec<(Key, RevisionNumber)> = self.tasks.keys().filter(|(k, _)| k == key).cloned().collect();
        for task_key in tasks {
            // A load in progress finishes; its report finds the service gone and comes back here.
            if self.tasks.get(&task_key).is_some_and(Task::cancel) {
                self.tasks.remove(&task_key);
            }
        }
        let known = self.services.remove(key).is_some();
        self.replicas.remove(key);
        self.scalers.remove(key);
        if self.owners.get(&key.1) != Some(key) {
            return;
        }
        self.owners.remove(&key.1);
        if self.registry.snapshot().models.contains_key(&key.1) {
            if let Err(e) = self.registry.remove(&key.1).await {
                warn!(model = %key.1, "unloading: {e}");
            }
        }
        let repository = self.options.repository.clone();
        let name = key.1.clone();
        let _ = tokio::task::spawn_blocking(move || repository::remove_model(&repository, &name)).await;
        if known {
            let (ns, name) = key.clone();
            match self.store.blocking(move |s| s.delete(STATE_RESOURCE, &ns, &name)).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => warn!(model = %key.1, "forgetting its record: {e}"),
            }
            info!(namespace = %key.0, model = %key.1, "InferenceService deleted: model unloaded");
        }
    }

    async fn save(&self, key: &Key, state: &ServiceState) {
        let object = state.to_object(&key.0, &key.1);
        let result = self
            .store
            .blocking(move |s| match s.replace(STATE_RESOURCE, object.clone()) {
                Err(StoreError::NotFound { .. }) => s.create(STATE_RESOURCE, object).map(|_| ()),
                other => other.map(|_| ()),
            })
            .await;
        if let Err(e) = result {
            warn!(model = %key.1, "saving the controller record: {e}");
        }
    }

    async fn write_status(&self, key: &Key, status: Value) {
        let (ns, name) = key.clone();
        match self.store.blocking(move |s| s.update_status(ISVC_RESOURCE, &ns, &name, status, None)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => warn!(model = %key.1, "writing status: {e}"),
        }
    }

    async fn event(&self, key: &Key, kind: EventType, reason: &'static str, message: &str) {
        let (ns, name, message) = (key.0.clone(), key.1.clone(), message.to_string());
        let _ = self.store.blocking(move |s| s.record_event(ISVC_RESOURCE, &ns, &name, kind, reason, &message)).await;
    }
}

/// Fetches revision `number`'s model, places it in the managed repository and loads it;
/// the revision's state when done.
async fn fetch_and_load(
    registry: &ModelRegistry,
    options: &ControllerOptions,
    reports: &mpsc::Sender<Report>,
    key: &Key,
    number: RevisionNumber,
    template: &PredictorSpec,
    loading: &std::sync::atomic::AtomicBool,
) -> RevisionState {
    let failed = |reason: &str, message: String| RevisionState::Failed { reason: reason.into(), message };
    let last = std::sync::Mutex::new(Instant::now());
    let progress = |p: storage::Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= PROGRESS_EVERY {
            *last = Instant::now();
            let report = Report::Progress { key: key.clone(), number, done_bytes: p.done_bytes, total_bytes: p.total_bytes };
            let _ = reports.try_send(report);
        }
    };
    let fetched = match storage::fetch(&template.storage_uri, &options.cache, &progress).await {
        Ok(fetched) => fetched,
        Err(e) => return failed("ModelLoadFailed", format!("storage initializer: {e}")),
    };
    let layout = match storage::inspect(&fetched.path, &template.format.name) {
        Ok(layout) => layout,
        Err(e) => return failed("ModelLoadFailed", e.to_string()),
    };
    let config = match repository::model_config(&key.1, template, Some(&layout)) {
        Ok(config) => config,
        Err(e) => return failed("InvalidPredictorSpec", e),
    };
    let config_json = match quiver_core::config::to_json(&config) {
        Ok(json) => json,
        Err(e) => return failed("InvalidPredictorSpec", e.to_string()),
    };
    let (repo, name) = (options.repository.clone(), key.1.clone());
    match tokio::task::spawn_blocking(move || repository::place(&repo, &name, number, &layout)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed("ModelLoadFailed", format!("placing the model in the repository: {e}")),
        Err(e) => return failed("ModelLoadFailed", format!("placing the model in the repository: {e}")),
    }
    loading.store(true, std::sync::atomic::Ordering::Release);
    let _ = reports.send(Report::Fetched { key: key.clone(), number, config: config_json }).await;
    if let Err(e) = registry.load(&key.1, Some(config)).await {
        warn!(model = %key.1, revision = number, "load: {e}");
    }
    let version = number.to_string();
    let index = registry.index(false);
    match index.iter().find(|r| r.name == key.1 && r.version == version) {
        Some(row) if row.state == "READY" => RevisionState::Ready,
        Some(row) => failed("ModelLoadFailed", row.reason.clone()),
        None => {
            let why = index.iter().find(|r| r.name == key.1 && r.version.is_empty()).map(|r| r.reason.clone());
            failed("ModelLoadFailed", why.unwrap_or_else(|| format!("revision {} did not load", revision_name(&key.1, number))))
        }
    }
}

/// An InferenceService's validated predictor, or why it is refused.
fn desired(object: &Value) -> Result<PredictorSpec, String> {
    let (isvc, _warnings) = crate::resources::InferenceService::from_value(object).map_err(|e| e.to_string())?;
    crate::resources::validate::validate(&isvc).map(|v| v.predictor).map_err(|e| e.to_string())
}

fn object_key(object: &Value) -> Option<Key> {
    let meta = object.get("metadata")?;
    Some((meta.get("namespace")?.as_str()?.to_string(), meta.get("name")?.as_str()?.to_string()))
}

fn is_ready(status: Option<&Value>) -> bool {
    status.and_then(|s| s.get("conditions")).and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| c.get("type").and_then(Value::as_str) == Some("Ready") && c.get("status").and_then(Value::as_str) == Some("True"))
    })
}
