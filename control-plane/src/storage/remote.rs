//! http(s) and S3 through one `object_store` client: what is there (HEAD / LIST), and streaming
//! downloads into the cache, hashed and counted on the way.

use std::{collections::HashSet, path::Path as FsPath, sync::Arc, time::Duration};

use futures_util::StreamExt;
use object_store::{
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    http::HttpBuilder,
    path::Path,
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{
    local::{hex, Tracker},
    FetchOptions, StorageError,
};

/// A store and the object key or prefix inside it.
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    location: Path,
    is_s3: bool,
    /// Identifies the remote in the cache index: the URL, or the S3 endpoint, bucket and key.
    pub(crate) index_key: String,
}

/// What the remote holds now.
pub(crate) enum Listing {
    /// One object; `meta` is `None` when the server refused HEAD (the GET will tell).
    Object(Option<ObjectMeta>),
    /// Every object under a prefix: (relative path, meta), sorted by relative path.
    Prefix(Vec<(String, ObjectMeta)>),
}

fn client_options() -> ClientOptions {
    // object_store's default 30 s limit covers the whole response body, which a large model
    // outlasts; a stalled connection is caught by the read timeout instead.
    ClientOptions::new().with_timeout_disabled().with_connect_timeout(Duration::from_secs(10)).with_read_timeout(Duration::from_secs(120))
}

fn retry_config() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(60), ..RetryConfig::default() }
}

impl Remote {
    /// One http(s) file. The URL is used as the store's base with an empty object path, so a
    /// query string (a signed URL) is kept as is.
    pub(crate) fn http(uri: &str, url: &str) -> Result<Remote, StorageError> {
        let store = HttpBuilder::new()
            .with_url(url)
            .with_client_options(client_options().with_allow_http(true))
            .with_retry(retry_config())
            .build()
            .map_err(|e| StorageError::InvalidUri { uri: uri.to_string(), reason: e.to_string() })?;
        Ok(Remote { store: Arc::new(store), location: Path::default(), is_s3: false, index_key: format!("http {url}") })
    }

    /// `s3://bucket/key`, configured like `AmazonS3Builder::from_env()`: every `AWS_*`
    /// variable object_store knows (AWS_ENDPOINT_URL or AWS_ENDPOINT, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ALLOW_HTTP, ...) applied over
    /// Quiver's client defaults (no whole-request timeout, a read timeout instead).
    pub(crate) fn s3(uri: &str, bucket: &str, key: &str) -> Result<Remote, StorageError> {
        let mut builder = AmazonS3Builder::new().with_client_options(client_options()).with_retry(retry_config());
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
            if name.starts_with("AWS_") {
                if let Ok(config_key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(config_key, value);
                }
            }
        }
        let builder = builder.with_bucket_name(bucket);
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_else(|| "aws".to_string());
        let store = builder.build().map_err(|e| StorageError::S3 { uri: uri.to_string(), reason: e.to_string() })?;
        let location = Path::parse(key).map_err(|e| StorageError::InvalidUri { uri: uri.to_string(), reason: e.to_string() })?;
        Ok(Remote { store: Arc::new(store), location, is_s3: true, index_key: format!("s3 {endpoint} {bucket}/{key}") })
    }

    /// HEAD the object; for S3, a key that is no object is listed as a prefix (as KServe's
    /// storage initializer does). At most `max_files` objects are listed.
    pub(crate) async fn list(&self, uri: &str, max_files: usize) -> Result<Listing, StorageError> {
        if !self.is_s3 {
            return Ok(Listing::Object(self.store.head(&self.location).await.ok()));
        }
        if self.location.parts_count() > 0 {
            match self.store.head(&self.location).await {
                Ok(meta) => return Ok(Listing::Object(Some(meta))),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(uri, e)),
            }
        }
        let mut stream = self.store.list(Some(&self.location));
        let mut objects = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.error(uri, e))?;
            if objects.len() >= max_files {
                return Err(StorageError::TooManyFiles { uri: uri.to_string(), limit: max_files });
            }
            let relative = relative_path(uri, &self.location, &meta.location)?;
            objects.push((relative, meta));
        }
        // Zero-byte "folder" markers some tools create are no files of the model.
        let parents: HashSet<String> =
            objects.iter().flat_map(|(rel, _)| rel.match_indices('/').map(|(i, _)| rel[..i].to_string()).collect::<Vec<_>>()).collect();
        objects.retain(|(rel, meta)| !(meta.size == 0 && parents.contains(rel)));
        if objects.is_empty() {
            return Err(StorageError::NotFound {
                uri: uri.to_string(),
                detail: "no object with this key and none under this prefix".into(),
            });
        }
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Listing::Prefix(objects))
    }

    /// Streams `object` (from the listing; `None`: the URI's object itself) to `dest`, checking
    /// the byte count against the object's size (and the listed size) and that `used + bytes`
    /// stays within `options.max_bytes`. Returns (sha256 hex, bytes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn download(
        &self,
        uri: &str,
        object: Option<(&str, &ObjectMeta)>,
        dest: &FsPath,
        used: u64,
        options: &FetchOptions,
        tracker: &mut Tracker<'_>,
    ) -> Result<(String, u64), StorageError> {
        let (location, label, expected_size) = match object {
            Some((relative, meta)) => (&meta.location, relative.to_string(), Some(meta.size)),
            None => (&self.location, uri.rsplit('/').next().unwrap_or(uri).to_string(), None),
        };
        let result = self.store.get(location).await.map_err(|e| self.error(uri, e))?;
        let size = result.meta.size;
        if let Some(expected) = expected_size.filter(|&e| e != size) {
            return Err(StorageError::SizeMismatch { uri: uri.to_string(), file: label, expected, actual: size });
        }
        let too_large = |bytes| StorageError::TooLarge { uri: uri.to_string(), bytes, limit: options.max_bytes };
        if used.saturating_add(size) > options.max_bytes {
            return Err(too_large(used.saturating_add(size)));
        }
        let cache_error = |e| super::cache::cache_error(dest, e);
        let mut file = tokio::fs::File::create(dest).await.map_err(cache_error)?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(uri, e))?;
            received += chunk.len() as u64;
            if received > size {
                return Err(StorageError::SizeMismatch { uri: uri.to_string(), file: label, expected: size, actual: received });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(cache_error)?;
            tracker.add_bytes(chunk.len() as u64);
        }
        if received != size {
            return Err(StorageError::SizeMismatch { uri: uri.to_string(), file: label, expected: size, actual: received });
        }
        file.sync_all().await.map_err(cache_error)?;
        tracker.file_done();
        Ok((hex(&hasher.finalize()), received))
    }

    fn error(&self, uri: &str, e: object_store::Error) -> StorageError {
        let uri = uri.to_string();
        if let object_store::Error::NotFound { .. } = e {
            return StorageError::NotFound { uri, detail: e.to_string() };
        }
        let reason = error_chain(&e);
        if self.is_s3 {
            return StorageError::S3 { uri, reason };
        }
        match http_status(&reason) {
            Some(status) => StorageError::HttpStatus { uri, status, reason },
            None => StorageError::Transfer { uri, reason },
        }
    }
}

/// The relative path of `object` under `prefix`; refuses segments a file system would
/// interpret (`.`, `..`, empty) so an object key cannot write outside its directory.
fn relative_path(uri: &str, prefix: &Path, object: &Path) -> Result<String, StorageError> {
    let parts: Vec<String> = match object.prefix_match(prefix) {
        Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
        None => Vec::new(),
    };
    let valid = !parts.is_empty() && parts.iter().all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains(['\\', '\0']));
    if !valid {
        return Err(StorageError::S3 {
            uri: uri.to_string(),
            reason: format!("object key '{object}' is not a plain relative path under the prefix"),
        });
    }
    Ok(parts.join("/"))
}

/// The error and its sources, joined, without repeating a message its cause already says.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The HTTP status in an object_store error message. object_store does not export its retry
/// error type (which carries the status), only its text: "...non-2xx status code: 404 Not Found...".
fn http_status(message: &str) -> Option<u16> {
    let at = message.find("status code: ")? + "status code: ".len();
    message.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_message() {
        assert_eq!(http_status("Error performing GET x - Server returned non-2xx status code: 503 Service Unavailable: "), Some(503));
        assert_eq!(http_status("connection refused"), None);
    }

    #[test]
    fn relative_paths_stay_inside() {
        let prefix = Path::parse("models/m").unwrap();
        assert_eq!(relative_path("u", &prefix, &Path::parse("models/m/1/model.onnx").unwrap()).unwrap(), "1/model.onnx");
        assert!(relative_path("u", &prefix, &prefix).is_err());
        // Whatever an object key holds, the relative path never leaves the download directory.
        let safe = |r: Result<String, StorageError>| {
            r.map_or(true, |r| r.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains(['\\', '\0'])))
        };
        for parts in
            [vec!["models", "m", "..", "x"], vec!["models", "m", ".", "x"], vec!["models", "m", "a\\..\\b"], vec!["models", "m", "a\0b"]]
        {
            assert!(safe(relative_path("u", &prefix, &Path::from_iter(parts.clone()))), "{parts:?}");
        }
        for key in ["models/m/../x", "models/m/%2e%2e/x", "models/m/a\\b", "models/m//x"] {
            assert!(safe(relative_path("u", &prefix, &Path::from(key))), "{key}");
        }
    }
}
