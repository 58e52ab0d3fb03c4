//! Parsing a `storageUri` into where the content lives and the digest it must have.

use std::path::PathBuf;

use super::StorageError;

/// Where a `storageUri` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A local file or directory, used in place.
    Local(PathBuf),
    /// One file over http(s); the URL without the `#sha256=` fragment.
    Http(String),
    /// One S3 object, or every object under a prefix. `key` has no leading or trailing `/`; empty
    /// means the whole bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key or prefix.
        key: String,
    },
}

/// A parsed `storageUri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageUri {
    /// Where the content lives.
    pub(crate) source: Source,
    /// The lowercase hex sha256 from a trailing `#sha256=<hex>`, if any.
    pub(crate) expected_digest: Option<String>,
}

const DIGEST_FRAGMENT: &str = "#sha256=";

/// Parses `uri`: a plain path, `file://`, `http://`, `https://` or `s3://bucket/key`, with an
/// optional trailing `#sha256=<64 hex digits>`.
pub(crate) fn parse(uri: &str) -> Result<StorageUri, StorageError> {
    let invalid = |reason: &str| StorageError::InvalidUri { uri: uri.to_string(), reason: reason.to_string() };
    let (location, expected_digest) = match uri.rfind(DIGEST_FRAGMENT) {
        Some(at) => {
            let hex = &uri[at + DIGEST_FRAGMENT.len()..];
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("the #sha256= fragment must be 64 hex digits"));
            }
            (&uri[..at], Some(hex.to_ascii_lowercase()))
        }
        None => (uri, None),
    };
    if location.trim().is_empty() {
        return Err(invalid("empty location"));
    }
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(StorageUri { source: Source::Local(PathBuf::from(location)), expected_digest });
    };
    let source = match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            if rest.is_empty() {
                return Err(invalid("file:// needs a path"));
            }
            Source::Local(PathBuf::from(rest))
        }
        "http" | "https" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if host.is_empty() {
                return Err(invalid("the URL has no host"));
            }
            if rest.contains('#') {
                return Err(invalid("only a #sha256=<hex> fragment is allowed"));
            }
            Source::Http(location.to_string())
        }
        "s3" => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("s3:// needs a bucket: s3://<bucket>/<key or prefix>"));
            }
            if rest.contains(['?', '#']) {
                return Err(invalid("s3:// URIs take no query or fragment other than #sha256=<hex>"));
            }
            let key = key.trim_matches('/');
            if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") && !key.is_empty() {
                return Err(invalid("the S3 key has an empty, '.' or '..' segment"));
            }
            Source::S3 { bucket: bucket.to_string(), key: key.to_string() }
        }
        other => return Err(StorageError::UnsupportedScheme { uri: uri.to_string(), scheme: other.to_string() }),
    };
    Ok(StorageUri { source, expected_digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn schemes() {
        assert_eq!(parse("/models/m.onnx").unwrap().source, Source::Local("/models/m.onnx".into()));
        assert_eq!(parse("file:///models/m").unwrap().source, Source::Local("/models/m".into()));
        assert_eq!(parse("https://h/a/m.onnx?x=1").unwrap().source, Source::Http("https://h/a/m.onnx?x=1".into()));
        assert_eq!(parse("s3://b/p/q/").unwrap().source, Source::S3 { bucket: "b".into(), key: "p/q".into() });
        assert_eq!(parse("s3://b").unwrap().source, Source::S3 { bucket: "b".into(), key: String::new() });
        let with_digest = parse(&format!("s3://b/k#sha256={HEX}")).unwrap();
        assert_eq!(with_digest.expected_digest.as_deref(), Some(HEX.to_ascii_lowercase().as_str()));
        assert_eq!(with_digest.source, Source::S3 { bucket: "b".into(), key: "k".into() });
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(parse("gs://b/k"), Err(StorageError::UnsupportedScheme { scheme, .. }) if scheme == "gs"));
        assert!(parse("").unwrap_err().to_string().contains("empty"));
        assert!(parse("s3:///k").unwrap_err().to_string().contains("bucket"));
        assert!(parse("s3://b/a/../k").unwrap_err().to_string().contains(".."));
        assert!(parse("http:///x").unwrap_err().to_string().contains("host"));
        assert!(parse("http://h/x#sha256=abc").unwrap_err().to_string().contains("64 hex"));
        assert!(parse("http://h/x#frag").unwrap_err().to_string().contains("fragment"));
    }
}
