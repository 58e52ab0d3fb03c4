//! A small HTTP/1 client for the management API (hyper-util's legacy client; plain HTTP only:
//! the API listens on the local machine or behind the user's own TLS proxy).

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{CliError, ConnectionArgs};

/// Largest response body read (a list of many objects fits easily).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A reply: status, the server's warnings, the JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) warnings: Vec<String>,
    pub(crate) body: Value,
}

impl Reply {
    /// The body, or the server's Status as an error.
    pub(crate) fn ok(self) -> Result<Value, CliError> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        let message = self.body["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {}", self.status));
        let reason = self.body["reason"].as_str().unwrap_or("Unknown").to_string();
        Err(CliError::Api { code: self.status.as_u16(), reason, message })
    }
}

pub(crate) struct Client {
    base: String,
    token: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// Refuses names that would change the request path (the server checks the rest).
pub(crate) fn segment(s: &str) -> Result<&str, CliError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') || s == "." || s == ".." {
        return Err(CliError::Config(format!("{s:?} is not a valid name")));
    }
    Ok(s)
}

/// `299 - "text"` back to `text`.
fn parse_warning(v: &str) -> String {
    let rest = v.splitn(3, ' ').nth(2).unwrap_or(v).trim();
    let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else { return rest.to_string() };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Client {
    pub(crate) fn new(conn: &ConnectionArgs) -> Result<Client, CliError> {
        let server = conn.server_url()?;
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(CliError::Config(format!("server URL {server:?} must start with http:// (TLS is not supported by this client)")));
        }
        let token = conn.bearer_token()?;
        Ok(Client { base, token, http: HyperClient::builder(TokioExecutor::new()).build_http() })
    }

    pub(crate) async fn send(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Result<Reply, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method.clone()).uri(&url).header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| CliError::Config(format!("bad request URL {url}: {e}")))?;
        let call = async {
            let resp = self.http.request(req).await.map_err(|e| CliError::Http(format!("cannot reach {}: {e}", self.base)))?;
            let status = resp.status();
            let warnings = resp.headers().get_all(header::WARNING).iter().filter_map(|v| v.to_str().ok()).map(parse_warning).collect();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CliError::Http(format!("reading the reply to {method} {path}: {e}")))?
                .to_bytes();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| CliError::Http(format!("{method} {path}: HTTP {status}, the reply is not JSON: {e}")))?
            };
            Ok(Reply { status, warnings, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call).await.map_err(|_| CliError::Http(format!("{method} {url} timed out")))?
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Reply, CliError> {
        self.send(Method::GET, path, None, Vec::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_unquote() {
        assert_eq!(parse_warning("299 - \"a \\\"b\\\" c\""), "a \"b\" c");
        assert_eq!(parse_warning("299 - plain"), "plain");
        assert!(segment("a/b").is_err());
        assert!(segment("iris-1").is_ok());
    }
}
