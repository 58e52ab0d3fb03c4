//! The HTTP/1.1 transport: one keep-alive connection per worker, and the V2 infer client.
//!
//! Each worker owns its connection, so sending a request takes no lock and no pool lookup;
//! the prepared request's URI, headers and body are cheap reference-counted clones.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, client::conn::http1::SendRequest, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{
    load::{InferClient, InferOutcome},
    request::EncodedRequest,
    BenchError,
};

/// How long one infer request may take before it counts as a `timeout` error (and its
/// connection is replaced).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause after a failed connection attempt, so a server that is down is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Most bytes of an error response body kept for the report.
const ERROR_MESSAGE_LIMIT: usize = 300;

/// Where the server is: `host:port` plus an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `host:port`, to connect to and to send as `Host`.
    pub authority: String,
    /// Path prefix without a trailing slash (usually empty).
    pub base_path: String,
}

impl HttpTarget {
    /// Parses `host:port`, `host` (port 80) or `http://host:port[/prefix]`.
    pub fn parse(url: &str) -> Result<HttpTarget, BenchError> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            None => url,
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(BenchError::InvalidArgs(format!("URL scheme '{scheme}' is not supported (only http)"))),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(BenchError::InvalidArgs(format!("'{url}' has no host")));
        }
        let has_port = match authority.rsplit_once(':') {
            Some((_, port)) => !port.ends_with(']'), // "[::1]" has colons but no port
            None => false,
        };
        let authority = if has_port { authority.to_string() } else { format!("{authority}:80") };
        let parsed = authority.parse::<http::uri::Authority>().map_err(|e| BenchError::InvalidArgs(format!("'{url}': {e}")))?;
        if parsed.port_u16().is_none() {
            return Err(BenchError::InvalidArgs(format!("'{url}' has no valid port")));
        }
        let path = path.trim_matches('/');
        let base_path = if path.is_empty() { String::new() } else { format!("/{path}") };
        Ok(HttpTarget { authority, base_path })
    }

    /// The origin-form URI of `path` (which starts with '/') under the prefix.
    pub fn uri(&self, path: &str) -> Result<Uri, BenchError> {
        format!("{}{path}", self.base_path).parse().map_err(|e| BenchError::InvalidArgs(format!("path '{path}': {e}")))
    }

    fn host(&self) -> HeaderValue {
        HeaderValue::from_str(&self.authority).expect("checked when parsed")
    }
}

/// Percent-encodes a path segment (a model name).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 keep-alive connection.
#[derive(Debug)]
pub struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
}

impl HttpConnection {
    /// Opens a connection (with `TCP_NODELAY`) and drives it on its own task.
    pub async fn connect(target: &HttpTarget) -> Result<HttpConnection, BenchError> {
        let connect_error = |e: &dyn std::fmt::Display| BenchError::Connect(format!("{}: {e}", target.authority));
        let stream = TcpStream::connect(&target.authority).await.map_err(|e| connect_error(&e))?;
        stream.set_nodelay(true).map_err(|e| connect_error(&e))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| connect_error(&e))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection.
            let _ = connection.await;
        });
        Ok(HttpConnection { sender })
    }

    /// Whether the connection can no longer send.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and returns the response head; the body streams behind it.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }

    /// `GET target/path`, returning the status and the whole body.
    pub async fn get(&mut self, target: &HttpTarget, path: &str) -> Result<(StatusCode, Bytes), BenchError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(target.uri(path)?)
            .header(header::HOST, target.host())
            .body(Full::new(Bytes::new()))
            .map_err(|e| BenchError::InvalidArgs(e.to_string()))?;
        let response = self.send(request).await.map_err(|e| BenchError::Server(format!("GET {path}: {e}")))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| BenchError::Server(format!("GET {path}: {e}")))?;
        Ok((status, body.to_bytes()))
    }
}

/// An infer request prepared once: every part is a cheap clone.
#[derive(Debug, Clone)]
pub struct PreparedInfer {
    uri: Uri,
    host: HeaderValue,
    /// `Inference-Header-Content-Length` for a binary body; `None` for plain JSON.
    json_len: Option<HeaderValue>,
    body: Bytes,
}

impl PreparedInfer {
    /// Prepares `POST {prefix}/v2/models/{model}/infer` with `request` as the body.
    pub fn new(target: &HttpTarget, model: &str, request: &EncodedRequest) -> Result<PreparedInfer, BenchError> {
        Ok(PreparedInfer {
            uri: target.uri(&format!("/v2/models/{}/infer", encode_segment(model)))?,
            host: target.host(),
            json_len: request.json_len.map(HeaderValue::from),
            body: request.body.clone(),
        })
    }

    /// Length of the body, in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The request (hyper adds `Content-Length` from the body).
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        match &self.json_len {
            Some(json_len) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                headers.insert("inference-header-content-length", json_len.clone());
            }
            None => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        request
    }
}

/// A V2 infer client over one HTTP/1.1 connection, reconnecting when the connection fails.
/// It sends the prepared requests in turn.
#[derive(Debug)]
pub struct HttpInferClient {
    target: HttpTarget,
    requests: Arc<[PreparedInfer]>,
    next: usize,
    connection: Option<HttpConnection>,
}

impl HttpInferClient {
    /// A client that connects on its first request; `first` staggers clients through the
    /// requests, so they do not all send the same one.
    pub fn new(target: HttpTarget, requests: Arc<[PreparedInfer]>, first: usize) -> HttpInferClient {
        HttpInferClient { target, requests, next: first, connection: None }
    }

    /// Opens the connection now, so the first measured request does not pay for it.
    pub async fn connect(&mut self) -> Result<(), BenchError> {
        if self.connection.as_ref().is_none_or(HttpConnection::is_closed) {
            self.connection = Some(HttpConnection::connect(&self.target).await?);
        }
        Ok(())
    }

    async fn exchange(&mut self) -> InferOutcome {
        if let Err(e) = self.connect().await {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            return InferOutcome::failed("transport", e.to_string());
        }
        let Some(connection) = self.connection.as_mut() else {
            return InferOutcome::failed("transport", "not connected");
        };
        let Some(prepared) = self.requests.get(self.next % self.requests.len().max(1)) else {
            return InferOutcome::failed("client", "no request to send");
        };
        self.next = self.next.wrapping_add(1);
        let response = match connection.send(prepared.request()).await {
            Ok(r) => r,
            Err(e) => {
                self.connection = None;
                return InferOutcome::failed("transport", e.to_string());
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        if status == StatusCode::OK {
            // Read the response to its end without gathering it: frames are dropped as they come.
            while let Some(frame) = body.frame().await {
                if let Err(e) = frame {
                    self.connection = None;
                    return InferOutcome::failed("transport", e.to_string());
                }
            }
            return InferOutcome::Success;
        }
        let message = match body.collect().await {
            Ok(b) => {
                let b = b.to_bytes();
                String::from_utf8_lossy(&b[..b.len().min(ERROR_MESSAGE_LIMIT)]).into_owned()
            }
            Err(e) => {
                self.connection = None;
                e.to_string()
            }
        };
        InferOutcome::failed(status.as_str(), message)
    }
}

impl InferClient for HttpInferClient {
    async fn infer(&mut self) -> InferOutcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.connection = None;
                InferOutcome::failed("timeout", format!("no response within {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = |s: &str| HttpTarget::parse(s).unwrap();
        assert_eq!(t("localhost:8000"), HttpTarget { authority: "localhost:8000".into(), base_path: "".into() });
        assert_eq!(t("http://10.0.0.1:9/"), HttpTarget { authority: "10.0.0.1:9".into(), base_path: "".into() });
        assert_eq!(t("http://h/serving/x/"), HttpTarget { authority: "h:80".into(), base_path: "/serving/x".into() });
        assert_eq!(t("[::1]:8000").authority, "[::1]:8000");
        assert_eq!(t("[::1]").authority, "[::1]:80");
        assert!(HttpTarget::parse("https://h:1").is_err());
        assert!(HttpTarget::parse("http://").is_err());
        assert!(HttpTarget::parse("h:notaport").is_err());
        assert_eq!(t("h:1/p").uri("/v2/models/m").unwrap(), "/p/v2/models/m");
    }

    #[test]
    fn model_names_are_escaped() {
        assert_eq!(encode_segment("mlp4m_batched-v1.2~"), "mlp4m_batched-v1.2~");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn prepared_request_carries_the_binary_headers() {
        let target = HttpTarget::parse("h:1").unwrap();
        let encoded = EncodedRequest { body: Bytes::from_static(b"{\"inputs\":[]}\x01\x02"), json_len: Some(13) };
        let prepared = PreparedInfer::new(&target, "my model", &encoded).unwrap();
        let r = prepared.request();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/v2/models/my%20model/infer");
        assert_eq!(r.headers()["host"], "h:1");
        assert_eq!(r.headers()["inference-header-content-length"], "13");
        assert_eq!(r.headers()["content-type"], "application/octet-stream");

        let encoded = EncodedRequest { body: Bytes::from_static(b"{\"inputs\":[]}"), json_len: None };
        let r = PreparedInfer::new(&target, "m", &encoded).unwrap().request();
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("inference-header-content-length").is_none());
    }
}
