//! Table-driven tests of the pure lifecycle core: plain values for models, no disk, no clock.

use std::time::Duration;

use super::*;
use crate::registry::policy::{CanaryConfig, IdlePolicy};

/// Models are (version, generation) pairs; infos name them; sources and runtimes are numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fake;

impl Kinds for Fake {
    type Model = (u64, u32);
    type Info = String;
    type Source = u32;
    type Runtime = u8;

    fn info(model: &(u64, u32)) -> String {
        format!("v{}g{}", model.0, model.1)
    }
}

type Table = ModelTable<Fake>;
type State = VersionState<Fake>;

const M: &str = "m";

fn load_event(versions: &[(u64, Outcome<Fake>)], policy: &ModelPolicy, source: u32) -> Event<Fake> {
    Event::Loaded(Loaded { runtime: 7, versions: versions.iter().cloned().collect(), policy: policy.clone(), source })
}

fn ok(v: u64, generation: u32) -> (u64, Outcome<Fake>) {
    (v, Outcome::Loaded((v, generation)))
}

fn step(table: &Table, event: Event<Fake>) -> (Table, Vec<Effect>) {
    apply(table, M, &event)
}

fn entry(table: &Table) -> &ModelEntry<Fake> {
    &table.models[M]
}

/// A short summary of each version: `R<gen>`, `I`, or `U:<reason>`.
fn states(table: &Table) -> Vec<(u64, String)> {
    entry(table)
        .versions
        .iter()
        .map(|(v, s)| {
            let s = match s {
                State::Ready((_, g)) => format!("R{g}"),
                State::Idle(_) => "I".to_string(),
                State::Unavailable(r) => format!("U:{r}"),
            };
            (*v, s)
        })
        .collect()
}

fn summary(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|(v, s)| (*v, s.to_string())).collect()
}

fn idle_policy(grace_ms: u64) -> ModelPolicy {
    ModelPolicy { idle: Some(IdlePolicy { grace: Duration::from_millis(grace_ms) }), ..Default::default() }
}

fn rule() -> RollbackRule {
    RollbackRule { max_error_rate_increase: Some(0.1), ..Default::default() }
}

/// Versions 1 and 2 ready (generation 1).
fn two_ready(policy: &ModelPolicy) -> Table {
    step(&Table::default(), load_event(&[ok(1, 1), ok(2, 1)], policy, 1)).0
}

#[test]
fn a_first_load_readies_every_version_and_resets_judge_and_clock() {
    let policy = ModelPolicy { rollback: Some(rule()), ..Default::default() };
    let (table, effects) = step(&Table::default(), load_event(&[ok(1, 1), ok(2, 1)], &policy, 9));
    assert_eq!(states(&table), summary(&[(1, "R1"), (2, "R1")]));
    assert_eq!(effects, [Effect::Judge(Some(rule()))]);
    let e = entry(&table);
    assert_eq!((e.source, e.runtime, e.default_version()), (Some(9), 7, Some(2)));
    assert!(e.fully_ready() && !e.unloaded());
}

#[test]
fn reloads_keep_unchanged_versions_and_failed_ones_keep_serving() {
    let policy = ModelPolicy::default();
    let table = two_ready(&policy);
    // (outcomes, expected states, expected load error)
    type Case = (Vec<(u64, Outcome<Fake>)>, Vec<(u64, &'static str)>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (vec![(1, Outcome::Unchanged), (2, Outcome::Unchanged)], vec![(1, "R1"), (2, "R1")], None),
        (vec![(1, Outcome::Unchanged), ok(2, 2)], vec![(1, "R1"), (2, "R2")], None),
        (vec![(1, Outcome::Unchanged), (2, Outcome::Failed("bad".into()))], vec![(1, "R1"), (2, "R1")], Some("version 2: bad")),
        (
            vec![(1, Outcome::Unchanged), (2, Outcome::Unchanged), (3, Outcome::Failed("corrupt".into()))],
            vec![(1, "R1"), (2, "R1"), (3, "U:corrupt")],
            Some("version 3: corrupt"),
        ),
        // Version 2 no longer selected: listed as unloaded.
        (vec![(1, Outcome::Unchanged)], vec![(1, "R1"), (2, "U:unloaded")], None),
    ];
    for (outcomes, want, error) in cases {
        let (next, effects) = step(&table, load_event(&outcomes, &policy, 2));
        assert_eq!(states(&next), summary(&want), "{outcomes:?}");
        let e = entry(&next);
        assert_eq!(e.load_error.is_some(), error.is_some());
        if let Some(error) = error {
            assert!(e.load_error.as_deref().unwrap().contains(error), "{:?}", e.load_error);
            assert!(effects.iter().any(|f| matches!(f, Effect::LoadFailed(m) if m.contains(error) && m.contains("'m'"))));
        }
        assert_eq!(e.source, Some(2));
        assert!(e.servable(1));
    }
    // A version unchanged but not serving before is not made up.
    let (next, _) = step(&Table::default(), load_event(&[(1, Outcome::Unchanged)], &policy, 1));
    assert_eq!(states(&next), summary(&[(1, "U:not loaded")]));
}

#[test]
fn read_failures_keep_what_serves() {
    let policy = ModelPolicy::default();
    let failure = |table: &Table| step(table, Event::ReadFailed { runtime: 7, message: "bad config".into() });
    // A new model: only the error.
    let (table, effects) = failure(&Table::default());
    let e = entry(&table);
    assert_eq!((e.error.as_deref(), e.versions.len(), e.default_version()), (Some("bad config"), 0, None));
    assert_eq!(effects, [Effect::ReadFailed("failed to load 'm': bad config".into())]);
    assert!(matches!(no_versions(M, e), ServeError::Unavailable(m) if m.ends_with(": bad config")));
    // A serving model: its versions serve on; the reload error shows.
    let (table, _) = failure(&two_ready(&policy));
    let e = entry(&table);
    assert_eq!((e.error.as_deref(), e.reload_error.as_deref()), (None, Some("bad config")));
    assert_eq!(states(&table), summary(&[(1, "R1"), (2, "R1")]));
    // The next good load clears it.
    let (table, _) = step(&table, load_event(&[(1, Outcome::Unchanged), (2, Outcome::Unchanged)], &policy, 3));
    assert_eq!(entry(&table).reload_error, None);
    // An unloaded model that fails to read shows the error only.
    let (unloaded, _) = step(&two_ready(&policy), Event::Unload);
    let (table, _) = failure(&unloaded);
    assert_eq!((entry(&table).error.as_deref(), entry(&table).versions.len()), (Some("bad config"), 0));
}

#[test]
fn unload_marks_every_version_and_a_load_brings_it_back() {
    let policy = ModelPolicy { canary: Some(CanaryConfig { canary: 2, percent: 10, stable: None }), ..Default::default() };
    let (table, effects) = step(&two_ready(&policy), Event::Unload);
    assert_eq!(states(&table), summary(&[(1, "U:unloaded"), (2, "U:unloaded")]));
    assert_eq!(effects, [Effect::Judge(None), Effect::Unloaded]);
    let e = entry(&table);
    assert!(e.unloaded() && !e.fully_ready());
    assert_eq!((e.rollout.split, e.source, e.runtime), (None, None, 7), "the split ends; the runtime stays");
    // Unloading again or unloading an unknown model changes nothing.
    assert_eq!(step(&table, Event::Unload).1, [Effect::Judge(None), Effect::Unloaded]);
    let (empty, effects) = step(&Table::default(), Event::Unload);
    assert!(empty.models.is_empty() && effects.is_empty());
    // Loaded again (only version 1 selected): 2 stays listed as unloaded.
    let (table, _) = step(&table, load_event(&[ok(1, 2)], &ModelPolicy::default(), 4));
    assert_eq!(states(&table), summary(&[(1, "R2"), (2, "U:unloaded")]));
    assert!(!entry(&table).unloaded());
}

#[test]
fn a_removal_drops_the_model_from_the_table() {
    let table = two_ready(&ModelPolicy::default());
    let (gone, effects) = step(&table, Event::Remove);
    assert!(!gone.models.contains_key(M));
    assert_eq!(effects, [Effect::Judge(None), Effect::Removed]);
    let (still, effects) = step(&gone, Event::Remove);
    assert!(still.models.is_empty() && effects.is_empty(), "removing what is not there does nothing");
}

#[test]
fn a_release_scales_to_zero_without_an_idle_policy_but_spares_busy_versions() {
    let busy = |vs: &[u64]| vs.iter().copied().collect::<BTreeSet<u64>>();
    let table = two_ready(&ModelPolicy::default());
    let (next, effects) = step(&table, Event::Release { busy: busy(&[2]) });
    assert_eq!(states(&next), summary(&[(1, "I"), (2, "R1")]));
    assert_eq!(effects, [Effect::ScaledToZero(vec![1])]);
    let (zero, effects) = step(&next, Event::Release { busy: busy(&[]) });
    assert_eq!((states(&zero), effects), (summary(&[(1, "I"), (2, "I")]), vec![Effect::ScaledToZero(vec![2])]));
    assert!(step(&zero, Event::Release { busy: busy(&[]) }).1.is_empty(), "nothing left to release");
}

#[test]
fn activation_readies_an_idle_version_once() {
    let (zero, _) = step(&two_ready(&idle_policy(0)), Event::Release { busy: BTreeSet::new() });
    let (table, effects) = step(&zero, Event::Activated { version: 2, model: (2, 5) });
    assert_eq!(states(&table), summary(&[(1, "I"), (2, "R5")]));
    assert_eq!(effects, [Effect::Activated(2)]);
    // Already ready (another request won), failed, unloaded meanwhile, unknown: nothing changes.
    let cases = [
        (table.clone(), Event::Activated { version: 2, model: (2, 6) }),
        (zero.clone(), Event::ActivationFailed { version: 2 }),
        (step(&zero, Event::Unload).0, Event::Activated { version: 2, model: (2, 6) }),
        (Table::default(), Event::Activated { version: 2, model: (2, 6) }),
    ];
    for (before, event) in cases {
        let (after, effects) = step(&before, event.clone());
        assert!(effects.is_empty(), "{event:?}");
        assert_eq!(after.models.get(M).map(|_| states(&after)), before.models.get(M).map(|_| states(&before)));
    }
}

#[test]
fn traffic_changes_split_promote_and_roll_back() {
    let policy = ModelPolicy { rollback: Some(rule()), ..Default::default() };
    let table = two_ready(&policy);
    let split = |canary, percent, rollback| Event::Traffic(TrafficChange::Split { canary, percent, stable: None, rollback });
    let (table, effects) = step(&table, split(2, 30, None));
    let want = TrafficSplit { stable: 1, canary: 2, canary_percent: 30 };
    assert_eq!(effects, [Effect::TrafficChanged(Some(want)), Effect::Judge(Some(rule()))], "the config's rule by default");
    assert_eq!(entry(&table).rollout.latest_rolledout, Some(1));
    // A rule given with the split wins.
    let own = RollbackRule { max_p99_ratio: Some(3.0), ..Default::default() };
    assert_eq!(step(&table, split(2, 50, Some(own))).1[1], Effect::Judge(Some(own)));

    let (rolled, effects) = step(&table, Event::Traffic(TrafficChange::Rollback));
    assert_eq!(
        effects,
        [Effect::TrafficChanged(None), Effect::RolledBack { trigger: Trigger::Api, reason: "rolled back through the API".into() }]
    );
    let r = &entry(&rolled).rollout;
    assert_eq!((r.split, r.latest_rolledout, r.rollbacks), (None, Some(1), 1));

    let (promoted, effects) = step(&table, Event::Traffic(TrafficChange::Promote));
    assert_eq!(effects, [Effect::TrafficChanged(None)]);
    let e = entry(&promoted);
    assert_eq!((e.rollout.latest_rolledout, e.rollout.previous_rolledout, e.default_version()), (Some(2), Some(1), Some(2)));

    // Refusals change nothing and say why.
    let refusals = [
        (promoted.clone(), Event::Traffic(TrafficChange::Promote), "no canary"),
        (promoted.clone(), Event::Traffic(TrafficChange::Rollback), "no canary"),
        (promoted.clone(), split(7, 10, None), "not loaded"),
        (promoted.clone(), Event::Traffic(TrafficChange::Split { canary: 2, percent: 10, stable: Some(2), rollback: None }), "both 2"),
        (promoted.clone(), split(1, 101, None), "above 100"),
        (Table::default(), split(1, 10, None), "unknown model"),
    ];
    for (before, event, why) in refusals {
        let (after, effects) = step(&before, event.clone());
        assert!(matches!(&effects[..], [Effect::Refused(m)] if m.contains(why)), "{event:?}: {effects:?}");
        assert_eq!(after.models.get(M).map(|e| e.rollout.clone()), before.models.get(M).map(|e| e.rollout.clone()));
    }
}

#[test]
fn a_pin_ends_the_split_and_keeps_a_newer_version_from_traffic() {
    let table = two_ready(&ModelPolicy::default());
    // Without a decision the highest version serves; a pin chooses the older one.
    assert_eq!(entry(&table).default_version(), Some(2));
    let (pinned, effects) = step(&table, Event::Traffic(TrafficChange::Pin { version: 1 }));
    assert_eq!(effects, [Effect::TrafficChanged(None), Effect::Judge(None)]);
    let e = entry(&pinned);
    assert_eq!((e.rollout.latest_rolledout, e.default_version()), (Some(1), Some(1)));
    // From a split: the split ends, the pinned version is rolled out, the old one previous.
    let split = Event::Traffic(TrafficChange::Split { canary: 2, percent: 30, stable: None, rollback: None });
    let (split, _) = step(&pinned, split);
    let (moved, _) = step(&split, Event::Traffic(TrafficChange::Pin { version: 2 }));
    let r = &entry(&moved).rollout;
    assert_eq!((r.split, r.latest_rolledout, r.previous_rolledout), (None, Some(2), Some(1)));
    // A version that does not serve cannot be pinned.
    let (same, effects) = step(&moved, Event::Traffic(TrafficChange::Pin { version: 9 }));
    assert!(matches!(&effects[..], [Effect::Refused(m)] if m.contains("not loaded")), "{effects:?}");
    assert_eq!(entry(&same).rollout, entry(&moved).rollout);
}

#[test]
fn verdicts_roll_back_a_running_split_only() {
    let table = two_ready(&ModelPolicy::default());
    let verdict = || Event::Verdict { reason: "p99 too high".into() };
    let (split, _) = step(&table, Event::Traffic(TrafficChange::Split { canary: 2, percent: 50, stable: None, rollback: Some(rule()) }));
    let (rolled, effects) = step(&split, verdict());
    let reason = "automatic: p99 too high".to_string();
    assert_eq!(effects, [Effect::Judge(None), Effect::RolledBack { trigger: Trigger::Auto, reason: reason.clone() }]);
    let r = &entry(&rolled).rollout;
    assert_eq!((r.split, r.latest_rolledout, r.rollbacks, r.last_rollback_reason.clone()), (None, Some(1), 1, Some(reason)));
    // No split (ended meanwhile), or no model: nothing to do.
    assert!(step(&rolled, verdict()).1.is_empty());
    assert_eq!(entry(&step(&rolled, verdict()).0).rollout.rollbacks, 1);
    assert!(step(&Table::default(), verdict()).0.models.is_empty());
}

#[test]
fn config_canaries_start_once_and_end_with_their_versions() {
    let canary = |canary, stable| ModelPolicy { canary: Some(CanaryConfig { canary, percent: 20, stable }), ..Default::default() };
    let (table, effects) = step(&Table::default(), load_event(&[ok(1, 1), ok(2, 1)], &canary(2, None), 1));
    assert!(!effects.iter().any(|e| matches!(e, Effect::CanaryIgnored(_))));
    assert_eq!(entry(&table).rollout.split, Some(TrafficSplit { stable: 1, canary: 2, canary_percent: 20 }));
    // A split in progress (here adjusted through the API) is not reset by a reload.
    let (adjusted, _) = step(&table, Event::Traffic(TrafficChange::Split { canary: 2, percent: 60, stable: None, rollback: None }));
    let keep = [(1, Outcome::Unchanged), (2, Outcome::Unchanged)];
    let (reloaded, _) = step(&adjusted, load_event(&keep, &canary(2, None), 1));
    assert_eq!(entry(&reloaded).rollout.split.map(|s| s.canary_percent), Some(60));
    // A reload that drops the canary ends the split (without restarting the config's); the
    // next reload tries the config's split and cannot start it.
    let (dropped, effects) = step(&reloaded, load_event(&[(1, Outcome::Unchanged)], &canary(2, None), 2));
    assert_eq!(entry(&dropped).rollout.split, None);
    assert!(!effects.iter().any(|e| matches!(e, Effect::CanaryIgnored(_))));
    let (again, effects) = step(&dropped, load_event(&[(1, Outcome::Unchanged)], &canary(2, None), 2));
    assert_eq!(entry(&again).rollout.split, None);
    assert!(effects.iter().any(|e| matches!(e, Effect::CanaryIgnored(m) if m.contains("canary version 2 is not loaded"))));
    // A canary whose stable version failed to load is ignored too.
    let (failed, effects) = step(&Table::default(), load_event(&[(1, Outcome::Failed("x".into())), ok(2, 1)], &canary(2, Some(1)), 1));
    assert_eq!(entry(&failed).rollout.split, None);
    assert!(effects.iter().any(|e| matches!(e, Effect::CanaryIgnored(m) if m.contains("stable version 1"))));
}

#[test]
fn pick_routes_versions_splits_and_pins() {
    let table = two_ready(&ModelPolicy::default());
    let (split, _) = step(&table, Event::Traffic(TrafficChange::Split { canary: 2, percent: 50, stable: None, rollback: None }));
    let e = entry(&split);
    let pick = |version: &str, pin, n| e.pick(M, version, pin, || n).map(|(v, r, _)| (v, r));
    assert_eq!(pick("1", None, 0), Ok((1, None)), "an explicit version bypasses the split");
    assert_eq!(pick("", None, 0), Ok((1, Some(Revision::Stable))));
    assert_eq!(pick("", None, 1), Ok((2, Some(Revision::Canary))));
    assert_eq!(pick("", Some(Revision::Canary), 0), Ok((2, Some(Revision::Canary))));
    assert!(matches!(pick("9", None, 0), Err(ServeError::NotFound(_))));
    assert!(matches!(pick("x", None, 0), Err(ServeError::NotFound(_))));
    // The counter is only drawn for unversioned requests.
    let mut drawn = 0;
    let _ = e.pick(M, "2", None, || {
        drawn += 1;
        0
    });
    assert_eq!(drawn, 0);
    // Without a split, pinning the canary is the client's error; an unloaded model has nothing.
    let e = entry(&table);
    assert!(matches!(e.pick(M, "", Some(Revision::Canary), || 0), Err(ServeError::InvalidInput(_))));
    assert_eq!(e.pick(M, "", Some(Revision::Stable), || 0).map(|(v, r, _)| (v, r)), Ok((2, None)));
    let (unloaded, _) = step(&table, Event::Unload);
    assert!(matches!(entry(&unloaded).pick(M, "", None, || 0), Err(ServeError::Unavailable(_))));
    assert!(matches!(entry(&unloaded).pick(M, "1", None, || 0), Ok((1, None, State::Unavailable(_)))));
}

#[test]
fn entries_pick_defaults_and_report_readiness() {
    let mut e = ModelEntry::<Fake>::empty(0);
    assert_eq!(e.default_version(), None);
    assert!(!e.fully_ready());
    e.versions.insert(1, State::Unavailable("bad".into()));
    e.versions.insert(2, State::Unavailable("bad".into()));
    assert_eq!(e.highest_servable(), None);
    assert!(!e.unloaded());
    e.versions.insert(1, State::Unavailable(UNLOADED.into()));
    e.versions.insert(2, State::Unavailable(UNLOADED.into()));
    assert!(e.unloaded());
}
