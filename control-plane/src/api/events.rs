//! `GET /api/v1/namespaces/{ns}/events`: the store's per-object events as a Kubernetes
//! `EventList`, filtered by `fieldSelector=involvedObject.name=N` (and `.kind`, `.namespace`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::objects::namespace_of;
use super::query;
use super::status::{json_response, ApiError};
use super::{resource_name, ManagementApi};
use crate::store::{Event, StoreError};

#[derive(Default)]
struct Selector {
    name: Option<String>,
    kind: Option<String>,
}

fn selector(query: &[(String, String)], ns: &str) -> Result<Selector, ApiError> {
    let mut sel = Selector::default();
    let Some(raw) = query::get(query, "fieldSelector") else { return Ok(sel) };
    for term in raw.split(',').filter(|t| !t.is_empty()) {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .ok_or_else(|| ApiError::bad_request(format!("fieldSelector: {term:?} is not key=value")))?;
        match key {
            "involvedObject.name" => sel.name = Some(value.to_string()),
            "involvedObject.kind" => sel.kind = Some(value.to_string()),
            "involvedObject.namespace" if value == ns => {}
            "involvedObject.namespace" => {
                return Err(ApiError::bad_request("fieldSelector: involvedObject.namespace differs from the path's namespace"))
            }
            other => return Err(ApiError::bad_request(format!("fieldSelector: field label not supported: {other}"))),
        }
    }
    Ok(sel)
}

fn event_doc(involved: &Value, api_version: &str, kind: &str, index: usize, e: &Event) -> Value {
    let name = involved["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = involved["metadata"]["namespace"].as_str().unwrap_or_default();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{index}"), "namespace": namespace, "creationTimestamp": e.first_timestamp},
        "involvedObject": {
            "apiVersion": api_version, "kind": kind, "name": name, "namespace": namespace,
            "uid": involved["metadata"]["uid"], "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": e.reason,
        "message": e.message,
        "type": e.type_.as_str(),
        "count": e.count,
        "firstTimestamp": e.first_timestamp,
        "lastTimestamp": e.last_timestamp,
        "source": {"component": "quiver"},
        "reportingComponent": "quiver",
    })
}

pub(crate) async fn list(api: &ManagementApi, ns: &str, query: &[(String, String)]) -> Result<Response<Full<Bytes>>, ApiError> {
    let ns = namespace_of(Some(ns))?;
    let sel = selector(query, &ns)?;
    let mut items = Vec::new();
    let mut rv = String::new();
    for kind in api.kinds.iter().filter(|k| k.namespaced()) {
        if sel.kind.as_deref().is_some_and(|k| k != kind.kind()) {
            continue;
        }
        let resource = resource_name(&**kind);
        let (r, nsc, name) = (resource.clone(), ns.clone(), sel.name.clone());
        // Objects first (for involvedObject's uid), then each one's events, in one blocking call.
        let found = api
            .store
            .blocking(move |s| {
                let (objects, rv) = match &name {
                    Some(n) => match s.get(&r, &nsc, n) {
                        Ok(obj) => (vec![obj], s.resource_version()?),
                        Err(StoreError::NotFound { .. }) => (Vec::new(), s.resource_version()?),
                        Err(e) => return Err(e),
                    },
                    None => {
                        let listed = s.list(&r, Some(&nsc))?;
                        (listed.items, listed.resource_version)
                    }
                };
                let mut out = Vec::with_capacity(objects.len());
                for obj in objects {
                    let obj_name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let events = s.events(&r, &nsc, &obj_name)?;
                    out.push((obj, events));
                }
                Ok::<_, StoreError>((out, rv))
            })
            .await
            .map_err(|e| ApiError::from_store(e, &resource, kind.plural(), ""))?;
        rv = found.1;
        let api_version = format!("{}/{}", kind.group(), kind.version());
        for (obj, events) in found.0 {
            items.extend(events.iter().enumerate().map(|(i, e)| event_doc(&obj, &api_version, kind.kind(), i, e)));
        }
    }
    items.sort_by(|a, b| a["lastTimestamp"].as_str().cmp(&b["lastTimestamp"].as_str()));
    let doc = json!({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": rv}, "items": items});
    Ok(json_response(StatusCode::OK, &doc, &[]))
}
