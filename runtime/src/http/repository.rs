//! Triton's model repository extension over HTTP — the index, load (with an optional config)
//! and unload — plus Quiver's traffic API for canary rollouts:
//!
//! - `GET /v2/repository/models/{m}/traffic`: the split and the rollout bookkeeping;
//! - `POST /v2/repository/models/{m}/traffic`: `{"canary_version": 2, "canary_traffic_percent": 10,
//!   "stable_version": 1, "rollback": {"max_error_rate_increase": 0.05, "max_p99_ratio": 2.0,
//!   "window_s": 30, "min_requests": 20}}` (all but the canary optional);
//! - `POST /v2/repository/models/{m}/traffic/promote` and `.../traffic/rollback`.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{json_response, read_body, HttpResponse, HttpState};
use crate::{
    protocol,
    registry::{judge::RollbackRule, TrafficChange},
    ServeError,
};

/// Routes `/v2/repository/...`.
pub async fn route(
    state: &HttpState,
    method: &Method,
    rest: &[&str],
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<HttpResponse, ServeError> {
    match (method, rest) {
        (&Method::POST, ["index"]) => {
            let (_, body) = read_body(state, request).await?;
            index(state, &body)
        }
        (&Method::POST, ["models", model, "load"]) => {
            let (_, body) = read_body(state, request).await?;
            let config = load_parameters(&body)?;
            state.registry.load(model, config).await?;
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        (&Method::POST, ["models", model, "unload"]) => {
            let (_, body) = read_body(state, request).await?;
            unload_parameters(&body)?;
            state.registry.unload(model).await?;
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        (&Method::GET, ["models", model, "traffic"]) => {
            let status = state.registry.traffic(model)?;
            Ok(json_response(StatusCode::OK, &serde_json::to_value(status).unwrap_or(Value::Null)))
        }
        (&Method::POST, ["models", model, "traffic", action @ ..]) => {
            let (_, body) = read_body(state, request).await?;
            let change = match action {
                [] => split_request(&body)?,
                ["promote"] => TrafficChange::Promote,
                ["rollback"] => TrafficChange::Rollback,
                _ => return Err(ServeError::NotFound(format!("no traffic action '{}'", action.join("/")))),
            };
            let status = state.registry.change_traffic(model, change).await?;
            Ok(json_response(StatusCode::OK, &serde_json::to_value(status).unwrap_or(Value::Null)))
        }
        _ => Err(ServeError::NotFound(format!("no route for {method} /v2/repository/{}", rest.join("/")))),
    }
}

fn index(state: &HttpState, body: &Bytes) -> Result<HttpResponse, ServeError> {
    let ready_only = match body_object(body)?.get("ready") {
        None => false,
        Some(Value::Bool(ready)) => *ready,
        Some(other) => return Err(ServeError::InvalidInput(format!("'ready' must be a boolean, got {other}"))),
    };
    let rows: Vec<Value> = state
        .registry
        .index(ready_only)
        .into_iter()
        .map(|row| {
            let mut entry = json!({ "name": row.name, "state": row.state });
            if !row.version.is_empty() {
                entry["version"] = json!(row.version);
            }
            if !row.reason.is_empty() {
                entry["reason"] = json!(row.reason);
            }
            entry
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

/// A repository request's body: a JSON object, or nothing (an empty body is `{}`; whitespace
/// alone is not JSON, and is refused as the document says).
fn body_object(body: &[u8]) -> Result<Map<String, Value>, ServeError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ServeError::InvalidInput("the request body must be a JSON object".into())),
        Err(e) => Err(ServeError::InvalidInput(format!("failed to parse the request JSON: {e}"))),
    }
}

/// The `parameters` object of a load or unload body (an empty body has none).
fn parameters(body: &[u8]) -> Result<Map<String, Value>, ServeError> {
    match body_object(body)?.remove("parameters") {
        None => Ok(Map::new()),
        Some(Value::Object(p)) => Ok(p),
        Some(_) => Err(ServeError::InvalidInput("'parameters' must be an object".into())),
    }
}

/// Triton's unload parameters: `unload_dependents`, a boolean (without ensembles it changes nothing).
fn unload_parameters(body: &[u8]) -> Result<(), ServeError> {
    match parameters(body)?.get("unload_dependents") {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(other) => Err(ServeError::InvalidInput(format!("'unload_dependents' must be a boolean, got {other}"))),
    }
}

/// Triton's load parameters: `config` (the model configuration as a JSON string) replaces
/// `config.pbtxt`; model files sent inline (`file:...`) are not supported.
fn load_parameters(body: &[u8]) -> Result<Option<quiver_core::ModelConfig>, ServeError> {
    let params = parameters(body)?;
    protocol::load_parameters(params.keys(), params.get("config").map(Value::as_str))
}

/// A version given as a number or a string of one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VersionField {
    Number(u64),
    Text(String),
}

impl VersionField {
    fn get(&self, field: &str) -> Result<u64, ServeError> {
        match self {
            VersionField::Number(n) => Ok(*n),
            VersionField::Text(s) => {
                s.trim().parse().map_err(|_| ServeError::InvalidInput(format!("'{field}': '{s}' is not a version number")))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    canary_version: VersionField,
    #[serde(default)]
    canary_traffic_percent: u32,
    stable_version: Option<VersionField>,
    rollback: Option<RollbackBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    max_error_rate_increase: Option<f64>,
    max_p99_ratio: Option<f64>,
    window_s: Option<u64>,
    min_requests: Option<u64>,
}

fn split_request(body: &[u8]) -> Result<TrafficChange, ServeError> {
    let split: SplitBody = serde_json::from_slice(body).map_err(|e| ServeError::InvalidInput(format!("invalid traffic request: {e}")))?;
    let rollback = split.rollback.map(|r| {
        let default = RollbackRule::default();
        RollbackRule {
            max_error_rate_increase: r.max_error_rate_increase,
            max_p99_ratio: r.max_p99_ratio,
            window_s: r.window_s.unwrap_or(default.window_s).max(1),
            min_requests: r.min_requests.unwrap_or(default.min_requests),
        }
    });
    Ok(TrafficChange::Split {
        canary: split.canary_version.get("canary_version")?,
        percent: split.canary_traffic_percent,
        stable: split.stable_version.map(|v| v.get("stable_version")).transpose()?,
        rollback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_bodies() {
        assert_eq!(load_parameters(b"").unwrap(), None);
        assert_eq!(load_parameters(br#"{"parameters": {}}"#).unwrap(), None);
        let config = load_parameters(br#"{"parameters": {"config": "{\"max_batch_size\": 2}"}}"#).unwrap().unwrap();
        assert_eq!(config.max_batch_size, 2);
        assert!(load_parameters(br#"{"parameters": {"config": 7}}"#).is_err());
        assert!(load_parameters(br#"{"parameters": {"config": "{not json"}}"#).is_err());
        let err = load_parameters(br#"{"parameters": {"file:1/model.onnx": "AAAA"}}"#).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(load_parameters(b"[1]").is_err(), "not an object");
        assert!(load_parameters(br#"{"parameters": []}"#).is_err());
        assert!(load_parameters(b"{").is_err());
    }

    #[test]
    fn unload_bodies() {
        assert!(unload_parameters(b"").is_ok());
        assert!(unload_parameters(br#"{"parameters": {"unload_dependents": true}}"#).is_ok());
        assert!(unload_parameters(b"[null, null]").is_err());
        assert!(unload_parameters(br#"{"parameters": {"unload_dependents": "yes"}}"#).is_err());
    }

    #[test]
    fn split_bodies() {
        let change = split_request(br#"{"canary_version": "2", "canary_traffic_percent": 10}"#).unwrap();
        assert_eq!(change, TrafficChange::Split { canary: 2, percent: 10, stable: None, rollback: None });
        let change = split_request(br#"{"canary_version": 3, "stable_version": 1, "rollback": {"max_p99_ratio": 2.0}}"#).unwrap();
        let TrafficChange::Split { canary, percent, stable, rollback } = change else { panic!() };
        assert_eq!((canary, percent, stable), (3, 0, Some(1)));
        assert_eq!(rollback.unwrap().max_p99_ratio, Some(2.0));
        assert_eq!(rollback.unwrap().window_s, 30);
        for bad in [&br#"{}"#[..], br#"{"canary_version": "x"}"#, br#"{"canary_version": 2, "percent": 5}"#, b"nope"] {
            assert!(split_request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
