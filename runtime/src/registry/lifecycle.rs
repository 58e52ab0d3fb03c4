//! The model table as a pure state machine: [`apply`] takes the current table, one model's
//! [`Event`] and the time, and returns the next table and the [`Effect`]s a driver must carry
//! out. No disk, no clock, no locks, no async: the loaded model, its metadata, where it was
//! read from and its per-model runtime state are opaque handles chosen by a [`Kinds`], so the
//! transitions are tested with plain values.
//!
//! What requests are doing comes in as data (the versions with requests in flight, the time of
//! the last request), never by looking inside the handles.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
};

use super::{
    judge::RollbackRule,
    policy::{ColdStart, ModelPolicy},
    traffic::{Revision, Rollout, RolloutError, TrafficSplit},
    TrafficChange,
};
use crate::ServeError;

/// Reason recorded for the versions of an unloaded model (Triton's wording).
pub const UNLOADED: &str = "unloaded";

/// The handle types the table holds.
pub trait Kinds: Clone + Debug {
    /// A loaded, warmed-up version that serves requests.
    type Model: Clone + Debug;
    /// A version's metadata, kept while it is scaled to zero.
    type Info: Clone + Debug;
    /// Where a model's versions were loaded from.
    type Source: Clone + Debug;
    /// A model's state that outlives table swaps (counters, judge, control lock).
    type Runtime: Clone + Debug;

    /// The metadata of a loaded version.
    fn info(model: &Self::Model) -> Self::Info;
}

/// The state of one model version.
#[derive(Debug, Clone)]
pub enum VersionState<K: Kinds> {
    /// Loaded, warmed up and serving.
    Ready(K::Model),
    /// Scaled to zero: the weights are released, the metadata stays, and the next request
    /// loads it again.
    Idle(K::Info),
    /// Not serving, with the reason (failed to load, or unloaded).
    Unavailable(String),
}

impl<K: Kinds> VersionState<K> {
    /// Whether it can take requests (directly, or after a cold start).
    pub fn servable(&self) -> bool {
        !matches!(self, VersionState::Unavailable(_))
    }

    /// Its metadata, when it has any.
    pub fn info(&self) -> Option<K::Info> {
        match self {
            VersionState::Ready(m) => Some(K::info(m)),
            VersionState::Idle(info) => Some(info.clone()),
            VersionState::Unavailable(_) => None,
        }
    }

    fn is_unloaded(&self) -> bool {
        matches!(self, VersionState::Unavailable(r) if r == UNLOADED)
    }
}

/// What the server knows of one model.
#[derive(Debug, Clone)]
pub struct ModelEntry<K: Kinds> {
    /// Its versions, ascending.
    pub versions: BTreeMap<u64, VersionState<K>>,
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
    /// Where the versions were loaded from (for reloads and cold starts).
    pub source: Option<K::Source>,
    /// The model's state that outlives table swaps, reached by requests without a lock.
    pub runtime: K::Runtime,
}

impl<K: Kinds> ModelEntry<K> {
    /// An entry with no versions.
    pub fn empty(runtime: K::Runtime) -> ModelEntry<K> {
        ModelEntry {
            versions: BTreeMap::new(),
            error: None,
            load_error: None,
            reload_error: None,
            rollout: Rollout::default(),
            policy: ModelPolicy::default(),
            source: None,
            runtime,
        }
    }

    /// The highest version that can serve.
    pub fn highest_servable(&self) -> Option<u64> {
        self.versions.iter().rev().find(|(_, s)| s.servable()).map(|(v, _)| *v)
    }

    /// The version unversioned requests go to when no split is active.
    pub fn default_version(&self) -> Option<u64> {
        self.rollout.latest_rolledout.filter(|v| self.servable(*v)).or_else(|| self.highest_servable())
    }

    /// Whether `version` can serve.
    pub fn servable(&self, version: u64) -> bool {
        self.versions.get(&version).is_some_and(VersionState::servable)
    }

    /// Whether every selected version loaded.
    pub fn fully_ready(&self) -> bool {
        self.error.is_none() && !self.versions.is_empty() && self.versions.values().all(VersionState::servable)
    }

    /// Whether the model was unloaded (and not loaded again).
    pub fn unloaded(&self) -> bool {
        !self.versions.is_empty() && self.versions.values().all(VersionState::is_unloaded)
    }

    /// The activator's settings for this model.
    pub fn cold_start(&self) -> ColdStart {
        self.policy.cold_start
    }

    /// Picks the version for a request to model `name`: `version` when given, else the side
    /// of the split the `n`-th unversioned request goes to (`next` gives `n`; it is only
    /// called for unversioned requests), or the side `pin` names.
    pub fn pick(
        &self,
        name: &str,
        version: &str,
        pin: Option<Revision>,
        next: impl FnOnce() -> u64,
    ) -> Result<(u64, Option<Revision>, &VersionState<K>), ServeError> {
        let (number, revision) = if version.is_empty() {
            let (chosen, revision) = self.rollout.choose(next(), pin, self.highest_servable()).map_err(|e| match e {
                RolloutError::NoCanary => ServeError::InvalidInput(format!("model '{name}' has no canary to pin a request to")),
                RolloutError::Invalid(m) => ServeError::InvalidInput(m),
            })?;
            (chosen.ok_or_else(|| no_versions(name, self))?, revision)
        } else {
            (version.parse().map_err(|_| unknown_version(name, version))?, None)
        };
        let state = self.versions.get(&number).ok_or_else(|| unknown_version(name, version))?;
        Ok((number, revision, state))
    }
}

/// An immutable snapshot of every model.
#[derive(Debug, Clone)]
pub struct ModelTable<K: Kinds> {
    /// Models by name.
    pub models: BTreeMap<String, ModelEntry<K>>,
}

impl<K: Kinds> Default for ModelTable<K> {
    fn default() -> Self {
        ModelTable { models: BTreeMap::new() }
    }
}

/// What came of one selected version in a load.
#[derive(Debug, Clone)]
pub enum Outcome<K: Kinds> {
    /// Loaded and warmed up.
    Loaded(K::Model),
    /// Failed to load, with the reason.
    Failed(String),
    /// Its files and config did not change and it serves: it goes on as it is.
    Unchanged,
}

/// A model load that got as far as loading versions.
#[derive(Debug, Clone)]
pub struct Loaded<K: Kinds> {
    /// The model's runtime state (the same for every load of a model).
    pub runtime: K::Runtime,
    /// Each selected version's outcome.
    pub versions: BTreeMap<u64, Outcome<K>>,
    /// Lifecycle settings from its config.
    pub policy: ModelPolicy,
    /// Where it was read from.
    pub source: K::Source,
}

/// Something that happened to one model.
#[derive(Debug, Clone)]
pub enum Event<K: Kinds> {
    /// A load or reload finished.
    Loaded(Loaded<K>),
    /// The model directory or its config could not be read, so nothing was loaded.
    ReadFailed {
        /// The model's runtime state.
        runtime: K::Runtime,
        /// Why.
        message: String,
    },
    /// The unload API or poll mode unloaded it.
    Unload,
    /// Its owner (a control plane) deleted it: unloaded, and gone from the index and the
    /// metadata as if it had never been loaded.
    Remove,
    /// An autoscaler decided the model scales to zero now: every ready version without a
    /// request in flight releases its weights (whatever the model's own idle policy).
    Release {
        /// Ready versions with requests in flight: they stay loaded.
        busy: BTreeSet<u64>,
    },
    /// A scaled-to-zero version was loaded again for a request.
    Activated {
        /// The version.
        version: u64,
        /// Its loaded model.
        model: K::Model,
    },
    /// A cold start failed; the version stays scaled to zero for the next request to retry.
    ActivationFailed {
        /// The version.
        version: u64,
    },
    /// The traffic API changed the rollout.
    Traffic(TrafficChange),
    /// The canary judge found the canary worse than the stable version.
    Verdict {
        /// Why.
        reason: String,
    },
}

/// What caused a rollback, as the `trigger` label of `quiver_canary_rollbacks_total` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The traffic API.
    Api,
    /// The canary judge.
    Auto,
}

impl Trigger {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Auto => "auto",
        }
    }
}

/// What a driver must do after a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start the model's canary judge afresh with this rule, or stop it.
    Judge(Option<RollbackRule>),
    /// Some versions failed to load; the caller gets this message.
    LoadFailed(String),
    /// The model could not be read; the caller gets this message.
    ReadFailed(String),
    /// The split the config asks for could not be set.
    CanaryIgnored(String),
    /// The model was unloaded; its versions are released as their requests finish.
    Unloaded,
    /// The model was removed from the table; its versions are released as their requests finish.
    Removed,
    /// These versions were scaled to zero (released as their last reference goes).
    ScaledToZero(Vec<u64>),
    /// A scaled-to-zero version serves again.
    Activated(u64),
    /// The traffic change was refused; the caller gets this message.
    Refused(String),
    /// The traffic change took effect; the split now.
    TrafficChanged(Option<TrafficSplit>),
    /// The canary was rolled back.
    RolledBack {
        /// Through the API or by the judge.
        trigger: Trigger,
        /// Why.
        reason: String,
    },
}

/// The next table after `event` happened to model `name`, and what to do about it. Only
/// `name`'s entry changes; an event that changes nothing returns the table as it was. No
/// transition depends on the time: when to scale to zero is the autoscaler's decision, which
/// arrives as a [`Event::Release`].
pub fn apply<K: Kinds>(table: &ModelTable<K>, name: &str, event: &Event<K>) -> (ModelTable<K>, Vec<Effect>) {
    let current = table.models.get(name);
    let mut effects = Vec::new();
    let next = match event {
        Event::Loaded(load) => Some(loaded(name, current, load, &mut effects)),
        Event::ReadFailed { runtime, message } => {
            effects.push(Effect::ReadFailed(format!("failed to load '{name}': {message}")));
            Some(match current {
                // Versions that serve keep serving; the index shows why the reload failed.
                Some(entry) if entry.versions.values().any(VersionState::servable) => {
                    ModelEntry { reload_error: Some(message.clone()), ..entry.clone() }
                }
                _ => ModelEntry { error: Some(message.clone()), ..ModelEntry::empty(runtime.clone()) },
            })
        }
        Event::Unload => current.map(|entry| {
            effects.extend([Effect::Judge(None), Effect::Unloaded]);
            ModelEntry {
                versions: entry.versions.keys().map(|&v| (v, VersionState::Unavailable(UNLOADED.into()))).collect(),
                ..ModelEntry::empty(entry.runtime.clone())
            }
        }),
        Event::Remove => {
            if current.is_some() {
                effects.extend([Effect::Judge(None), Effect::Removed]);
            }
            None
        }
        Event::Release { busy } => current.and_then(|entry| release(entry, busy, &mut effects)),
        Event::Activated { version, model } => {
            current.filter(|e| matches!(e.versions.get(version), Some(VersionState::Idle(_)))).map(|entry| {
                effects.push(Effect::Activated(*version));
                let mut entry = entry.clone();
                entry.versions.insert(*version, VersionState::Ready(model.clone()));
                entry
            })
        }
        Event::ActivationFailed { .. } => None,
        Event::Traffic(change) => match current {
            Some(entry) => traffic(name, entry, change, &mut effects),
            None => {
                effects.push(Effect::Refused(format!("Request for unknown model: '{name}' is not found")));
                None
            }
        },
        Event::Verdict { reason } => current.and_then(|entry| {
            let mut entry = entry.clone();
            let reason = format!("automatic: {reason}");
            entry.rollout.rollback(reason.clone()).ok()?;
            effects.extend([Effect::Judge(None), Effect::RolledBack { trigger: Trigger::Auto, reason }]);
            Some(entry)
        }),
    };
    let mut table = table.clone();
    if let Some(entry) = next {
        table.models.insert(name.to_string(), entry);
    } else if matches!(event, Event::Remove) {
        table.models.remove(name);
    }
    (table, effects)
}

fn loaded<K: Kinds>(name: &str, current: Option<&ModelEntry<K>>, load: &Loaded<K>, effects: &mut Vec<Effect>) -> ModelEntry<K> {
    let mut states = BTreeMap::new();
    let mut failures = Vec::new();
    for (&version, outcome) in &load.versions {
        let previous = current.and_then(|e| e.versions.get(&version)).filter(|s| s.servable());
        let state = match outcome {
            Outcome::Loaded(model) => VersionState::Ready(model.clone()),
            Outcome::Unchanged => previous.cloned().unwrap_or_else(|| VersionState::Unavailable("not loaded".into())),
            Outcome::Failed(e) => {
                failures.push(format!("version {version}: {e}"));
                // A version that served before goes on serving.
                previous.cloned().unwrap_or_else(|| VersionState::Unavailable(e.clone()))
            }
        };
        states.insert(version, state);
    }
    // Versions the reload no longer selects stay listed as unloaded, as Triton lists them.
    for (version, state) in current.iter().flat_map(|e| &e.versions) {
        if !states.contains_key(version) && (state.servable() || state.is_unloaded()) {
            states.insert(*version, VersionState::Unavailable(UNLOADED.into()));
        }
    }
    let servable = |v: u64| states.get(&v).is_some_and(VersionState::servable);
    let mut rollout = current.map(|c| c.rollout.clone()).unwrap_or_default();
    let had_split = rollout.split.is_some();
    rollout.retain(servable);
    if let Some(canary) = load.policy.canary.filter(|_| !had_split) {
        let default = states.iter().rev().find(|(v, s)| s.servable() && **v != canary.canary).map(|(v, _)| *v);
        if let Err(e) = rollout.set_canary(canary.canary, canary.percent, canary.stable, default, servable) {
            effects.push(Effect::CanaryIgnored(e.to_string()));
        }
    }
    let load_error = (!failures.is_empty()).then(|| format!("failed to load '{name}': {}", failures.join("; ")));
    effects.push(Effect::Judge(load.policy.rollback));
    effects.extend(load_error.clone().map(Effect::LoadFailed));
    ModelEntry {
        versions: states,
        error: None,
        load_error,
        reload_error: None,
        rollout,
        policy: load.policy.clone(),
        source: Some(load.source.clone()),
        runtime: load.runtime.clone(),
    }
}

/// Scales every ready version of `entry` that is not `busy` to zero.
fn release<K: Kinds>(entry: &ModelEntry<K>, busy: &BTreeSet<u64>, effects: &mut Vec<Effect>) -> Option<ModelEntry<K>> {
    let mut entry = entry.clone();
    let mut released = Vec::new();
    for (version, state) in entry.versions.iter_mut() {
        if let VersionState::Ready(model) = state {
            if !busy.contains(version) {
                *state = VersionState::Idle(K::info(model));
                released.push(*version);
            }
        }
    }
    if released.is_empty() {
        return None;
    }
    effects.push(Effect::ScaledToZero(released));
    Some(entry)
}

fn traffic<K: Kinds>(name: &str, entry: &ModelEntry<K>, change: &TrafficChange, effects: &mut Vec<Effect>) -> Option<ModelEntry<K>> {
    let mut rollout = entry.rollout.clone();
    let mut after = Vec::new();
    let outcome = match change {
        TrafficChange::Split { canary, percent, stable, rollback } => {
            // The stable side: what serves now, or else the highest other version.
            let current = entry
                .default_version()
                .filter(|v| v != canary)
                .or_else(|| entry.versions.iter().rev().find(|(v, s)| s.servable() && *v != canary).map(|(v, _)| *v));
            let set = rollout.set_canary(*canary, *percent, *stable, current, |v| entry.servable(v));
            after.push(Effect::Judge(rollback.or(entry.policy.rollback)));
            set
        }
        TrafficChange::Promote => rollout.promote().map(|_| ()),
        TrafficChange::Pin { version } => {
            after.push(Effect::Judge(None));
            rollout.pin(*version, |v| entry.servable(v))
        }
        TrafficChange::Rollback => {
            let reason = "rolled back through the API";
            after.push(Effect::RolledBack { trigger: Trigger::Api, reason: reason.into() });
            rollout.rollback(reason).map(|_| ())
        }
    };
    if let Err(e) = outcome {
        effects.push(Effect::Refused(format!("model '{name}': {e}")));
        return None;
    }
    effects.push(Effect::TrafficChanged(rollout.split));
    effects.extend(after);
    Some(ModelEntry { rollout, ..entry.clone() })
}

/// The error for a request to a version that does not exist.
pub fn unknown_version(name: &str, version: &str) -> ServeError {
    ServeError::NotFound(format!("Request for unknown model: '{name}' version {version} is not found"))
}

/// The error for a request to a model with nothing to serve it.
pub fn no_versions<K: Kinds>(name: &str, entry: &ModelEntry<K>) -> ServeError {
    let why =
        entry.error.as_ref().or(entry.reload_error.as_ref()).or(entry.load_error.as_ref()).map(|e| format!(": {e}")).unwrap_or_default();
    ServeError::Unavailable(format!("Request for unknown model: '{name}' has no available versions{why}"))
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
