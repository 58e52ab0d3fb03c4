//! `reconcile(desired, observed) -> plan`: KServe's revision and rollout rules as a pure function.
//!
//! - Every change of the predictor's template (everything but `canaryTrafficPercent`) creates a
//!   revision, `{name}-predictor-0000N`, loaded beside the one that serves.
//! - A revision takes traffic only once ready; a failed revision never does.
//! - With `canaryTrafficPercent: P` the latest ready revision gets P% and the previously rolled
//!   out revision the rest; `0` pins the previous one; without it the latest ready revision is
//!   promoted (it becomes the latest rolled-out revision, the old one the previous).
//! - Revisions that neither serve nor are the latest are retired once traffic has left them.

use serde::{Deserialize, Serialize};

use crate::resources::predictor::PredictorSpec;

/// A revision's number: revision N of `name` is `{name}-predictor-{N:05}` and runtime version N.
pub type RevisionNumber = u64;

/// The name KServe gives revision `number` of an InferenceService's predictor.
pub fn revision_name(service: &str, number: RevisionNumber) -> String {
    format!("{service}-predictor-{number:05}")
}

/// Where a revision stands, as the driver observed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum RevisionState {
    /// Created; its model is being fetched (bytes so far, and in all when known).
    Fetching {
        /// Bytes fetched so far.
        done_bytes: u64,
        /// Bytes in all, when known.
        total_bytes: Option<u64>,
    },
    /// Fetched; the runtime is loading it.
    Loading,
    /// Loaded and warmed up: it can take traffic.
    Ready,
    /// It cannot serve: the fetch, the format check or the load failed.
    Failed {
        /// A CamelCase reason (`ModelLoadFailed`, `StorageFailed`, ...).
        reason: String,
        /// What went wrong, for the user.
        message: String,
    },
}

impl RevisionState {
    /// Whether the revision can take traffic.
    pub fn is_ready(&self) -> bool {
        matches!(self, RevisionState::Ready)
    }

    /// Whether the revision will never serve (until it is recreated).
    pub fn is_failed(&self) -> bool {
        matches!(self, RevisionState::Failed { .. })
    }
}

/// One revision as observed: its number, the template it was created from, and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedRevision {
    /// The revision's number.
    pub number: RevisionNumber,
    /// The template it was created from.
    pub template: PredictorSpec,
    /// Where it stands.
    pub state: RevisionState,
}

/// KServe's rollout bookkeeping, kept between reconciles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutHistory {
    /// The revision that last took all traffic through a rollout (promotion).
    pub latest_rolledout: Option<RevisionNumber>,
    /// The one rolled out before it.
    pub previous_rolledout: Option<RevisionNumber>,
}

/// What the driver observed of one InferenceService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Its revisions, in any order.
    pub revisions: Vec<ObservedRevision>,
    /// The rollout bookkeeping from the last reconcile.
    pub history: RolloutHistory,
    /// The highest revision number ever created (numbers are never reused, even after a
    /// revision is retired).
    pub last_number: RevisionNumber,
}

/// Where unpinned requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Traffic {
    /// No revision can serve yet.
    None,
    /// All traffic to one revision.
    All(RevisionNumber),
    /// `canary_percent` to the latest revision, the rest to the previously rolled out one.
    Split {
        /// The previously rolled out revision.
        stable: RevisionNumber,
        /// The latest ready revision.
        canary: RevisionNumber,
        /// The canary's share, 0 to 100.
        canary_percent: u32,
    },
}

impl Traffic {
    /// The revisions that take traffic.
    pub fn revisions(&self) -> Vec<RevisionNumber> {
        match *self {
            Traffic::None => Vec::new(),
            Traffic::All(n) => vec![n],
            Traffic::Split { stable, canary, .. } => vec![stable, canary],
        }
    }
}

/// One step the driver performs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Create revision `number` from `template`: fetch its model and load it beside the others.
    CreateRevision {
        /// The new revision's number.
        number: RevisionNumber,
        /// What it serves.
        template: PredictorSpec,
    },
    /// Route unpinned traffic.
    Route(Traffic),
    /// Unload a revision that no longer serves and forget it.
    Retire(RevisionNumber),
}

/// The outcome of one reconcile: the actions to perform, in order, and the state to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The actions, in order (creations, then routing, then retirements).
    pub actions: Vec<Action>,
    /// Where traffic goes after the actions.
    pub traffic: Traffic,
    /// The rollout bookkeeping after the actions.
    pub history: RolloutHistory,
    /// The latest revision (possibly just created).
    pub latest: Option<RevisionNumber>,
    /// The highest revision number after the actions.
    pub last_number: RevisionNumber,
}

/// Moves an InferenceService toward `desired` from what was `observed`.
///
/// Pure and idempotent: reconciling the plan's own outcome again yields no new creation or
/// retirement, and the same traffic.
pub fn reconcile(desired: &PredictorSpec, observed: &Observed) -> Plan {
    let template = desired.template();
    let mut revisions: Vec<&ObservedRevision> = observed.revisions.iter().collect();
    revisions.sort_by_key(|r| r.number);
    let mut actions = Vec::new();
    let mut last_number = observed.last_number.max(revisions.last().map_or(0, |r| r.number));

    // A template the latest revision does not have makes a new revision.
    let latest_observed = revisions.last().copied();
    let latest_is_current = latest_observed.is_some_and(|r| r.template == template);
    let latest = if latest_is_current {
        latest_observed.map(|r| r.number)
    } else {
        last_number += 1;
        actions.push(Action::CreateRevision { number: last_number, template: template.clone() });
        Some(last_number)
    };
    let ready = |n: RevisionNumber| revisions.iter().any(|r| r.number == n && r.state.is_ready());

    // The rolled-out revision must still be able to serve to keep its traffic; the previous
    // one's name stays for the record even when it was retired (as KServe's status keeps it).
    let mut history = observed.history;
    if history.latest_rolledout.is_some_and(|n| !ready(n)) {
        history.latest_rolledout = history.previous_rolledout.filter(|&n| ready(n));
        history.previous_rolledout = None;
    }

    // Knative's latestReadyRevision: the newest revision that can serve (the latest created
    // one may still be loading, or have failed).
    let latest_ready = revisions.iter().rev().find(|r| r.state.is_ready()).map(|r| r.number);
    let traffic = match (latest_ready, history.latest_rolledout) {
        (Some(n), rolled) => match (desired.canary_traffic_percent, rolled) {
            (Some(percent), Some(stable)) if stable != n => Traffic::Split { stable, canary: n, canary_percent: percent.min(100) },
            // Promotion: the latest ready revision takes all traffic and is rolled out.
            _ => {
                if rolled != Some(n) {
                    history.previous_rolledout = rolled;
                    history.latest_rolledout = Some(n);
                }
                Traffic::All(n)
            }
        },
        (None, _) => Traffic::None,
    };
    actions.push(Action::Route(traffic));

    // Retire what neither serves nor is the latest (traffic has already left it).
    let keep = |n: RevisionNumber| Some(n) == latest || traffic.revisions().contains(&n);
    actions.extend(revisions.iter().filter(|r| !keep(r.number)).map(|r| Action::Retire(r.number)));
    Plan { actions, traffic, history, latest, last_number }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
