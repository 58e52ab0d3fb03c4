//! The rollout driver: the traffic API (split, promote, rollback) and the canary judge's
//! verdicts, both applied through the pure core.

use std::{sync::atomic::Ordering, time::Duration};

use super::{
    lifecycle::Event, lock, traffic::Revision, unknown_model, ModelRegistry, ModelRuntime, Shared, TrafficChange, TrafficStatus,
    TrafficTarget,
};
use crate::ServeError;

impl ModelRegistry {
    /// The rollout of `name`.
    pub fn traffic(&self, name: &str) -> Result<TrafficStatus, ServeError> {
        let table = self.shared.table.load();
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
            rollback_rule: entry.runtime.rollback_rule(),
            rollbacks: entry.rollout.rollbacks,
            last_rollback_reason: entry.rollout.last_rollback_reason.clone(),
        })
    }

    /// Changes the rollout of `name` through the API.
    pub async fn change_traffic(&self, name: &str, change: TrafficChange) -> Result<TrafficStatus, ServeError> {
        let runtime = self.shared.table.load().models.get(name).map(|e| e.runtime.clone()).ok_or_else(|| unknown_model(name))?;
        let _control = runtime.control.lock().await;
        let effects = self.shared.apply(name, &Event::Traffic(change));
        self.shared.perform(name, &runtime, &effects).map_err(|m| {
            if self.shared.table.load().models.contains_key(name) {
                ServeError::InvalidInput(m)
            } else {
                unknown_model(name)
            }
        })?;
        self.traffic(name)
    }
}

/// Records the outcome of one request of a split with `revision` in the model's judge, and
/// checks the canary against its rule (at most once a second), rolling it back when it trips.
/// A split without a rule has no judge and costs nothing here.
pub(super) fn judge(shared: &Shared, runtime: &ModelRuntime, name: &str, revision: Revision, ok: bool, latency: Duration) {
    let Some(judge) = runtime.judge.load_full() else { return };
    let now_s = shared.now_ms() / 1000;
    let verdict = {
        let mut judge = lock(&judge);
        judge.record(now_s, revision, ok, u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        if runtime.judged_at.swap(now_s, Ordering::Relaxed) == now_s {
            return;
        }
        judge.verdict(now_s)
    };
    let Some(reason) = verdict else { return };
    let effects = shared.apply(name, &Event::Verdict { reason });
    let _ = shared.perform(name, runtime, &effects);
}
