//! The status an InferenceService reports, in KServe's JSON shape: conditions (Ready,
//! PredictorReady, IngressReady, LatestDeploymentReady), `components.predictor` (revisions and
//! traffic), `modelStatus`, `url` and `address`. Pure: the time of a transition is an input.

use serde_json::{json, Map, Value};

use super::reconcile::{revision_name, Observed, Plan, RevisionState, Traffic};

/// What the status is computed from.
#[derive(Debug, Clone)]
pub struct StatusInputs<'a> {
    /// The InferenceService's name (its model's name in the runtime).
    pub name: &'a str,
    /// `metadata.generation` of the spec reconciled.
    pub generation: i64,
    /// The revisions after the plan was carried out.
    pub observed: &'a Observed,
    /// The plan carried out.
    pub plan: &'a Plan,
    /// The server's base URL, e.g. `http://127.0.0.1:8000`.
    pub base_url: &'a str,
    /// The model's path under the base URL for its protocol (`/v1/models/{name}` or `/v2/models/{name}`).
    pub model_path: &'a str,
    /// Replicas the autoscaler wants and replicas ready, when known.
    pub replicas: Option<(u32, u32)>,
    /// The status written last time (for conditions' lastTransitionTime).
    pub previous: Option<&'a Value>,
    /// Now, RFC 3339.
    pub now: &'a str,
}

/// A condition before its transition time is settled.
struct Condition {
    kind: &'static str,
    status: &'static str,
    reason: Option<String>,
    message: Option<String>,
}

fn condition(kind: &'static str, ok: Option<bool>, reason: Option<String>, message: Option<String>) -> Condition {
    let status = match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    Condition { kind, status, reason, message }
}

/// The status for `inputs`.
pub fn status(inputs: &StatusInputs<'_>) -> Value {
    let StatusInputs { name, observed, plan, .. } = *inputs;
    let state_of = |n: u64| observed.revisions.iter().find(|r| r.number == n).map(|r| &r.state);
    let latest_state = plan.latest.and_then(state_of);
    let serving = !matches!(plan.traffic, Traffic::None)
        && plan.traffic.revisions().iter().all(|&n| state_of(n).is_some_and(RevisionState::is_ready));
    let latest_ready = observed.revisions.iter().filter(|r| r.state.is_ready()).map(|r| r.number).max();

    let (latest_ok, latest_reason, latest_message) = match latest_state {
        Some(RevisionState::Ready) => (Some(true), None, None),
        Some(RevisionState::Fetching { done_bytes, total_bytes }) => {
            let of = total_bytes.map(|t| format!(" of {t}")).unwrap_or_default();
            (None, Some("Fetching".to_string()), Some(format!("fetching the model: {done_bytes}{of} bytes")))
        }
        Some(RevisionState::Loading) => (None, Some("Loading".to_string()), Some("loading the model".to_string())),
        Some(RevisionState::Failed { reason, message }) => (Some(false), Some(reason.clone()), Some(message.clone())),
        None => (None, Some("RevisionMissing".to_string()), Some("no revision created yet".to_string())),
    };
    let predictor_ready = if serving {
        condition("PredictorReady", Some(true), None, None)
    } else {
        let (reason, message) = match latest_state {
            Some(RevisionState::Failed { reason, message }) => (reason.clone(), message.clone()),
            _ => ("RevisionMissing".to_string(), format!("no revision of '{name}' is ready yet")),
        };
        condition("PredictorReady", Some(false), Some(reason), Some(message))
    };
    let ingress_ready = if serving {
        condition("IngressReady", Some(true), None, None)
    } else {
        condition("IngressReady", Some(false), Some("NoTraffic".to_string()), Some("no revision takes traffic".to_string()))
    };
    let ready = if serving {
        condition("Ready", Some(true), None, None)
    } else {
        condition("Ready", Some(false), predictor_ready.reason.clone(), predictor_ready.message.clone())
    };
    let conditions = [ingress_ready, condition("LatestDeploymentReady", latest_ok, latest_reason, latest_message), predictor_ready, ready];

    let previous_conditions = inputs.previous.and_then(|p| p.get("conditions")).and_then(Value::as_array);
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|c| {
            // The transition time moves only when the status changes.
            let before = previous_conditions.and_then(|cs| cs.iter().find(|p| p.get("type").and_then(Value::as_str) == Some(c.kind)));
            let since = before
                .filter(|p| p.get("status").and_then(Value::as_str) == Some(c.status))
                .and_then(|p| p.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| Value::String(inputs.now.to_string()));
            let mut out = Map::new();
            out.insert("type".into(), c.kind.into());
            out.insert("status".into(), c.status.into());
            out.insert("lastTransitionTime".into(), since);
            if let Some(reason) = &c.reason {
                out.insert("reason".into(), reason.clone().into());
            }
            if let Some(message) = &c.message {
                out.insert("message".into(), message.clone().into());
            }
            if c.kind == "LatestDeploymentReady" || c.kind == "IngressReady" {
                out.insert("severity".into(), "Info".into());
            }
            Value::Object(out)
        })
        .collect();

    let revision = |n: u64| revision_name(name, n);
    let traffic: Vec<Value> = match plan.traffic {
        Traffic::None => Vec::new(),
        Traffic::All(n) => vec![json!({ "revisionName": revision(n), "percent": 100, "latestRevision": Some(n) == latest_ready })],
        Traffic::Split { stable, canary, canary_percent } => vec![
            json!({ "tag": "prev", "revisionName": revision(stable), "percent": 100 - canary_percent, "latestRevision": false }),
            json!({ "tag": "latest", "revisionName": revision(canary), "percent": canary_percent, "latestRevision": true }),
        ],
    };
    let url = format!("{}{}", inputs.base_url, inputs.model_path);
    let mut predictor = Map::new();
    let mut put = |key: &str, n: Option<u64>| {
        if let Some(n) = n {
            predictor.insert(key.into(), revision(n).into());
        }
    };
    put("latestCreatedRevision", plan.latest);
    put("latestReadyRevision", latest_ready);
    put("latestRolledoutRevision", plan.history.latest_rolledout);
    put("previousRolledoutRevision", plan.history.previous_rolledout);
    predictor.insert("traffic".into(), traffic.into());
    predictor.insert("url".into(), url.clone().into());
    predictor.insert("address".into(), json!({ "url": url }));
    if let Some((desired, ready)) = inputs.replicas {
        predictor.insert("replicas".into(), json!({ "desired": desired, "ready": ready }));
    }

    let target_state = match latest_state {
        Some(RevisionState::Ready) => "Loaded",
        Some(RevisionState::Fetching { .. }) => "Pending",
        Some(RevisionState::Loading) => "Loading",
        Some(RevisionState::Failed { .. }) => "FailedToLoad",
        None => "Pending",
    };
    let transition = match latest_state {
        Some(RevisionState::Ready) => "UpToDate",
        Some(RevisionState::Failed { .. }) => "BlockedByFailedLoad",
        _ => "InProgress",
    };
    let mut model_status = json!({
        "states": { "activeModelState": if serving { "Loaded" } else { target_state }, "targetModelState": target_state },
        "transitionStatus": transition,
        "copies": { "failedCopies": u32::from(matches!(latest_state, Some(RevisionState::Failed { .. }))), "totalCopies": 1 },
    });
    if let Some(RevisionState::Failed { reason, message }) = latest_state {
        model_status["lastFailureInfo"] =
            json!({ "reason": reason, "message": message, "location": plan.latest.map(revision), "time": inputs.now });
    }

    json!({
        "observedGeneration": inputs.generation,
        "conditions": conditions,
        "url": url,
        "address": { "url": url },
        "components": { "predictor": predictor },
        "modelStatus": model_status,
    })
}

/// The status of an InferenceService whose spec was refused (KServe's `InvalidSpec`).
pub fn invalid(generation: i64, message: &str, previous: Option<&Value>, now: &str) -> Value {
    let mut status = previous.cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    status["observedGeneration"] = json!(generation);
    status["conditions"] = json!([
        { "type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message, "lastTransitionTime": now },
    ]);
    status["modelStatus"] = json!({
        "states": { "activeModelState": "", "targetModelState": "FailedToLoad" },
        "transitionStatus": "InvalidSpec",
        "lastFailureInfo": { "reason": "InvalidPredictorSpec", "message": message, "time": now },
    });
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        isvc::reconcile::{reconcile, ObservedRevision, RolloutHistory},
        resources::predictor::PredictorSpec,
    };

    fn spec(uri: &str, canary: Option<u32>) -> PredictorSpec {
        crate::resources::predictor::example(uri, canary)
    }

    fn observed(revisions: Vec<(u64, &str, RevisionState)>, latest: Option<u64>) -> Observed {
        Observed {
            revisions: revisions
                .into_iter()
                .map(|(number, uri, state)| ObservedRevision { number, template: spec(uri, None), state })
                .collect(),
            history: RolloutHistory { latest_rolledout: latest, previous_rolledout: None },
            last_number: 0,
        }
    }

    fn report(desired: &PredictorSpec, observed: &Observed, previous: Option<&Value>, now: &str) -> Value {
        let plan = reconcile(desired, observed);
        status(&StatusInputs {
            name: "iris",
            generation: 2,
            observed,
            plan: &plan,
            base_url: "http://127.0.0.1:8000",
            model_path: "/v2/models/iris",
            replicas: Some((1, 1)),
            previous,
            now,
        })
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap()
    }

    #[test]
    fn a_canary_reports_kserve_traffic_and_revisions() {
        let o = observed(vec![(1, "a", RevisionState::Ready), (2, "b", RevisionState::Ready)], Some(1));
        let s = report(&spec("b", Some(30)), &o, None, "2026-01-01T00:00:00Z");
        let p = &s["components"]["predictor"];
        assert_eq!(p["latestCreatedRevision"], "iris-predictor-00002");
        assert_eq!(p["latestReadyRevision"], "iris-predictor-00002");
        assert_eq!(p["latestRolledoutRevision"], "iris-predictor-00001");
        assert_eq!(
            p["traffic"],
            json!([
                { "tag": "prev", "revisionName": "iris-predictor-00001", "percent": 70, "latestRevision": false },
                { "tag": "latest", "revisionName": "iris-predictor-00002", "percent": 30, "latestRevision": true },
            ])
        );
        assert_eq!(condition(&s, "Ready")["status"], "True");
        assert_eq!(s["modelStatus"]["transitionStatus"], "UpToDate");
        assert_eq!(s["url"], "http://127.0.0.1:8000/v2/models/iris");
        assert_eq!(p["replicas"], json!({ "desired": 1, "ready": 1 }));
        assert_eq!(s["observedGeneration"], 2);
    }

    #[test]
    fn a_failed_latest_revision_keeps_the_old_one_ready_and_says_why() {
        let failed = RevisionState::Failed { reason: "ModelLoadFailed".into(), message: "truncated model".into() };
        let o = observed(vec![(1, "a", RevisionState::Ready), (2, "b", failed)], Some(1));
        let s = report(&spec("b", None), &o, None, "t0");
        assert_eq!(condition(&s, "Ready")["status"], "True");
        let latest = condition(&s, "LatestDeploymentReady");
        assert_eq!((latest["status"].as_str(), latest["reason"].as_str()), (Some("False"), Some("ModelLoadFailed")));
        assert_eq!(s["modelStatus"]["transitionStatus"], "BlockedByFailedLoad");
        assert_eq!(s["modelStatus"]["lastFailureInfo"]["message"], "truncated model");
        assert_eq!(s["components"]["predictor"]["traffic"][0]["revisionName"], "iris-predictor-00001");
    }

    #[test]
    fn nothing_ready_is_not_ready_and_progress_shows() {
        let o = observed(vec![(1, "a", RevisionState::Fetching { done_bytes: 10, total_bytes: Some(100) })], None);
        let s = report(&spec("a", None), &o, None, "t0");
        assert_eq!(condition(&s, "Ready")["status"], "False");
        assert_eq!(condition(&s, "PredictorReady")["status"], "False");
        let latest = condition(&s, "LatestDeploymentReady");
        assert_eq!(latest["status"], "Unknown");
        assert!(latest["message"].as_str().unwrap().contains("10 of 100 bytes"));
        assert_eq!(s["modelStatus"]["states"]["targetModelState"], "Pending");
    }

    #[test]
    fn transition_times_move_only_on_change() {
        let o = observed(vec![(1, "a", RevisionState::Ready)], Some(1));
        let first = report(&spec("a", None), &o, None, "t0");
        let again = report(&spec("a", None), &o, Some(&first), "t1");
        assert_eq!(condition(&again, "Ready")["lastTransitionTime"], "t0");
        let down = observed(vec![(1, "a", RevisionState::Failed { reason: "ModelLoadFailed".into(), message: "x".into() })], None);
        let changed = report(&spec("a", None), &down, Some(&again), "t2");
        assert_eq!(condition(&changed, "Ready")["lastTransitionTime"], "t2");
    }

    #[test]
    fn an_invalid_spec_says_so() {
        let s = invalid(3, "spec.predictor.canaryTrafficPercent: must be 0 to 100", None, "t0");
        assert_eq!(condition(&s, "Ready")["reason"], "InvalidSpec");
        assert_eq!(s["modelStatus"]["transitionStatus"], "InvalidSpec");
    }
}
