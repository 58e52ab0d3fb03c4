//! Failures as Kubernetes `Status` objects (plus our `error` field), and JSON responses.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::store::StoreError;

/// A request failure on its way to becoming a `Status` response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `details.name` and `details.kind` (the plural, as Kubernetes fills it).
    pub(crate) details: Option<Box<(String, String)>>,
    pub(crate) causes: Vec<(String, String)>,
    /// For 405: the methods the path takes.
    pub(crate) allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None, causes: Vec::new(), allow: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn not_found_path() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
    }

    pub(crate) fn method_not_allowed(method: &http::Method, allow: &'static str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("method {method} is not allowed here (allowed: {allow})"),
        );
        e.allow = Some(allow);
        e
    }

    pub(crate) fn invalid(kind_group: &str, name: &str, plural: &str, causes: Vec<(String, String)>) -> ApiError {
        let list = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join(", ");
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("{kind_group} \"{name}\" is invalid: {list}"));
        e.details = Some(Box::new((name.to_string(), plural.to_string())));
        e.causes = causes;
        e
    }

    /// Maps a store failure for `resource` (`plural.group`) and `name`.
    pub(crate) fn from_store(err: StoreError, resource: &str, plural: &str, name: &str) -> ApiError {
        let (code, reason, message) = match &err {
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound", format!("{resource} \"{name}\" not found")),
            StoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists", format!("{resource} \"{name}\" already exists")),
            StoreError::Conflict { .. } => {
                (StatusCode::CONFLICT, "Conflict", format!("Operation cannot be fulfilled on {resource} \"{name}\": {err}"))
            }
            StoreError::Invalid { field, message } => {
                return ApiError::invalid(resource, name, plural, vec![(field.clone(), message.clone())]);
            }
            StoreError::Db(_) | StoreError::Corrupt(_) | StoreError::Task(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", err.to_string())
            }
        };
        let mut e = ApiError::new(code, reason, message);
        e.details = Some(Box::new((name.to_string(), plural.to_string())));
        e
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
            "error": self.message,
        });
        if self.details.is_some() || !self.causes.is_empty() {
            let (name, kind) = self.details.clone().map(|d| *d).unwrap_or_default();
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|(field, message)| json!({"field": field, "message": message, "reason": "FieldValueInvalid"}))
                .collect();
            status["details"] = json!({"name": name, "kind": kind, "causes": causes});
        }
        let mut resp = json_response(self.code, &status, &[]);
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// Most warnings one response carries, and the longest each may be.
const MAX_WARNINGS: usize = 50;
const MAX_WARNING_CHARS: usize = 1024;

/// `299 - "text"`, the Warning header Kubernetes sends for admission warnings.
fn warning_header(text: &str) -> Option<HeaderValue> {
    let mut quoted = String::with_capacity(text.len() + 8);
    quoted.push_str("299 - \"");
    for c in text.chars().take(MAX_WARNING_CHARS) {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.push(' '),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    HeaderValue::from_bytes(quoted.as_bytes()).ok()
}

pub(crate) fn json_response(code: StatusCode, body: &Value, warnings: &[String]) -> Response<Full<Bytes>> {
    // Serialising a Value cannot fail; an empty body would still be a well-formed reply.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = code;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for w in warnings.iter().take(MAX_WARNINGS) {
        if let Some(v) = warning_header(w) {
            headers.append(header::WARNING, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_header_quotes_and_strips_controls() {
        let v = warning_header("a \"b\" \\ c\nd é").unwrap();
        assert_eq!(v.as_bytes(), "299 - \"a \\\"b\\\" \\\\ c d é\"".as_bytes());
    }
}
