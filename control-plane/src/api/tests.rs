//! The API over a real socket: an in-process hyper server on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use super::*;
use crate::store::tests::{temp_dir, TempDir};
use crate::store::EventType;

pub(crate) const TOKEN: &str = "s3cret-token";
pub(crate) const ISVC: &str = "inferenceservices.serving.kserve.io";

/// A stand-in for the typed InferenceService kind: enough rules to exercise admission.
pub(crate) struct TestIsvc;

impl ResourceKind for TestIsvc {
    fn group(&self) -> &str {
        "serving.kserve.io"
    }
    fn version(&self) -> &str {
        "v1beta1"
    }
    fn plural(&self) -> &str {
        "inferenceservices"
    }
    fn kind(&self) -> &str {
        "InferenceService"
    }
    fn namespaced(&self) -> bool {
        true
    }
    fn short_names(&self) -> Vec<String> {
        vec!["isvc".into()]
    }
    fn admit(&self, obj: &Value) -> Result<Vec<String>, Causes> {
        let predictor = &obj["spec"]["predictor"];
        if !predictor.is_object() {
            return Err(vec![("spec.predictor".into(), "Required value".into())]);
        }
        if let Some(p) = predictor["canaryTrafficPercent"].as_i64().filter(|p| !(0..=100).contains(p)) {
            return Err(vec![("spec.predictor.canaryTrafficPercent".into(), format!("must be between 0 and 100, got {p}"))]);
        }
        Ok(if predictor.get("logger").is_some() { vec!["spec.predictor.logger: not implemented, ignored".into()] } else { vec![] })
    }
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) store: Arc<Store>,
    _dir: TempDir,
}

pub(crate) async fn spawn_server() -> Server {
    let dir = temp_dir();
    let store = Arc::new(Store::open(dir.0.join("store.redb")).unwrap());
    let api = Arc::new(ManagementApi::new(Arc::clone(&store), TOKEN.into(), vec![Arc::new(TestIsvc)]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let api = Arc::clone(&api);
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(sock), svc).await;
            });
        }
    });
    Server { addr, store, _dir: dir }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

async fn call(server: &Server, method: Method, path: &str, content_type: &str, body: &str, token: Option<&str>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(format!("http://{}{path}", server.addr)).header("content-type", content_type);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

async fn req(server: &Server, method: Method, path: &str, body: &Value) -> Reply {
    let ct = if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
    call(server, method, path, ct, &body.to_string(), Some(TOKEN)).await
}

const COLL: &str = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices";

pub(crate) fn isvc(name: &str) -> Value {
    json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": name},
           "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "/models/x"}}}})
}

#[test]
fn claims_its_paths_only() {
    assert!(ManagementApi::claims("/apis"));
    assert!(ManagementApi::claims("/apis/serving.kserve.io/v1beta1"));
    assert!(ManagementApi::claims("/api/v1/namespaces/default/events"));
    assert!(!ManagementApi::claims("/api/v1/namespaces//events"));
    assert!(!ManagementApi::claims("/apisx"));
    assert!(!ManagementApi::claims("/v2/models/x/infer"));
}

#[tokio::test]
async fn unauthorized_without_the_right_token() {
    let s = spawn_server().await;
    for token in [None, Some("wrong"), Some("")] {
        let r = call(&s, Method::GET, COLL, "application/json", "", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["reason"], "Unauthorized");
        assert_eq!(r.body["kind"], "Status");
        assert!(r.body["error"].is_string());
    }
}

#[tokio::test]
async fn create_get_list_replace_delete() {
    let s = spawn_server().await;
    let r = req(&s, Method::POST, COLL, &isvc("iris")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["metadata"]["namespace"], "default");
    assert_eq!(r.body["metadata"]["generation"], 1);

    let r = req(&s, Method::POST, COLL, &isvc("iris")).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (StatusCode::CONFLICT, Some("AlreadyExists")));
    assert_eq!(r.body["message"], "inferenceservices.serving.kserve.io \"iris\" already exists");

    let r = req(&s, Method::GET, &format!("{COLL}/iris"), &Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut obj = r.body;

    let r = req(&s, Method::GET, &format!("{COLL}/nope"), &Value::Null).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
    assert_eq!(r.body["details"]["name"], "nope");

    // Replace with the current version, then with the now stale one.
    obj["spec"]["predictor"]["model"]["storageUri"] = json!("/models/y");
    let r = req(&s, Method::PUT, &format!("{COLL}/iris"), &obj).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["metadata"]["generation"], 2);
    let r = req(&s, Method::PUT, &format!("{COLL}/iris"), &obj).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (StatusCode::CONFLICT, Some("Conflict")));

    // Path and body must agree.
    let r = req(&s, Method::PUT, &format!("{COLL}/other"), &obj).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut elsewhere = isvc("b");
    elsewhere["metadata"]["namespace"] = json!("team");
    assert_eq!(req(&s, Method::POST, COLL, &elsewhere).await.status, StatusCode::BAD_REQUEST);

    // Namespaces need not exist first.
    let team = "/apis/serving.kserve.io/v1beta1/namespaces/team/inferenceservices";
    assert_eq!(req(&s, Method::POST, team, &elsewhere).await.status, StatusCode::CREATED);
    let r = req(&s, Method::GET, COLL, &Value::Null).await;
    assert_eq!(r.body["kind"], "InferenceServiceList");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(r.body["metadata"]["resourceVersion"].is_string());
    let r = req(&s, Method::GET, "/apis/serving.kserve.io/v1beta1/inferenceservices", &Value::Null).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);

    let r = req(&s, Method::DELETE, &format!("{COLL}/iris"), &Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["metadata"]["name"], "iris");
    assert_eq!(req(&s, Method::DELETE, &format!("{COLL}/iris"), &Value::Null).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_objects_get_422_with_causes_and_warnings_come_back_as_headers() {
    let s = spawn_server().await;
    let mut bad = isvc("iris");
    bad["spec"]["predictor"]["canaryTrafficPercent"] = json!(150);
    let r = req(&s, Method::POST, COLL, &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["reason"], "Invalid");
    assert_eq!(r.body["details"]["causes"][0]["field"], "spec.predictor.canaryTrafficPercent");
    assert_eq!(r.body["details"]["name"], "iris");

    let r = req(&s, Method::POST, COLL, &isvc("Bad_Name")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");

    let mut logged = isvc("iris");
    logged["spec"]["predictor"]["logger"] = json!({"mode": "all"});
    let r = req(&s, Method::POST, COLL, &logged).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers.get("warning").unwrap(), "299 - \"spec.predictor.logger: not implemented, ignored\"");

    let r = call(&s, Method::POST, COLL, "application/json", "{not json", Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let r = call(&s, Method::POST, COLL, "application/json", &huge, Some(TOKEN)).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLarge")));
}

#[tokio::test]
async fn server_side_apply_creates_then_updates_and_merge_patch_merges() {
    let s = spawn_server().await;
    let path = format!("{COLL}/iris");
    let yaml = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: iris\nspec:\n  predictor:\n    model:\n      storageUri: /m1\n";
    let r = call(&s, Method::PATCH, &path, "application/apply-patch+yaml", yaml, Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    s.store.update_status(ISVC, "default", "iris", json!({"url": "http://iris"}), None).unwrap();
    let r = call(&s, Method::PATCH, &path, "application/apply-patch+yaml", &yaml.replace("/m1", "/m2"), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["predictor"]["model"]["storageUri"], "/m2");
    assert_eq!(r.body["metadata"]["generation"], 2);
    assert_eq!(r.body["status"]["url"], "http://iris");

    let r = req(&s, Method::PATCH, &path, &json!({"metadata": {"labels": {"a": "b"}}, "spec": {"predictor": {"minReplicas": 0}}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["predictor"]["model"]["storageUri"], "/m2");
    assert_eq!(r.body["spec"]["predictor"]["minReplicas"], 0);
    assert_eq!(r.body["metadata"]["labels"]["a"], "b");
    let r = req(&s, Method::PATCH, &path, &json!({"spec": {"predictor": null}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = req(&s, Method::PATCH, &path, &json!({"metadata": {"resourceVersion": "1"}})).await;
    assert_eq!(r.body["reason"], "Conflict");
    let r = call(&s, Method::PATCH, &path, "application/json-patch+json", "[]", Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = req(&s, Method::PATCH, &format!("{COLL}/missing"), &json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = req(&s, Method::GET, &format!("{path}/status"), &Value::Null).await;
    assert_eq!(r.body["status"]["url"], "http://iris");
}

#[tokio::test]
async fn discovery_405_and_events() {
    let s = spawn_server().await;
    let r = req(&s, Method::GET, "/apis", &Value::Null).await;
    assert_eq!(r.body["groups"][0]["name"], "serving.kserve.io");
    let r = req(&s, Method::GET, "/apis/serving.kserve.io/v1beta1", &Value::Null).await;
    assert_eq!(r.body["resources"][0]["name"], "inferenceservices");
    assert_eq!(r.body["resources"][0]["shortNames"][0], "isvc");
    assert_eq!(req(&s, Method::GET, "/apis/other.io/v1", &Value::Null).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        req(&s, Method::GET, "/apis/serving.kserve.io/v1beta1/namespaces/default/widgets", &Value::Null).await.status,
        StatusCode::NOT_FOUND
    );

    let r = req(&s, Method::PUT, COLL, &Value::Null).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers.get("allow").unwrap(), "GET, POST");
    assert_eq!(r.body["reason"], "MethodNotAllowed");

    req(&s, Method::POST, COLL, &isvc("iris")).await;
    req(&s, Method::POST, COLL, &isvc("other")).await;
    s.store.record_event(ISVC, "default", "iris", EventType::Warning, "LoadFailed", "no model").unwrap();
    s.store.record_event(ISVC, "default", "iris", EventType::Warning, "LoadFailed", "no model").unwrap();
    s.store.record_event(ISVC, "default", "other", EventType::Normal, "Ready", "ok").unwrap();
    let r = req(&s, Method::GET, "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Diris", &Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "EventList");
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["count"], 2);
    assert_eq!(items[0]["involvedObject"]["kind"], "InferenceService");
    assert_eq!(items[0]["type"], "Warning");
    let r = req(&s, Method::GET, "/api/v1/namespaces/default/events", &Value::Null).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let r = req(&s, Method::GET, "/api/v1/namespaces/default/events?fieldSelector=reason%3DX", &Value::Null).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// A body that sends its first bytes, then nothing, never ending.
struct StalledBody(bool);

impl Body for StalledBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"{\"apiVersion\": ")))))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_arriving_is_a_408_after_the_body_timeout() {
    let started = tokio::time::Instant::now();
    let error = read_body(StalledBody(false)).await.unwrap_err();
    assert_eq!(error.code, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), BODY_TIMEOUT);
    // A whole body is read as ever.
    assert_eq!(read_body(Full::new(Bytes::from_static(b"{}"))).await.unwrap(), Bytes::from_static(b"{}"));
}
