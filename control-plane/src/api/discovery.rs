//! Discovery documents: `APIGroupList`, `APIGroup` and `APIResourceList`, so kubectl and the CLI
//! can map kinds to paths.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::status::{json_response, ApiError};
use super::ResourceKind;

fn groups(kinds: &[Arc<dyn ResourceKind>]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for k in kinds {
        if !groups.iter().any(|g| g == k.group()) {
            groups.push(k.group().to_string());
        }
    }
    groups
}

fn group_doc(kinds: &[Arc<dyn ResourceKind>], group: &str) -> Value {
    let mut versions: Vec<Value> = Vec::new();
    for k in kinds.iter().filter(|k| k.group() == group) {
        let gv = format!("{group}/{}", k.version());
        if !versions.iter().any(|v| v["groupVersion"] == gv.as_str()) {
            versions.push(json!({"groupVersion": gv, "version": k.version()}));
        }
    }
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred})
}

pub(crate) fn group_list(kinds: &[Arc<dyn ResourceKind>]) -> Response<Full<Bytes>> {
    let groups: Vec<Value> = groups(kinds)
        .iter()
        .map(|g| {
            let mut doc = group_doc(kinds, g);
            if let Some(map) = doc.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            doc
        })
        .collect();
    json_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}), &[])
}

pub(crate) fn group(kinds: &[Arc<dyn ResourceKind>], group: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    if !kinds.iter().any(|k| k.group() == group) {
        return Err(ApiError::not_found_path());
    }
    Ok(json_response(StatusCode::OK, &group_doc(kinds, group), &[]))
}

pub(crate) fn resource_list(kinds: &[Arc<dyn ResourceKind>], group: &str, version: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut resources = Vec::new();
    for k in kinds.iter().filter(|k| k.group() == group && k.version() == version) {
        resources.push(json!({
            "name": k.plural(),
            "singularName": k.kind().to_lowercase(),
            "namespaced": k.namespaced(),
            "kind": k.kind(),
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
            "shortNames": k.short_names(),
        }));
        resources.push(json!({
            "name": format!("{}/status", k.plural()),
            "singularName": "",
            "namespaced": k.namespaced(),
            "kind": k.kind(),
            "verbs": ["get"],
        }));
    }
    if resources.is_empty() {
        return Err(ApiError::not_found_path());
    }
    let doc = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources});
    Ok(json_response(StatusCode::OK, &doc, &[]))
}
