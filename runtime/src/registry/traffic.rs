//! Canary routing: a model's traffic split between a stable and a canary version, with
//! KServe's rollout bookkeeping (latest and previous rolled-out revisions). Pure: the registry
//! keeps a [`Rollout`] per model and asks it where each request goes.

use std::{fmt, str::FromStr};

use serde::Serialize;

/// Which side of a split a request went to (KServe's traffic tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Revision {
    /// The rolled-out version.
    Stable,
    /// The version under trial.
    Canary,
}

impl Revision {
    /// The name used in headers, metrics and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Revision::Stable => "stable",
            Revision::Canary => "canary",
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Revision {
    type Err = String;

    /// `stable` (or KServe's `prev`) and `canary` (or `latest`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stable" | "prev" => Ok(Revision::Stable),
            "canary" | "latest" => Ok(Revision::Canary),
            other => Err(format!("unknown revision '{other}' (expected 'stable' or 'canary')")),
        }
    }
}

/// A split of a model's unversioned traffic between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrafficSplit {
    /// The version that takes the rest of the traffic.
    pub stable: u64,
    /// The version under trial.
    pub canary: u64,
    /// Share of requests that go to the canary, 0 to 100.
    pub canary_percent: u32,
}

impl TrafficSplit {
    /// Where the `n`-th request goes. The canary gets exactly `canary_percent` of every 100
    /// consecutive requests, spread evenly (request n goes to the canary when
    /// ⌊(n+1)·P/100⌋ > ⌊n·P/100⌋), so the observed split matches the weight at any scale.
    pub fn route(&self, n: u64) -> Revision {
        let p = u64::from(self.canary_percent.min(100));
        let k = n % 100;
        if (k + 1) * p / 100 > k * p / 100 {
            Revision::Canary
        } else {
            Revision::Stable
        }
    }

    /// The version of a revision.
    pub fn version_of(&self, revision: Revision) -> u64 {
        match revision {
            Revision::Stable => self.stable,
            Revision::Canary => self.canary,
        }
    }
}

/// Why a rollout change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// The request names versions that cannot take traffic.
    #[error("{0}")]
    Invalid(String),
    /// There is no canary to promote or roll back.
    #[error("model has no canary in progress")]
    NoCanary,
}

/// A model's rollout state: the split in progress, if any, and which versions were rolled out
/// (KServe's `latestRolledoutRevision` / `previousRolledoutRevision`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// The split in progress.
    pub split: Option<TrafficSplit>,
    /// The version that last took all traffic through a rollout decision; unversioned
    /// requests go to it when there is no split (and it still serves).
    pub latest_rolledout: Option<u64>,
    /// The version rolled out before it.
    pub previous_rolledout: Option<u64>,
    /// Rollbacks so far (through the API or automatic).
    pub rollbacks: u64,
    /// Why the last rollback happened.
    pub last_rollback_reason: Option<String>,
}

impl Rollout {
    /// Starts or adjusts a split: `canary` takes `percent` of traffic, the rest goes to
    /// `stable` (default: the version serving now, `current`). `servable` says whether a
    /// version can take traffic.
    pub fn set_canary(
        &mut self,
        canary: u64,
        percent: u32,
        stable: Option<u64>,
        current: Option<u64>,
        servable: impl Fn(u64) -> bool,
    ) -> Result<(), RolloutError> {
        if percent > 100 {
            return Err(RolloutError::Invalid(format!("canary traffic percent {percent} is above 100")));
        }
        let stable = stable
            .or(self.split.map(|s| s.stable))
            .or(current)
            .ok_or_else(|| RolloutError::Invalid("no stable version is serving".into()))?;
        if stable == canary {
            return Err(RolloutError::Invalid(format!("the canary and the stable version are both {canary}")));
        }
        for (role, v) in [("canary", canary), ("stable", stable)] {
            if !servable(v) {
                return Err(RolloutError::Invalid(format!("{role} version {v} is not loaded")));
            }
        }
        if self.latest_rolledout.is_none() {
            self.latest_rolledout = Some(stable);
        }
        self.split = Some(TrafficSplit { stable, canary, canary_percent: percent });
        Ok(())
    }

    /// The canary takes all traffic and becomes the rolled-out version.
    pub fn promote(&mut self) -> Result<u64, RolloutError> {
        let split = self.split.take().ok_or(RolloutError::NoCanary)?;
        self.previous_rolledout = Some(split.stable);
        self.latest_rolledout = Some(split.canary);
        Ok(split.canary)
    }

    /// All traffic goes to `version` from now on, which becomes the rolled-out version (the one
    /// before it the previous); a split in progress ends.
    pub fn pin(&mut self, version: u64, servable: impl Fn(u64) -> bool) -> Result<(), RolloutError> {
        if !servable(version) {
            return Err(RolloutError::Invalid(format!("version {version} is not loaded")));
        }
        self.split = None;
        if self.latest_rolledout != Some(version) {
            self.previous_rolledout = self.latest_rolledout;
            self.latest_rolledout = Some(version);
        }
        Ok(())
    }

    /// The split ends and all traffic returns to the stable version.
    pub fn rollback(&mut self, reason: impl Into<String>) -> Result<u64, RolloutError> {
        let split = self.split.take().ok_or(RolloutError::NoCanary)?;
        self.latest_rolledout = Some(split.stable);
        self.rollbacks += 1;
        self.last_rollback_reason = Some(reason.into());
        Ok(split.stable)
    }

    /// Drops what refers to versions that no longer serve (after a reload or unload): a split
    /// with a side gone ends, falling back to what still serves.
    pub fn retain(&mut self, servable: impl Fn(u64) -> bool) {
        if let Some(split) = self.split {
            if !servable(split.stable) || !servable(split.canary) {
                self.split = None;
            }
        }
        if self.latest_rolledout.is_some_and(|v| !servable(v)) {
            self.latest_rolledout = None;
        }
    }

    /// The version for the `n`-th unversioned request, and its revision when a split is in
    /// progress. `pin` forces a side (KServe tag routing); `default` is the version that
    /// serves without a rollout decision (the highest that serves). With no split, pinning
    /// `stable` is the default and pinning `canary` is an error.
    pub fn choose(&self, n: u64, pin: Option<Revision>, default: Option<u64>) -> Result<(Option<u64>, Option<Revision>), RolloutError> {
        match (self.split, pin) {
            (Some(split), Some(pinned)) => Ok((Some(split.version_of(pinned)), Some(pinned))),
            (Some(split), None) => {
                let revision = split.route(n);
                Ok((Some(split.version_of(revision)), Some(revision)))
            }
            (None, Some(Revision::Canary)) => Err(RolloutError::NoCanary),
            (None, _) => Ok((self.latest_rolledout.or(default), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_exact_over_every_hundred() {
        for percent in [0, 1, 10, 33, 50, 99, 100] {
            let split = TrafficSplit { stable: 1, canary: 2, canary_percent: percent };
            for start in [0u64, 37, 1000] {
                let canary = (start..start + 100).filter(|&n| split.route(n) == Revision::Canary).count();
                assert_eq!(canary as u32, percent, "{percent}% from {start}");
            }
            // Spread out, not bunched: any 10 consecutive requests are within one of the share.
            let max_run = (0..100u64).map(|s| (s..s + 10).filter(|&n| split.route(n) == Revision::Canary).count()).max().unwrap();
            assert!(max_run as u32 <= percent.div_ceil(10) + 1, "{percent}%: {max_run} in 10");
        }
        let over = TrafficSplit { stable: 1, canary: 2, canary_percent: 150 };
        assert!((0..100).all(|n| over.route(n) == Revision::Canary));
    }

    #[test]
    fn set_promote_rollback_keep_kserve_bookkeeping() {
        let servable = |v: u64| v <= 3;
        let mut r = Rollout::default();
        assert_eq!(r.choose(0, None, Some(1)).unwrap(), (Some(1), None));
        r.set_canary(2, 10, None, Some(1), servable).unwrap();
        assert_eq!(r.split, Some(TrafficSplit { stable: 1, canary: 2, canary_percent: 10 }));
        assert_eq!(r.latest_rolledout, Some(1));
        // Adjusting keeps the stable side.
        r.set_canary(2, 50, None, Some(2), servable).unwrap();
        assert_eq!(r.split.unwrap().stable, 1);
        assert_eq!(r.promote().unwrap(), 2);
        assert_eq!((r.split, r.latest_rolledout, r.previous_rolledout), (None, Some(2), Some(1)));
        assert_eq!(r.choose(7, None, Some(3)).unwrap(), (Some(2), None), "the rolled-out version, not the highest");
        // Next canary, rolled back.
        r.set_canary(3, 20, None, Some(2), servable).unwrap();
        assert_eq!(r.split.unwrap().stable, 2);
        assert_eq!(r.rollback("p99 too high").unwrap(), 2);
        assert_eq!((r.split, r.latest_rolledout, r.rollbacks), (None, Some(2), 1));
        assert_eq!(r.last_rollback_reason.as_deref(), Some("p99 too high"));
        assert_eq!(r.promote(), Err(RolloutError::NoCanary));
        assert_eq!(r.rollback("x"), Err(RolloutError::NoCanary));
    }

    #[test]
    fn bad_splits_are_refused() {
        let servable = |v: u64| v <= 2;
        let mut r = Rollout::default();
        assert!(r.set_canary(2, 101, None, Some(1), servable).is_err());
        assert!(r.set_canary(1, 10, None, Some(1), servable).unwrap_err().to_string().contains("both 1"));
        assert!(r.set_canary(5, 10, None, Some(1), servable).unwrap_err().to_string().contains("canary version 5 is not loaded"));
        assert!(r.set_canary(2, 10, Some(7), Some(1), servable).unwrap_err().to_string().contains("stable version 7"));
        assert!(r.set_canary(2, 10, None, None, servable).is_err());
        assert_eq!(r, Rollout::default(), "refusals change nothing");
    }

    #[test]
    fn pins_and_explicit_zero_percent() {
        let mut r = Rollout::default();
        r.set_canary(2, 0, None, Some(1), |_| true).unwrap();
        // 0%: everything to stable, but a pinned request still reaches the canary.
        assert!((0..100).all(|n| r.choose(n, None, Some(2)).unwrap() == (Some(1), Some(Revision::Stable))));
        assert_eq!(r.choose(0, Some(Revision::Canary), None).unwrap(), (Some(2), Some(Revision::Canary)));
        let none = Rollout::default();
        assert_eq!(none.choose(0, Some(Revision::Stable), Some(4)).unwrap(), (Some(4), None));
        assert_eq!(none.choose(0, Some(Revision::Canary), Some(4)), Err(RolloutError::NoCanary));
        assert_eq!("LATEST".parse::<Revision>().unwrap(), Revision::Canary);
        assert_eq!("prev".parse::<Revision>().unwrap(), Revision::Stable);
        assert!("blue".parse::<Revision>().is_err());
    }

    #[test]
    fn versions_that_go_away_end_the_split() {
        let mut r = Rollout::default();
        r.set_canary(2, 50, None, Some(1), |_| true).unwrap();
        r.retain(|v| v != 2);
        assert_eq!((r.split, r.latest_rolledout), (None, Some(1)));
        r.retain(|v| v != 1);
        assert_eq!(r.latest_rolledout, None);
    }
}
