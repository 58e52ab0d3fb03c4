//! PATCH: JSON merge patch (RFC 7386) and server-side apply.
//!
//! Server-side apply here has one field manager: the applied document is the whole desired state.
//! Its top-level fields (spec and the rest, not status) replace the stored ones, its labels and
//! annotations replace the stored ones when present, and the server-managed metadata and status
//! stay. That is what Kubernetes' apply does when one manager owns every field, which is how
//! `quiver apply` and `kubectl apply --server-side` use it. A missing object is created.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

use super::objects::{admit, namespace_of, parse_json, prepare, store_new};
use super::status::{json_response, ApiError};
use super::{resource_name, ManagementApi, ResourceKind};
use crate::store::StoreError;

/// How often a patch is retried when the object changed between its read and its write.
const MAX_ATTEMPTS: usize = 5;

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (k, v) in patch {
            if v.is_null() {
                target.remove(k);
            } else {
                merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The stored object with `applied`'s desired state; see the module docs.
fn apply_onto(existing: &Value, applied: &Value) -> Value {
    let mut out = applied.clone();
    let (Some(out_map), Some(old_map)) = (out.as_object_mut(), existing.as_object()) else { return out };
    match old_map.get("status") {
        Some(s) => out_map.insert("status".into(), s.clone()),
        None => out_map.remove("status"),
    };
    let mut meta = old_map.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(applied_meta) = applied.get("metadata").and_then(Value::as_object) {
        for (k, v) in applied_meta {
            meta.insert(k.clone(), v.clone());
        }
    }
    out_map.insert("metadata".into(), Value::Object(meta));
    out
}

fn explicit_version(obj: &Value) -> Option<String> {
    obj.get("metadata").and_then(|m| m.get("resourceVersion")).and_then(Value::as_str).map(str::to_string)
}

pub(crate) async fn patch(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let ns = namespace_of(ns)?;
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let apply = match media.as_str() {
        "application/merge-patch+json" => false,
        "application/apply-patch+yaml" | "application/apply-patch+json" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "Content-Type {other:?} is not supported for PATCH; use application/merge-patch+json or application/apply-patch+yaml"
                ),
            ))
        }
    };
    let mut patch = if apply {
        // YAML 1.2 is a superset of JSON, so one parser takes both.
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("apply body is not YAML or JSON: {e}")))?
    } else {
        parse_json(body)?
    };
    if apply {
        prepare(kind, &mut patch, &ns, Some(name))?;
    }
    let resource = resource_name(kind);
    let pinned = explicit_version(&patch);
    for _ in 0..MAX_ATTEMPTS {
        let (r, n, nsc) = (resource.clone(), name.to_string(), ns.clone());
        let existing = match api.store.blocking(move |s| s.get(&r, &nsc, &n)).await {
            Ok(obj) => obj,
            Err(StoreError::NotFound { .. }) if apply => {
                let (obj, warnings) = store_new(api, kind, patch, name).await?;
                return Ok(json_response(StatusCode::CREATED, &obj, &warnings));
            }
            Err(e) => return Err(ApiError::from_store(e, &resource, kind.plural(), name)),
        };
        let mut desired = if apply {
            apply_onto(&existing, &patch)
        } else {
            let mut d = existing.clone();
            merge_patch(&mut d, &patch);
            prepare(kind, &mut d, &ns, Some(name))?;
            d
        };
        // Without an explicit precondition, pin the version just read, so a concurrent write
        // makes this attempt conflict and retry instead of being overwritten.
        let version = pinned.clone().or_else(|| explicit_version(&existing)).unwrap_or_default();
        if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(version));
        }
        let warnings = admit(kind, &desired, name)?;
        let r = resource.clone();
        match api.store.blocking(move |s| s.replace(&r, desired)).await {
            Ok(obj) => return Ok(json_response(StatusCode::OK, &obj, &warnings)),
            Err(StoreError::Conflict { .. }) if pinned.is_none() => continue,
            Err(StoreError::NotFound { .. }) if apply => continue,
            Err(e) => return Err(ApiError::from_store(e, &resource, kind.plural(), name)),
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "Conflict", format!("{resource} \"{name}\" kept changing during the patch; try again")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1, 2]});
        merge_patch(&mut doc, &json!({"a": [3], "b": {"c": null}}));
        assert_eq!(doc, json!({"a": [3], "b": {}}));
    }

    #[test]
    fn apply_keeps_status_and_server_metadata() {
        let existing = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}}, "spec": {"old": 1}, "status": {"s": 1}});
        let applied = json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"new": 1}});
        let out = apply_onto(&existing, &applied);
        assert_eq!(out, json!({"metadata": {"name": "a", "uid": "u", "labels": {"y": "2"}}, "spec": {"new": 1}, "status": {"s": 1}}));
    }
}
