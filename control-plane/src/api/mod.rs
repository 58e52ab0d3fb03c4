//! The Kubernetes-shaped management API: the paths, objects, errors and discovery documents
//! `kubectl` and `quiver apply/get/...` speak, over the embedded [`Store`].
//!
//! Kinds are plugged in as [`ResourceKind`]s (objects stay `serde_json::Value` here; each kind's
//! `admit` does its own typed checks). The runtime's HTTP edge delegates every path for which
//! [`ManagementApi::claims`] is true to [`ManagementApi::handle`].

mod discovery;
mod events;
mod objects;
mod patch;
mod query;
mod status;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use serde_json::Value;

use crate::store::Store;
use status::ApiError;

/// The largest request body accepted (Kubernetes' apiserver limit is 3 MiB too).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Field-level admission failures: (field path, message) pairs.
pub type Causes = Vec<(String, String)>;

/// One kind of object the API serves.
pub trait ResourceKind: Send + Sync {
    /// The API group, e.g. `serving.kserve.io`.
    fn group(&self) -> &str;
    /// The version, e.g. `v1beta1`.
    fn version(&self) -> &str;
    /// The plural resource name used in paths, e.g. `inferenceservices`.
    fn plural(&self) -> &str;
    /// The kind, e.g. `InferenceService`.
    fn kind(&self) -> &str;
    /// Whether objects live in namespaces.
    fn namespaced(&self) -> bool;
    /// Short names for discovery (e.g. `isvc`).
    fn short_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Admission, run on create, replace and patch with the object about to be stored: warnings
    /// to send back, or the fields that make it invalid.
    fn admit(&self, obj: &Value) -> Result<Vec<String>, Causes>;
}

/// The management API's request handler.
pub struct ManagementApi {
    store: Arc<Store>,
    token: String,
    kinds: Vec<Arc<dyn ResourceKind>>,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi").field("kinds", &self.kinds.iter().map(|k| k.kind().to_string()).collect::<Vec<_>>()).finish()
    }
}

/// The store key of a kind's objects: `plural.group`.
pub fn resource_name(kind: &dyn ResourceKind) -> String {
    format!("{}.{}", kind.plural(), kind.group())
}

/// Where a request goes once its path is parsed.
enum Route<'a> {
    GroupList,
    Group(&'a str),
    ResourceList(&'a str, &'a str),
    /// A collection: in one namespace, or (None) in all of them / cluster-scoped.
    Collection(Arc<dyn ResourceKind>, Option<&'a str>),
    Item(Arc<dyn ResourceKind>, Option<&'a str>, &'a str),
    Status(Arc<dyn ResourceKind>, Option<&'a str>, &'a str),
    Events(&'a str),
}

impl ManagementApi {
    /// A handler over `store` for `kinds`, accepting requests that carry `Authorization: Bearer
    /// <token>`. An empty token accepts nobody.
    pub fn new(store: Arc<Store>, token: String, kinds: Vec<Arc<dyn ResourceKind>>) -> ManagementApi {
        ManagementApi { store, token, kinds }
    }

    /// Whether `path` belongs to this API: `/apis`, `/apis/...` and `/api/v1/namespaces/*/events`.
    pub fn claims(path: &str) -> bool {
        if path == "/apis" || path.starts_with("/apis/") {
            return true;
        }
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        matches!(segs.as_slice(), ["", "api", "v1", "namespaces", ns, "events"] if !ns.is_empty())
    }

    /// Answers one request. Never fails: errors come back as `Status` objects.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.dispatch(req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    fn authorized(&self, req: &http::request::Parts) -> bool {
        let Some(value) = req.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
        let Some((scheme, given)) = value.split_once(' ') else { return false };
        scheme.eq_ignore_ascii_case("bearer") && !self.token.is_empty() && constant_time_eq(given.trim().as_bytes(), self.token.as_bytes())
    }

    async fn dispatch<B>(&self, req: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        if !self.authorized(&parts) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized: a valid bearer token is required"));
        }
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
            if len > MAX_BODY_BYTES as u64 {
                return Err(too_large());
            }
        }
        let path = parts.uri.path().to_string();
        let route = self.route(&path)?;
        let query = query::parse(parts.uri.query().unwrap_or(""))?;
        let method = parts.method.clone();
        let read = |allowed: &'static str| {
            if method == Method::GET {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed(&method, allowed))
            }
        };
        match route {
            Route::GroupList => read("GET").map(|_| discovery::group_list(&self.kinds)),
            Route::Group(g) => read("GET").and_then(|_| discovery::group(&self.kinds, g)),
            Route::ResourceList(g, v) => read("GET").and_then(|_| discovery::resource_list(&self.kinds, g, v)),
            Route::Events(ns) => {
                read("GET")?;
                events::list(self, ns, &query).await
            }
            Route::Status(kind, ns, name) => {
                read("GET")?;
                objects::get(self, &*kind, ns, name).await
            }
            Route::Collection(kind, ns) => match parts.method {
                Method::GET => objects::list(self, &*kind, ns).await,
                Method::POST if ns.is_some() || !kind.namespaced() => {
                    let body = read_body(body).await?;
                    objects::create(self, &*kind, ns, &body).await
                }
                _ if ns.is_none() && kind.namespaced() => Err(ApiError::method_not_allowed(&parts.method, "GET")),
                _ => Err(ApiError::method_not_allowed(&parts.method, "GET, POST")),
            },
            Route::Item(kind, ns, name) => match parts.method {
                Method::GET => objects::get(self, &*kind, ns, name).await,
                Method::DELETE => objects::delete(self, &*kind, ns, name).await,
                Method::PUT => {
                    let body = read_body(body).await?;
                    objects::replace(self, &*kind, ns, name, &body).await
                }
                Method::PATCH => {
                    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let body = read_body(body).await?;
                    patch::patch(self, &*kind, ns, name, &content_type, &body).await
                }
                _ => Err(ApiError::method_not_allowed(&parts.method, "GET, PUT, PATCH, DELETE")),
            },
        }
    }

    fn find_kind(&self, group: &str, version: &str, plural: &str) -> Result<Arc<dyn ResourceKind>, ApiError> {
        self.kinds
            .iter()
            .find(|k| k.group() == group && k.version() == version && k.plural() == plural)
            .cloned()
            .ok_or_else(ApiError::not_found_path)
    }

    fn route<'a>(&self, path: &'a str) -> Result<Route<'a>, ApiError> {
        let segs: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
        let route = match segs.as_slice() {
            ["apis"] => Route::GroupList,
            ["apis", g] => Route::Group(g),
            ["apis", g, v] => Route::ResourceList(g, v),
            ["api", "v1", "namespaces", ns, "events"] => Route::Events(ns),
            ["apis", g, v, "namespaces", ns, plural] => Route::Collection(self.namespaced(g, v, plural)?, Some(ns)),
            ["apis", g, v, "namespaces", ns, plural, name] => Route::Item(self.namespaced(g, v, plural)?, Some(ns), name),
            ["apis", g, v, "namespaces", ns, plural, name, "status"] => Route::Status(self.namespaced(g, v, plural)?, Some(ns), name),
            ["apis", g, v, plural] => Route::Collection(self.find_kind(g, v, plural)?, None),
            ["apis", g, v, plural, name] => Route::Item(self.cluster_scoped(g, v, plural)?, None, name),
            ["apis", g, v, plural, name, "status"] => Route::Status(self.cluster_scoped(g, v, plural)?, None, name),
            _ => return Err(ApiError::not_found_path()),
        };
        Ok(route)
    }

    fn namespaced(&self, g: &str, v: &str, plural: &str) -> Result<Arc<dyn ResourceKind>, ApiError> {
        self.find_kind(g, v, plural).and_then(|k| if k.namespaced() { Ok(k) } else { Err(ApiError::not_found_path()) })
    }

    fn cluster_scoped(&self, g: &str, v: &str, plural: &str) -> Result<Arc<dyn ResourceKind>, ApiError> {
        self.find_kind(g, v, plural).and_then(|k| if k.namespaced() { Err(ApiError::not_found_path()) } else { Ok(k) })
    }
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", format!("request body is larger than {MAX_BODY_BYTES} bytes"))
}

/// Time to receive a request's whole body once its head is in: the model server's default
/// `--http-body-timeout-secs`, since a body trickled a byte at a time would otherwise hold its
/// connection for as long as the client likes.
const BODY_TIMEOUT: std::time::Duration = quiver_runtime::limits::DEFAULT_BODY_TIMEOUT;

async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading the request body failed: {e}"))),
    }
}

/// Compares without an early exit so the time taken does not reveal how many leading bytes of a
/// guessed token are right. (The length can leak; tokens are fixed-length random strings.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}
