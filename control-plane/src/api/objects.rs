//! Create, read, replace, delete and list.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};

use super::query::{dns_label_error, dns_subdomain_error};
use super::status::{json_response, ApiError};
use super::{resource_name, ManagementApi, ResourceKind};
use crate::store::{Store, StoreError};

/// Store key parts for a path's namespace ("" for cluster-scoped kinds).
pub(crate) fn namespace_of(ns: Option<&str>) -> Result<String, ApiError> {
    match ns {
        Some(ns) => match dns_label_error(ns) {
            Some(why) => Err(ApiError::bad_request(format!("namespace {ns:?} in the path: {why}"))),
            None => Ok(ns.to_string()),
        },
        None => Ok(String::new()),
    }
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body is not a JSON object: {e}")))
}

/// Checks a body object against the path and the kind, and fills `metadata.namespace`.
/// `path_name` is the name in the path (None for a POST). Returns the object's name.
pub(crate) fn prepare(kind: &dyn ResourceKind, obj: &mut Value, ns: &str, path_name: Option<&str>) -> Result<String, ApiError> {
    let resource = resource_name(kind);
    let Some(map) = obj.as_object_mut() else { return Err(ApiError::bad_request("the body must be a JSON object")) };
    let api_version = format!("{}/{}", kind.group(), kind.version());
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == api_version => {}
        Some(v) => return Err(ApiError::bad_request(format!("apiVersion: {v:?} does not match the path; expected {api_version:?}"))),
        None => return Err(ApiError::bad_request(format!("apiVersion: required; expected {api_version:?}"))),
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k == kind.kind() => {}
        Some(k) => return Err(ApiError::bad_request(format!("kind: {k:?} does not match the path; expected {:?}", kind.kind()))),
        None => return Err(ApiError::bad_request(format!("kind: required; expected {:?}", kind.kind()))),
    }
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return Err(ApiError::bad_request("metadata: must be an object")) };
    match meta.get("namespace") {
        None | Some(Value::Null) if kind.namespaced() => {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        }
        None | Some(Value::Null) => {}
        Some(Value::String(given)) if given == ns => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "metadata.namespace: the namespace of the provided object ({given}) does not match the namespace sent on the request ({ns})"
            )))
        }
    }
    let name = match meta.get("name") {
        Some(Value::String(n)) => n.clone(),
        None | Some(Value::Null) => path_name.map(str::to_string).unwrap_or_default(),
        Some(_) => return Err(ApiError::bad_request("metadata.name: must be a string")),
    };
    if let Some(path_name) = path_name {
        if name != path_name {
            return Err(ApiError::bad_request(format!(
                "metadata.name: the name of the object ({name}) does not match the name on the URL ({path_name})"
            )));
        }
    }
    if let Some(why) = dns_subdomain_error(&name) {
        return Err(ApiError::invalid(&resource, &name, kind.plural(), vec![("metadata.name".into(), why)]));
    }
    meta.insert("name".into(), Value::String(name.clone()));
    Ok(name)
}

/// Runs the kind's admission: warnings, or 422 naming the fields.
pub(crate) fn admit(kind: &dyn ResourceKind, obj: &Value, name: &str) -> Result<Vec<String>, ApiError> {
    kind.admit(obj).map_err(|causes| ApiError::invalid(&resource_name(kind), name, kind.plural(), causes))
}

pub(crate) async fn get(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    by_name(api, kind, ns, name, Store::get).await
}

/// Runs `op` (the store's get or delete) on one object and answers what it returns.
async fn by_name(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    name: &str,
    op: fn(&Store, &str, &str, &str) -> Result<Value, StoreError>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (resource, ns, n) = (resource_name(kind), namespace_of(ns)?, name.to_string());
    let r = resource.clone();
    let obj = api.store.blocking(move |s| op(s, &r, &ns, &n)).await.map_err(|e| ApiError::from_store(e, &resource, kind.plural(), name))?;
    Ok(json_response(StatusCode::OK, &obj, &[]))
}

pub(crate) async fn list(api: &ManagementApi, kind: &dyn ResourceKind, ns: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
    let resource = resource_name(kind);
    let ns = ns.map(|n| namespace_of(Some(n))).transpose()?;
    let r = resource.clone();
    let listed =
        api.store.blocking(move |s| s.list(&r, ns.as_deref())).await.map_err(|e| ApiError::from_store(e, &resource, kind.plural(), ""))?;
    let doc = json!({
        "apiVersion": format!("{}/{}", kind.group(), kind.version()),
        "kind": format!("{}List", kind.kind()),
        "metadata": {"resourceVersion": listed.resource_version},
        "items": listed.items,
    });
    Ok(json_response(StatusCode::OK, &doc, &[]))
}

pub(crate) async fn create(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let ns = namespace_of(ns)?;
    let mut obj = parse_json(body)?;
    let name = prepare(kind, &mut obj, &ns, None)?;
    let (obj, warnings) = store_new(api, kind, obj, &name).await?;
    Ok(json_response(StatusCode::CREATED, &obj, &warnings))
}

/// Admits and creates an object already checked by [`prepare`]; status from the caller is
/// dropped (it is the controller's to write).
pub(crate) async fn store_new(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    mut obj: Value,
    name: &str,
) -> Result<(Value, Vec<String>), ApiError> {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
    let warnings = admit(kind, &obj, name)?;
    let resource = resource_name(kind);
    let r = resource.clone();
    let obj = api.store.blocking(move |s| s.create(&r, obj)).await.map_err(|e| ApiError::from_store(e, &resource, kind.plural(), name))?;
    Ok((obj, warnings))
}

pub(crate) async fn replace(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    name: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let ns = namespace_of(ns)?;
    let mut obj = parse_json(body)?;
    prepare(kind, &mut obj, &ns, Some(name))?;
    let warnings = admit(kind, &obj, name)?;
    let resource = resource_name(kind);
    let r = resource.clone();
    let obj = api.store.blocking(move |s| s.replace(&r, obj)).await.map_err(|e| ApiError::from_store(e, &resource, kind.plural(), name))?;
    Ok(json_response(StatusCode::OK, &obj, &warnings))
}

pub(crate) async fn delete(
    api: &ManagementApi,
    kind: &dyn ResourceKind,
    ns: Option<&str>,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    by_name(api, kind, ns, name, Store::delete).await
}
