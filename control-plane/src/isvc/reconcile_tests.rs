//! Table tests of the revision and rollout rules.

use super::*;

fn spec(uri: &str, canary: Option<u32>) -> PredictorSpec {
    crate::resources::predictor::example(uri, canary)
}

fn rev(number: u64, uri: &str, state: RevisionState) -> ObservedRevision {
    ObservedRevision { number, template: spec(uri, None), state }
}

fn ready(number: u64, uri: &str) -> ObservedRevision {
    rev(number, uri, RevisionState::Ready)
}

fn failed(number: u64, uri: &str) -> ObservedRevision {
    rev(number, uri, RevisionState::Failed { reason: "ModelLoadFailed".into(), message: "bad".into() })
}

fn history(latest: Option<u64>, previous: Option<u64>) -> RolloutHistory {
    RolloutHistory { latest_rolledout: latest, previous_rolledout: previous }
}

fn observed(revisions: Vec<ObservedRevision>, h: RolloutHistory) -> Observed {
    let last_number = revisions.iter().map(|r| r.number).max().unwrap_or(0);
    Observed { revisions, history: h, last_number }
}

fn creates(plan: &Plan) -> Vec<u64> {
    plan.actions.iter().filter_map(|a| if let Action::CreateRevision { number, .. } = a { Some(*number) } else { None }).collect()
}

fn retires(plan: &Plan) -> Vec<u64> {
    plan.actions.iter().filter_map(|a| if let Action::Retire(n) = a { Some(*n) } else { None }).collect()
}

#[test]
fn revision_names_follow_kserve() {
    assert_eq!(revision_name("sklearn-iris", 1), "sklearn-iris-predictor-00001");
    assert_eq!(revision_name("m", 123456), "m-predictor-123456");
}

/// (case, desired, observed) -> (created, traffic, history, retired)
#[test]
fn rollout_table() {
    type Row = (&'static str, PredictorSpec, Observed, Vec<u64>, Traffic, RolloutHistory, Vec<u64>);
    let rows: Vec<Row> = vec![
        (
            "a new service creates revision 1; nothing serves yet",
            spec("a", None),
            Observed::default(),
            vec![1],
            Traffic::None,
            history(None, None),
            vec![],
        ),
        (
            "revision 1 loading: still nothing serves",
            spec("a", None),
            observed(vec![rev(1, "a", RevisionState::Loading)], history(None, None)),
            vec![],
            Traffic::None,
            history(None, None),
            vec![],
        ),
        (
            "revision 1 ready: promoted, all traffic",
            spec("a", None),
            observed(vec![ready(1, "a")], history(None, None)),
            vec![],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
        (
            "a canary percent on the first revision: it takes all (nothing to split with)",
            spec("a", Some(30)),
            observed(vec![ready(1, "a")], history(None, None)),
            vec![],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
        (
            "a changed storageUri creates revision 2; 1 keeps all traffic meanwhile",
            spec("b", Some(30)),
            observed(vec![ready(1, "a")], history(Some(1), None)),
            vec![2],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
        (
            "revision 2 ready with canary 30: split 70/30",
            spec("b", Some(30)),
            observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::Split { stable: 1, canary: 2, canary_percent: 30 },
            history(Some(1), None),
            vec![],
        ),
        (
            "only the percent changes: no new revision, the split moves",
            spec("b", Some(80)),
            observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::Split { stable: 1, canary: 2, canary_percent: 80 },
            history(Some(1), None),
            vec![],
        ),
        (
            "canary 0 pins the previous revision (rollback)",
            spec("b", Some(0)),
            observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::Split { stable: 1, canary: 2, canary_percent: 0 },
            history(Some(1), None),
            vec![],
        ),
        (
            "removing the percent promotes: 2 rolled out, 1 previous and retired",
            spec("b", None),
            observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::All(2),
            history(Some(2), Some(1)),
            vec![1],
        ),
        (
            "a failed new revision never takes traffic",
            spec("b", Some(30)),
            observed(vec![ready(1, "a"), failed(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
        (
            "a failed new revision without canary: the old one keeps serving",
            spec("b", None),
            observed(vec![ready(1, "a"), failed(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
        (
            "fixing a failed revision's spec creates revision 3 and retires the failed 2",
            spec("c", None),
            observed(vec![ready(1, "a"), failed(2, "b")], history(Some(1), None)),
            vec![3],
            Traffic::All(1),
            history(Some(1), None),
            vec![2],
        ),
        (
            "a third revision during a canary: the split stays on the latest ready until 3 is ready",
            spec("c", Some(30)),
            observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None)),
            vec![3],
            Traffic::Split { stable: 1, canary: 2, canary_percent: 30 },
            history(Some(1), None),
            vec![],
        ),
        (
            "revision 3 ready: it replaces 2 as the canary, 2 is retired",
            spec("c", Some(30)),
            observed(vec![ready(1, "a"), ready(2, "b"), ready(3, "c")], history(Some(1), None)),
            vec![],
            Traffic::Split { stable: 1, canary: 3, canary_percent: 30 },
            history(Some(1), None),
            vec![2],
        ),
        (
            "going back to an earlier template is a new revision (as in Knative)",
            spec("a", None),
            observed(vec![ready(2, "b")], history(Some(2), Some(1))),
            vec![3],
            Traffic::All(2),
            history(Some(2), Some(1)),
            vec![],
        ),
        (
            "revision numbers are never reused after a retirement",
            spec("z", None),
            Observed { revisions: vec![ready(4, "a")], history: history(Some(4), Some(3)), last_number: 7 },
            vec![8],
            Traffic::All(4),
            history(Some(4), Some(3)),
            vec![],
        ),
        (
            "after a restart with the rolled-out revision gone, the newest ready one serves",
            spec("b", None),
            observed(vec![ready(2, "b")], history(Some(1), None)),
            vec![],
            Traffic::All(2),
            history(Some(2), None),
            vec![],
        ),
        (
            "the rolled-out revision failed on reload: fall back to the previous one if ready",
            spec("b", Some(10)),
            observed(vec![ready(1, "a"), failed(2, "b")], history(Some(2), Some(1))),
            vec![],
            Traffic::All(1),
            history(Some(1), None),
            vec![],
        ),
    ];
    for (case, desired, observed, created, traffic, hist, retired) in rows {
        let plan = reconcile(&desired, &observed);
        assert_eq!(creates(&plan), created, "{case}: created");
        assert_eq!(plan.traffic, traffic, "{case}: traffic");
        assert_eq!(plan.history, hist, "{case}: history");
        assert_eq!(retires(&plan), retired, "{case}: retired");
        assert!(plan.actions.contains(&Action::Route(traffic)), "{case}: routes");
    }
}

#[test]
fn actions_are_ordered_create_route_retire() {
    let plan = reconcile(&spec("c", None), &observed(vec![ready(1, "a"), failed(2, "b")], history(Some(1), None)));
    let kinds: Vec<&str> = plan
        .actions
        .iter()
        .map(|a| match a {
            Action::CreateRevision { .. } => "create",
            Action::Route(_) => "route",
            Action::Retire(_) => "retire",
        })
        .collect();
    assert_eq!(kinds, ["create", "route", "retire"]);
}

#[test]
fn reconcile_is_idempotent() {
    // Carry out a plan (creations become loading revisions, retirements vanish) and reconcile
    // again: nothing new is created or retired and traffic is unchanged.
    let cases = [
        (spec("b", Some(30)), observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None))),
        (spec("b", None), observed(vec![ready(1, "a"), ready(2, "b")], history(Some(1), None))),
        (spec("c", None), observed(vec![ready(1, "a"), failed(2, "b")], history(Some(1), None))),
    ];
    for (desired, before) in cases {
        let plan = reconcile(&desired, &before);
        let mut after = Observed { revisions: before.revisions.clone(), history: plan.history, last_number: plan.last_number };
        for action in &plan.actions {
            match action {
                Action::CreateRevision { number, template } => {
                    after.revisions.push(ObservedRevision { number: *number, template: template.clone(), state: RevisionState::Loading })
                }
                Action::Retire(n) => after.revisions.retain(|r| r.number != *n),
                Action::Route(_) => {}
            }
        }
        let again = reconcile(&desired, &after);
        assert!(creates(&again).is_empty() && retires(&again).is_empty(), "{:?}", again.actions);
        assert_eq!(again.traffic, plan.traffic);
        assert_eq!(again.history, plan.history);
    }
}

#[test]
fn template_ignores_the_canary_percent() {
    assert_eq!(spec("a", Some(10)).template(), spec("a", Some(90)).template());
    assert_ne!(spec("a", None).template(), spec("b", None).template());
}
