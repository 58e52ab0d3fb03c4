//! The live model table, read without locks by every request and swapped whole by loads.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use tracing::{error, info};

use crate::{
    model::{elapsed_ms, LoadOptions, ModelVersion},
    repository::{model_names, ModelDirectory, RepositoryError},
    ServeError,
};

/// The state of one model version.
#[derive(Debug, Clone)]
pub enum VersionState {
    /// Loaded and serving.
    Ready(Arc<ModelVersion>),
    /// Failed to load, with the reason.
    Unavailable(String),
}

/// What the server knows of one model.
#[derive(Debug, Clone, Default)]
pub struct ModelEntry {
    /// Its versions, ascending.
    pub versions: BTreeMap<u64, VersionState>,
    /// A failure that prevented reading the model at all (invalid config, no versions).
    pub error: Option<String>,
}

impl ModelEntry {
    /// The highest ready version, which serves requests that name no version.
    pub fn default_version(&self) -> Option<&Arc<ModelVersion>> {
        self.versions.values().rev().find_map(|s| match s {
            VersionState::Ready(m) => Some(m),
            VersionState::Unavailable(_) => None,
        })
    }

    /// Whether every selected version loaded.
    pub fn fully_ready(&self) -> bool {
        self.error.is_none() && !self.versions.is_empty() && self.versions.values().all(|s| matches!(s, VersionState::Ready(_)))
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
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is not ready.
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

/// The models of one repository.
#[derive(Debug)]
pub struct ModelRegistry {
    repository: PathBuf,
    options: LoadOptions,
    table: ArcSwap<ModelTable>,
    loaded: AtomicBool,
}

impl ModelRegistry {
    /// An empty registry for `repository`; call [`ModelRegistry::load_all`] to fill it.
    pub fn new(repository: PathBuf, options: LoadOptions) -> ModelRegistry {
        ModelRegistry { repository, options, table: ArcSwap::from_pointee(ModelTable::default()), loaded: AtomicBool::new(false) }
    }

    /// Loads every model of the repository (Triton's `--model-control-mode=none`). Models that
    /// fail are recorded as unavailable with the reason; the others serve.
    pub async fn load_all(&self) -> Result<LoadSummary, RepositoryError> {
        let names = model_names(&self.repository)?;
        let mut table = ModelTable::default();
        for name in names {
            let entry = self.load_model(&name).await;
            table.models.insert(name, entry);
        }
        let summary = LoadSummary {
            ready: table.models.values().filter(|m| m.fully_ready()).count(),
            failed: table.models.values().filter(|m| !m.fully_ready()).count(),
        };
        self.table.store(Arc::new(table));
        self.loaded.store(true, Ordering::Release);
        Ok(summary)
    }

    async fn load_model(&self, name: &str) -> ModelEntry {
        let dir = match ModelDirectory::read(&self.repository, name).and_then(|d| d.selected_versions().map(|v| (d, v))) {
            Ok(found) => found,
            Err(e) => {
                error!(model = name, "failed to read model: {e}");
                return ModelEntry { versions: BTreeMap::new(), error: Some(e.to_string()) };
            }
        };
        let (dir, versions) = dir;
        let dir = Arc::new(dir);
        let mut entry = ModelEntry::default();
        for version in versions {
            let started = Instant::now();
            let (dir, options) = (dir.clone(), self.options.clone());
            let loaded = tokio::task::spawn_blocking(move || ModelVersion::load(&dir, version, &options)).await;
            let state = match loaded {
                Ok(Ok(model)) => {
                    info!(model = name, version, "loaded in {} ms", elapsed_ms(started));
                    VersionState::Ready(Arc::new(model))
                }
                Ok(Err(e)) => {
                    error!(model = name, version, "failed to load: {e}");
                    VersionState::Unavailable(e.to_string())
                }
                Err(e) => VersionState::Unavailable(format!("loader task failed: {e}")),
            };
            entry.versions.insert(version, state);
        }
        entry
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<ModelTable> {
        self.table.load_full()
    }

    /// Whether the initial load finished and every model in it is ready.
    pub fn all_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && self.table.load().models.values().all(ModelEntry::fully_ready)
    }

    /// The version that serves `name` at `version` (empty = the model's default version).
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<ModelVersion>, ServeError> {
        let table = self.table.load();
        let entry = table
            .models
            .get(name)
            .ok_or_else(|| ServeError::NotFound(format!("Request for unknown model: '{name}' is not found")))?;
        if version.is_empty() {
            return entry.default_version().cloned().ok_or_else(|| {
                ServeError::Unavailable(format!(
                    "Request for unknown model: '{name}' has no available versions{}",
                    entry.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                ))
            });
        }
        let not_found = || ServeError::NotFound(format!("Request for unknown model: '{name}' version {version} is not found"));
        let number: u64 = version.parse().map_err(|_| not_found())?;
        match entry.versions.get(&number) {
            Some(VersionState::Ready(m)) => Ok(m.clone()),
            Some(VersionState::Unavailable(reason)) => {
                Err(ServeError::Unavailable(format!("model '{name}' version {version} is not ready: {reason}")))
            }
            None => Err(not_found()),
        }
    }

    /// The ready versions of a model, ascending, as the metadata lists them.
    pub fn ready_versions(&self, name: &str) -> Vec<String> {
        let table = self.table.load();
        table
            .models
            .get(name)
            .map(|e| {
                e.versions
                    .iter()
                    .filter(|(_, s)| matches!(s, VersionState::Ready(_)))
                    .map(|(v, _)| v.to_string())
                    .collect()
            })
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
                    VersionState::Unavailable(reason) => ("UNAVAILABLE", reason.clone()),
                };
                if !ready_only || state == "READY" {
                    rows.push(IndexEntry { name: name.clone(), version: version.to_string(), state, reason });
                }
            }
        }
        rows
    }
}
