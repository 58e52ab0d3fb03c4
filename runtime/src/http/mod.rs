//! The HTTP edge (hyper): KServe V1, the Open Inference Protocol's REST binding with Triton's
//! extensions, and `/metrics`.

pub mod codec;
pub mod openai;
pub mod openapi;
pub mod repository;
mod routes;
pub mod v1;
pub mod v2;

use std::{borrow::Cow, convert::Infallible, future::Future, sync::Arc};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tracing::{debug, Instrument};

use crate::{
    edge,
    infer::Timing,
    limits::{Activity, Admission, EdgeLimits, Watched},
    model::VersionInfo,
    protocol::{self, REVISION_HEADER},
    registry::{traffic::Revision, ModelRegistry, Routed},
    restricted::RestrictedApis,
    ServeError, EXTENSIONS, SERVER_NAME, SERVER_VERSION,
};

/// Routes served on the HTTP port by something other than the model server: the control plane's
/// management API. The runtime knows nothing of what they do; it asks each request's path once.
pub trait HttpExtension: Send + Sync + std::fmt::Debug {
    /// Whether this extension serves `path`.
    fn claims(&self, path: &str) -> bool;
    /// Answers a request whose path it claims.
    fn handle(&self, request: Request<Incoming>) -> std::pin::Pin<Box<dyn Future<Output = HttpResponse> + Send + '_>>;
    /// The OpenAPI 3 document of its routes (its `paths`, `components` and `tags` are added to
    /// the server's own at `GET /openapi.json`, once).
    fn openapi(&self) -> Option<Value> {
        None
    }
}

/// What every HTTP handler shares.
#[derive(Debug)]
pub struct HttpState {
    /// The models.
    pub registry: Arc<ModelRegistry>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time to receive a request's body once its head is in (`--http-body-timeout-secs`).
    pub body_timeout: std::time::Duration,
    /// Set once shutdown begins, so readiness turns false while in-flight work drains.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
    /// Extra routes (the control plane's API), asked before the model server's own.
    pub extension: Option<Arc<dyn HttpExtension>>,
    /// The OpenAPI document served at `/openapi.json` and `/openapi.yaml`, built on first use.
    pub openapi: openapi::Documents,
    /// `--http-restricted-api`: the categories that need a header (not the extension's routes,
    /// which have their own authentication).
    pub restricted: RestrictedApis,
}

/// A response of the HTTP edge.
pub type HttpResponse = Response<Full<Bytes>>;

/// The HTTP status for an error: KServe's mapping.
pub fn status_of(error: &ServeError) -> StatusCode {
    match error {
        ServeError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        ServeError::NotFound(_) => StatusCode::NOT_FOUND,
        ServeError::Unavailable(_) | ServeError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
        ServeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServeError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        ServeError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ServeError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
    }
}

fn json_response(status: StatusCode, value: &Value) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ServeError) -> HttpResponse {
    let mut response = json_response(status_of(error), &json!({ "error": error.to_string() }));
    if matches!(error, ServeError::QueueFull(_)) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The connection builder: HTTP/1 with bounded heads, HTTP/2 (same port) with the stream,
/// header-list and reset-flood limits and keep-alive pings.
fn builder(limits: &EdgeLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The header timeout is the connection watchdog's (`limits::Activity`): hyper's would
        // also cut the wait between keep-alive requests to the same length.
        .header_read_timeout(None)
        .max_buf_size(limits.http_max_header_bytes.max(crate::limits::MIN_MAX_HEADER_BYTES))
        .max_headers(limits.http_max_headers);
    let http2 = &limits.http2;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(http2.max_concurrent_streams)
        .max_header_list_size(http2.max_header_list_bytes)
        .max_pending_accept_reset_streams(crate::limits::MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(crate::limits::MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(http2.keepalive_time)
        .keep_alive_timeout(http2.keepalive_timeout);
    builder
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting and waits for
/// in-flight requests to finish. At most `cap` connections are open at once; past it the
/// listener is not accepted from (see [`crate::limits`]).
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, limits: EdgeLimits, cap: usize, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = builder(&limits);
    let admission = Admission::new("HTTP", cap);
    let (header_timeout, keepalive_timeout) = (limits.http_header_timeout, limits.http_keepalive_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = admission.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let activity = Activity::new();
        let state = state.clone();
        let requests = activity.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            let in_flight = requests.start_request();
            async move {
                let _in_flight = in_flight;
                // The request's span, from the edge to the engine (enabled with QUIVER_LOG=debug).
                // Built inside the future, and wrapped around it only when enabled, so that
                // the future hyper receives is just the state and the request.
                let span = tracing::debug_span!("http", method = %request.method(), path = request.uri().path());
                let response =
                    if span.is_disabled() { handle(&state, request).await } else { handle(&state, request).instrument(span).await };
                Ok::<_, Infallible>(response)
            }
        });
        let io = Watched::new(stream, activity.clone(), slot);
        let connection = builder.serve_connection(TokioIo::new(io), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => if let Err(e) = result {
                    debug!(%peer, "connection ended: {e}");
                },
                // Dropping the connection closes it; no request is in flight when this fires.
                () = activity.overstayed(header_timeout, keepalive_timeout) => {
                    debug!(%peer, "connection closed: no complete request head in time, or idle too long");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Percent-decodes a path segment (model names may be URL-quoted by clients); a segment with
/// no `%` in it, the usual case, is borrowed as it is.
fn decode_segment(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Routes one request.
pub async fn handle(state: &HttpState, request: Request<Incoming>) -> HttpResponse {
    if let Some(extension) = &state.extension {
        if extension.claims(request.uri().path()) {
            return extension.handle(request).await;
        }
    }
    // The URI shares the request's buffer: cloning it copies no text, and the segments borrow
    // from it while the request itself moves on to the handler.
    let uri = request.uri().clone();
    let path = uri.path();
    let segments: Vec<Cow<'_, str>> = path.trim_matches('/').split('/').map(decode_segment).collect();
    let segments: Vec<&str> = segments.iter().map(Cow::as_ref).collect();
    if let Some(route) = routes::lookup(&segments) {
        if !route.allowed.allows(request.method()) {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": format!("method {} is not allowed for {path} (allowed: {})", request.method(), route.allowed.header()) }),
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(route.allowed.header()));
            return response;
        }
        if let Some(category) = route.category {
            if let Err(denied) = state.restricted.check(category, |name| request.headers().get(name).map(HeaderValue::as_bytes)) {
                return json_response(StatusCode::FORBIDDEN, &json!({ "error": denied.to_string() }));
            }
        }
    }
    // HEAD is GET without the body (hyper drops the body of a HEAD response).
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["v2", "health", "live"]) => Ok(empty(StatusCode::OK)),
        (&Method::GET, ["v2", "health", "ready"]) => Ok(empty(if server_ready(state) { StatusCode::OK } else { StatusCode::BAD_REQUEST })),
        (&Method::GET, ["v2"]) => {
            Ok(json_response(StatusCode::OK, &json!({ "name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS })))
        }
        (_, ["v2", "models", model, rest @ ..]) => {
            let (version, action) = match rest {
                ["versions", version, action @ ..] => (*version, action),
                action => ("", action),
            };
            model_route(state, &method, model, version, action, request).await
        }
        // Boxed, as is the embeddings route: a future is as large as its largest await, and
        // these two would otherwise make every inference request's future several KiB larger.
        (_, ["v2", "repository", rest @ ..]) => Box::pin(repository::route(state, &method, rest, request)).await,
        (&Method::GET, ["v1", "models"]) => {
            let names: Vec<String> = state.registry.snapshot().models.keys().cloned().collect();
            Ok(json_response(StatusCode::OK, &json!({ "models": names })))
        }
        (&Method::GET, ["v1", "models", model]) => v1_model(state, model),
        (&Method::POST, ["v1", "models", target]) => match target.rsplit_once(':') {
            Some((model, "predict")) => v1_predict(state, model, request).await,
            _ => Err(ServeError::NotFound(format!("no route for POST {path}"))),
        },
        (&Method::POST, ["openai", "v1", "embeddings"]) => Ok(Box::pin(openai::embeddings(state, request)).await),
        (&Method::GET, ["openapi.json"]) => Ok(document(state.openapi.json(state.extension.as_deref()), "application/json")),
        (&Method::GET, ["openapi.yaml"]) => Ok(document(state.openapi.yaml(state.extension.as_deref()), "application/yaml")),
        (&Method::GET, ["metrics"]) => {
            let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            Ok(response)
        }
        _ => Err(ServeError::NotFound(format!("no route for {method} {path}"))),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn document(body: Bytes, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn server_ready(state: &HttpState) -> bool {
    edge::server_ready(&state.registry, &state.shutting_down)
}

async fn read_body(state: &HttpState, request: Request<Incoming>) -> Result<(http::request::Parts, Bytes), ServeError> {
    let (parts, body) = request.into_parts();
    let too_large = || ServeError::PayloadTooLarge(format!("request body exceeds the limit of {} bytes", state.max_body_bytes));
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    // A deadline for the whole body, not per read: a body trickled a byte at a time would
    // otherwise hold its connection (and its buffer) as long as the client likes.
    let timeout = state.body_timeout;
    let collected = tokio::time::timeout(timeout, Limited::new(body, state.max_body_bytes).collect())
        .await
        .map_err(|_| ServeError::BodyTimeout(format!("the request body did not arrive within {} s", timeout.as_secs_f64())))?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large()
            } else {
                ServeError::InvalidInput(format!("failed to read the request body: {e}"))
            }
        })?;
    let body = decode_content(parts.headers.get(header::CONTENT_ENCODING), collected.to_bytes(), state.max_body_bytes)?;
    Ok((parts, body))
}

/// Undoes a request's `Content-Encoding` (tritonclient's `request_compression_algorithm`
/// sends `gzip` or `deflate`). The decompressed size is held to the same limit as the body,
/// so a small compressed body cannot expand without bound.
pub(crate) fn decode_content(encoding: Option<&HeaderValue>, body: Bytes, limit: usize) -> Result<Bytes, ServeError> {
    use std::io::Read;
    let encoding = match encoding.map(|v| v.to_str().map(|s| s.trim().to_ascii_lowercase())) {
        None => return Ok(body),
        Some(Ok(e)) => e,
        Some(Err(_)) => return Err(ServeError::InvalidInput("Content-Encoding is not valid text".into())),
    };
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        other => {
            return Err(ServeError::InvalidInput(format!("unsupported Content-Encoding '{other}' (supported: gzip, deflate, identity)")))
        }
    };
    let mut decoded = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| ServeError::InvalidInput(format!("failed to decompress the {encoding} request body: {e}")))?;
    if decoded.len() > limit {
        return Err(ServeError::PayloadTooLarge(format!("decompressed request body exceeds the limit of {limit} bytes")));
    }
    Ok(Bytes::from(decoded))
}

async fn model_route(
    state: &HttpState,
    method: &Method,
    model: &str,
    version: &str,
    action: &[&str],
    request: Request<Incoming>,
) -> Result<HttpResponse, ServeError> {
    match (method, action) {
        (&Method::GET, []) => {
            let info = state.registry.info(model, version)?;
            Ok(json_response(StatusCode::OK, &model_metadata(state, &info)))
        }
        (&Method::GET, ["ready"]) => state.registry.info(model, version).map(|_| empty(StatusCode::OK)).or_else(|e| match e {
            ServeError::Unavailable(_) => Ok(empty(StatusCode::BAD_REQUEST)),
            other => Err(other),
        }),
        (&Method::GET, ["config"]) => {
            let info = state.registry.info(model, version)?;
            let config = quiver_core::config::to_json(info.config()).map_err(|e| ServeError::Inference(e.to_string()))?;
            Ok(json_response(StatusCode::OK, &config))
        }
        (&Method::POST, ["infer"]) => {
            let routed = state.registry.route(model, version, pinned_revision(&request)?)?;
            let revision = routed.revision();
            let answer = v2_infer(state, routed, request).await;
            Ok(with_revision(answer.unwrap_or_else(|e| error_response(&e)), revision))
        }
        _ => Err(ServeError::NotFound(format!("no route for {method} {}", request.uri().path()))),
    }
}

/// The side of a canary split the request pins itself to, if any.
fn pinned_revision(request: &Request<Incoming>) -> Result<Option<Revision>, ServeError> {
    protocol::pinned_revision(request.headers().get(REVISION_HEADER).map(HeaderValue::as_bytes))
}

/// The V2 model metadata document.
fn model_metadata(state: &HttpState, model: &VersionInfo) -> Value {
    serde_json::to_value(edge::ModelMetadata::of(&state.registry, model)).unwrap_or(Value::Null)
}

async fn v2_infer(state: &HttpState, routed: Routed, request: Request<Incoming>) -> Result<HttpResponse, ServeError> {
    let (parts, body) = read_body(state, request).await?;
    let json_length = v2::json_length(parts.headers.get(v2::HEADER_CONTENT_LENGTH).map(HeaderValue::as_bytes))?;
    let decoded = v2::decode_request(body, json_length)?;
    let options = v2::RequestOptions::of(&decoded);
    let valid = routed.info().validate_counted(decoded)?;
    let response = routed.infer(valid).await?;
    let encoded = v2::encode_response(&response, &options)?;
    let mut http_response = Response::new(Full::new(encoded.body));
    let headers = http_response.headers_mut();
    timing_headers(headers, &response.timing);
    match encoded.json_length {
        Some(length) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(v2::HEADER_CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(http_response)
}

/// KServe's model status: 200 `{name, ready: true}`, 503 while not ready, 404 if unknown.
fn v1_model(state: &HttpState, model: &str) -> Result<HttpResponse, ServeError> {
    state.registry.info(model, "")?;
    Ok(json_response(StatusCode::OK, &json!({ "name": model, "ready": true })))
}

async fn v1_predict(state: &HttpState, model: &str, request: Request<Incoming>) -> Result<HttpResponse, ServeError> {
    let routed = state.registry.route(model, "", pinned_revision(&request)?)?;
    let revision = routed.revision();
    let answer = async {
        let (_, body) = read_body(state, request).await?;
        let decoded = v1::decode_predict(&body, routed.info())?;
        let valid = routed.info().validate_counted(decoded)?;
        let response = routed.infer(valid).await?;
        let mut http_response = json_response(StatusCode::OK, &v1::encode_predict(&response));
        timing_headers(http_response.headers_mut(), &response.timing);
        Ok::<_, ServeError>(http_response)
    };
    Ok(with_revision(answer.await.unwrap_or_else(|e| error_response(&e)), revision))
}

/// The timing headers' names, checked at compile time rather than parsed on each response.
const TIMING_HEADERS: [HeaderName; 2] = [HeaderName::from_static(Timing::QUEUE_HEADER), HeaderName::from_static(Timing::COMPUTE_HEADER)];

/// Reports where the request's time went (`x-queue-time-us`, `x-compute-time-us`).
fn timing_headers(headers: &mut http::HeaderMap, timing: &Timing) {
    for (name, (_, micros)) in TIMING_HEADERS.into_iter().zip(timing.headers()) {
        headers.insert(name, integer_value(micros));
    }
}

/// A decimal header value, formatted on the stack and copied once into an exact-size buffer
/// (`HeaderValue::from(u64)` grows a `BytesMut` to write it).
fn integer_value(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    HeaderValue::from_bytes(digits.format(n).as_bytes()).unwrap_or_else(|_| HeaderValue::from(n))
}

/// Marks a response with the side of the canary split that answered it, errors included, so
/// a client of any protocol version can tell which version it reached.
fn with_revision(mut response: HttpResponse, revision: Option<Revision>) -> HttpResponse {
    if let Some(revision) = revision {
        response.headers_mut().insert(REVISION_HEADER, HeaderValue::from_static(revision.as_str()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode_segment("my%20model"), "my model");
        assert_eq!(decode_segment("a%2"), "a%2");
        assert_eq!(decode_segment("%zz"), "%zz");
        assert_eq!(decode_segment("plain"), "plain");
    }

    #[test]
    fn compressed_bodies_are_decoded_within_the_limit() {
        use std::io::Write;
        let plain = Bytes::from_static(b"{\"inputs\": []}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&plain).unwrap();
        let zlib = Bytes::from(zlib.finish().unwrap());
        let header = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(decode_content(Some(&header("gzip")), gz.clone(), 1024).unwrap(), plain);
        assert_eq!(decode_content(Some(&header("deflate")), zlib, 1024).unwrap(), plain);
        assert_eq!(decode_content(None, plain.clone(), 1024).unwrap(), plain);
        assert_eq!(decode_content(Some(&header("identity")), plain.clone(), 1024).unwrap(), plain);
        assert!(matches!(decode_content(Some(&header("br")), plain.clone(), 1024), Err(ServeError::InvalidInput(_))));
        assert!(matches!(decode_content(Some(&header("gzip")), plain, 1024), Err(ServeError::InvalidInput(_))));
        // A bomb: 1 MiB of zeros compresses to about 1 KiB but may not expand past the limit.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = Bytes::from(bomb.finish().unwrap());
        assert!(bomb.len() < 4096);
        assert!(matches!(decode_content(Some(&header("gzip")), bomb, 64 * 1024), Err(ServeError::PayloadTooLarge(_))));
    }

    #[test]
    fn status_mapping_follows_kserve() {
        assert_eq!(status_of(&ServeError::InvalidInput(String::new())), 400);
        assert_eq!(status_of(&ServeError::NotFound(String::new())), 404);
        assert_eq!(status_of(&ServeError::Unavailable(String::new())), 503);
        assert_eq!(status_of(&ServeError::Inference(String::new())), 500);
        assert_eq!(status_of(&ServeError::Unsupported(String::new())), 501);
        assert_eq!(status_of(&ServeError::QueueFull(String::new())), 429);
    }
}
