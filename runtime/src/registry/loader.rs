//! The loader driver: reads a model directory, fingerprints it, loads and warms up the
//! versions that changed (blocking work off the reactor), and feeds the outcome to the pure
//! core; unloads and poll-mode rescans go the same way.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use quiver_core::ModelConfig;
use tracing::{error, info, warn};

use super::{
    fingerprint::{fingerprint, hash_bytes},
    lifecycle::{Event, Loaded, Outcome},
    lock,
    policy::model_policy,
    ModelRegistry, ModelRuntime, ModelSource, VersionState,
};
use crate::{
    model::{elapsed_ms, LoadOptions, ModelVersion},
    repository::{model_names, ModelDirectory},
};

impl ModelRegistry {
    /// The runtime state of `name`, created on its first load.
    fn runtime(&self, name: &str) -> Arc<ModelRuntime> {
        lock(&self.runtimes).entry(name.to_string()).or_insert_with(|| Arc::new(ModelRuntime::new())).clone()
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
            self.shared.table.load().models.iter().filter(|(n, e)| !names.contains(n) && !e.unloaded()).map(|(n, _)| n.clone()).collect();
        for name in gone {
            info!(model = %name, "removed from the repository; unloading");
            self.unload_model(&name).await;
        }
    }

    /// Whether `name` on disk differs from what was last loaded (or last failed) for it.
    fn changed_on_disk(&self, name: &str) -> bool {
        let table = self.shared.table.load();
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

    /// Loads `name` and swaps it into the table; returns what failed.
    pub(super) async fn load_model(&self, name: &str, config: Option<ModelConfig>) -> Result<(), String> {
        lock(&self.loading).insert(name.to_string());
        let result = self.load_model_now(name, config).await;
        lock(&self.loading).remove(name);
        result
    }

    async fn load_model_now(&self, name: &str, config: Option<ModelConfig>) -> Result<(), String> {
        let runtime = self.runtime(name);
        let _control = runtime.control.lock().await;
        let started = Instant::now();
        let event = self.read_and_load(name, config, &runtime).await;
        if let Event::ReadFailed { message, .. } = &event {
            error!(model = name, "failed to read model: {message}");
        }
        let effects = self.shared.apply(name, &event);
        if matches!(event, Event::Loaded(_)) {
            info!(model = name, "loaded in {} ms", elapsed_ms(started));
        }
        self.shared.perform(name, &runtime, &effects)
    }

    /// Reads the directory and loads what changed since the table's entry was loaded.
    async fn read_and_load(&self, name: &str, config: Option<ModelConfig>, runtime: &Arc<ModelRuntime>) -> Event<super::Live> {
        let failed = |message: String| Event::ReadFailed { runtime: runtime.clone(), message };
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
            (Err(e), _, _) | (_, Err(e), _) => return failed(e.to_string()),
            (_, _, Err(e)) => return failed(format!("model '{name}': {e}")),
        };
        // One pass over the files; a config given in the request stands in for the file's.
        let mut fp = fingerprint(&dir.path, &versions);
        if let Some(config) = &config {
            fp.config = hash_bytes(format!("{config:?}").as_bytes());
        }
        let dir = Arc::new(dir);
        let old = self.shared.table.load().models.get(name).cloned();
        let old_source = old.as_ref().and_then(|e| e.source.clone());
        let mut outcomes = BTreeMap::new();
        for &version in &versions {
            let serving = old.as_ref().and_then(|e| e.versions.get(&version)).is_some_and(VersionState::servable);
            let unchanged = old_source
                .as_ref()
                .is_some_and(|s| s.fingerprint.config == fp.config && s.fingerprint.versions.get(&version) == fp.versions.get(&version));
            let outcome = if serving && unchanged {
                Outcome::Unchanged
            } else {
                match load_version(&dir, version, &self.shared.load).await {
                    Ok(model) => Outcome::Loaded(model),
                    Err(e) => {
                        error!(model = name, version, "failed to load: {e}");
                        Outcome::Failed(e)
                    }
                }
            };
            outcomes.insert(version, outcome);
        }
        Event::Loaded(Loaded {
            runtime: runtime.clone(),
            versions: outcomes,
            policy,
            source: Arc::new(ModelSource { dir, fingerprint: fp }),
        })
    }

    /// Stops routing to `name` (when it is in the table).
    pub(super) async fn unload_model(&self, name: &str) {
        let Some(runtime) = self.shared.table.load().models.get(name).map(|e| e.runtime.clone()) else { return };
        let _control = runtime.control.lock().await;
        let effects = self.shared.apply(name, &Event::Unload);
        // An unload has nothing to refuse.
        let _ = self.shared.perform(name, &runtime, &effects);
    }
}

/// Loads and warms up one version (blocking work off the reactor).
pub(super) async fn load_version(dir: &Arc<ModelDirectory>, version: u64, options: &LoadOptions) -> Result<Arc<ModelVersion>, String> {
    let started = Instant::now();
    let (load_dir, options) = (dir.clone(), options.clone());
    let model = tokio::task::spawn_blocking(move || ModelVersion::load(&load_dir, version, &options))
        .await
        .map_err(|e| format!("loader task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    model.warmup(&dir.path).await.map_err(|e| e.to_string())?;
    info!(model = %dir.name, version, "loaded and warmed up in {} ms", elapsed_ms(started));
    Ok(Arc::new(model))
}
