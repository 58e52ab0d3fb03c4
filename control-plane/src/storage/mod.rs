//! Model storage: fetching an InferenceService `storageUri` into a local, content-addressed
//! cache (as KServe's storage initializer downloads into `/mnt/models`), and telling what the
//! fetched content is and how the runtime can serve it.
//!
//! Schemes:
//! - a plain path or `file://<path>`: a model file or directory, used in place (canonicalized,
//!   never copied);
//! - `http://` and `https://`: one file, fetched with GET;
//! - `s3://<bucket>/<key>`: one object, or every object under the prefix as a directory tree.
//!   S3 is configured from the standard environment, like `AmazonS3Builder::from_env()`:
//!   `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_SESSION_TOKEN`, `AWS_REGION`, and `AWS_ALLOW_HTTP=true` for a plain-http endpoint
//!   (MinIO, moto, a local gateway).
//!
//! A URI may end in `#sha256=<hex>`: the content must have that digest. A file's digest is the
//! sha256 of its bytes; a directory's is the sha256 of its sorted `path NUL file-digest LF` lines.
//!
//! Remote content is streamed to a temp entry in the cache, hashed and counted while it arrives,
//! verified, then renamed into `<cache>/sha256/<digest>`. `<cache>/index.json` remembers each
//! remote's ETag / Last-Modified / size and the digest it had, so fetching an unchanged remote
//! again costs one HEAD (or LIST) and no download.

mod cache;
mod error;
mod inspect;
mod local;
mod remote;
pub(crate) mod uri;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use error::StorageError;
pub use inspect::{inspect, ModelLayout};

use cache::{Cache, IndexEntry};
use local::{directory_digest, hash_file, hex, walk, Tracker};
use remote::{Listing, Remote};
use uri::Source;

/// The default size cap of one fetch: 20 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;
/// The default cap on the files of one S3 prefix or local directory.
pub const DEFAULT_MAX_FILES: usize = 10_000;

/// Limits of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The most bytes one fetch may bring (all files of a prefix together).
    pub max_bytes: u64,
    /// The most files an S3 prefix or a local directory may hold.
    pub max_files: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { max_bytes: DEFAULT_MAX_BYTES, max_files: DEFAULT_MAX_FILES }
    }
}

/// Fetched content, on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file or directory: the local path itself, or the cache entry.
    pub path: PathBuf,
    /// sha256 hex of the content (see the module docs for directories).
    pub digest: String,
    /// Total bytes of the content.
    pub bytes: u64,
    /// Whether the content came from the cache without a download.
    pub from_cache: bool,
}

/// How far a fetch is (downloading, or hashing local content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done so far.
    pub done_bytes: u64,
    /// Bytes in all, when known before the transfer.
    pub total_bytes: Option<u64>,
    /// Files done so far.
    pub files_done: usize,
    /// Files in all.
    pub files_total: usize,
}

/// Fetches `uri` into `cache_root` with the default limits (see [`fetch_with`]).
pub async fn fetch(uri: &str, cache_root: &Path, progress: &(dyn Fn(Progress) + Send + Sync)) -> Result<Fetched, StorageError> {
    fetch_with(uri, cache_root, &FetchOptions::default(), progress).await
}

/// Fetches `uri` (see the module docs for the schemes) into `cache_root`, calling `progress`
/// now and then. Local content is hashed in place; remote content is downloaded unless the cache
/// holds it (by the URI's `#sha256=`, or by the index and an unchanged remote).
pub async fn fetch_with(
    uri: &str,
    cache_root: &Path,
    options: &FetchOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Fetched, StorageError> {
    let parsed = uri::parse(uri)?;
    let expected = parsed.expected_digest.as_deref();
    let remote = match &parsed.source {
        Source::Local(path) => return fetch_local(uri, path, expected, options, progress).await,
        Source::Http(url) => Remote::http(uri, url)?,
        Source::S3 { bucket, key } => Remote::s3(uri, bucket, key)?,
    };
    fetch_remote(uri, &remote, expected, cache_root, options, progress).await
}

fn check_digest(uri: &str, expected: Option<&str>, actual: &str) -> Result<(), StorageError> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StorageError::DigestMismatch { uri: uri.to_string(), expected: expected.to_string(), actual: actual.to_string() })
        }
        _ => Ok(()),
    }
}

async fn fetch_local(
    uri: &str,
    path: &Path,
    expected: Option<&str>,
    options: &FetchOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Fetched, StorageError> {
    let unreadable =
        |path: &Path, e: std::io::Error| StorageError::Unreadable { uri: uri.to_string(), path: path.to_path_buf(), reason: e.to_string() };
    let canonical = match std::fs::canonicalize(path) {
        Ok(canonical) => canonical,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound { uri: uri.to_string(), detail: format!("no file or directory at {}", path.display()) })
        }
        Err(e) => return Err(unreadable(path, e)),
    };
    let meta = std::fs::metadata(&canonical).map_err(|e| unreadable(&canonical, e))?;
    let too_large = |bytes| StorageError::TooLarge { uri: uri.to_string(), bytes, limit: options.max_bytes };
    let (digest, bytes) = if meta.is_file() {
        if meta.len() > options.max_bytes {
            return Err(too_large(meta.len()));
        }
        let mut tracker = Tracker::new(progress, Some(meta.len()), 1);
        (hash_file(uri, &canonical, &mut tracker).await?, meta.len())
    } else if meta.is_dir() {
        let files = walk(uri, &canonical, options.max_files)?;
        let bytes = files.iter().map(|f| f.size).fold(0u64, u64::saturating_add);
        if bytes > options.max_bytes {
            return Err(too_large(bytes));
        }
        let mut tracker = Tracker::new(progress, Some(bytes), files.len());
        let mut digests = Vec::with_capacity(files.len());
        for file in &files {
            digests.push(hash_file(uri, &file.path, &mut tracker).await?);
        }
        (directory_digest(files.iter().map(|f| f.relative.as_str()).zip(digests.iter().map(String::as_str))), bytes)
    } else {
        return Err(unreadable(&canonical, std::io::Error::other("neither a regular file nor a directory")));
    };
    check_digest(uri, expected, &digest)?;
    Ok(Fetched { path: canonical, digest, bytes, from_cache: false })
}

/// The remote's version as the listing describes it, when it describes one that can be
/// trusted to change with the content (an ETag or a Last-Modified).
fn validator(listing: &Listing) -> Option<String> {
    match listing {
        Listing::Object(None) => None,
        Listing::Object(Some(meta)) => {
            let modified = meta.last_modified.timestamp_nanos_opt().unwrap_or_default();
            (meta.e_tag.is_some() || modified != 0)
                .then(|| format!("object etag={} modified={modified} size={}", meta.e_tag.as_deref().unwrap_or("-"), meta.size))
        }
        Listing::Prefix(objects) => {
            let mut hasher = Sha256::new();
            for (relative, meta) in objects {
                let modified = meta.last_modified.timestamp_nanos_opt().unwrap_or_default();
                hasher.update(format!("{relative}\0{}\0{modified}\0{}\n", meta.e_tag.as_deref().unwrap_or("-"), meta.size));
            }
            Some(format!("prefix {}", hex(&hasher.finalize())))
        }
    }
}

async fn fetch_remote(
    uri: &str,
    remote: &Remote,
    expected: Option<&str>,
    cache_root: &Path,
    options: &FetchOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Fetched, StorageError> {
    let cache = Cache::new(cache_root)?;
    if let Some(expected) = expected {
        let entry = cache.entry(expected);
        if entry.exists() {
            let bytes = content_bytes(uri, &entry, options)?;
            return Ok(Fetched { path: entry, digest: expected.to_string(), bytes, from_cache: true });
        }
    }
    let listing = remote.list(uri, options.max_files).await?;
    let total = match &listing {
        Listing::Object(meta) => meta.as_ref().map(|m| m.size),
        Listing::Prefix(objects) => Some(objects.iter().map(|(_, m)| m.size).fold(0u64, u64::saturating_add)),
    };
    if let Some(total) = total.filter(|&t| t > options.max_bytes) {
        return Err(StorageError::TooLarge { uri: uri.to_string(), bytes: total, limit: options.max_bytes });
    }
    let validator = validator(&listing);
    if let Some(validator) = &validator {
        if let Some(hit) = cache.lookup(&remote.index_key).filter(|e| &e.validator == validator) {
            check_digest(uri, expected, &hit.digest)?;
            return Ok(Fetched { path: cache.entry(&hit.digest), digest: hit.digest, bytes: hit.bytes, from_cache: true });
        }
    }
    let temp = cache.temp();
    let (digest, bytes) = match &listing {
        Listing::Object(_) => {
            let mut tracker = Tracker::new(progress, total, 1);
            remote.download(uri, None, temp.path(), 0, options, &mut tracker).await?
        }
        Listing::Prefix(objects) => {
            let mut tracker = Tracker::new(progress, total, objects.len());
            let mut digests = Vec::with_capacity(objects.len());
            let mut used = 0u64;
            for (relative, meta) in objects {
                let dest = temp.path().join(relative);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| cache::cache_error(parent, e))?;
                }
                let (digest, bytes) = remote.download(uri, Some((relative, meta)), &dest, used, options, &mut tracker).await?;
                used += bytes;
                digests.push(digest);
            }
            (directory_digest(objects.iter().map(|(r, _)| r.as_str()).zip(digests.iter().map(String::as_str))), used)
        }
    };
    check_digest(uri, expected, &digest)?;
    let path = cache.install(temp, &digest)?;
    if let Some(validator) = validator {
        if let Err(e) = cache.record(&remote.index_key, IndexEntry::new(validator, digest.clone(), bytes)) {
            tracing::warn!(uri, "could not record the download in the model cache index: {e}");
        }
    }
    Ok(Fetched { path, digest, bytes, from_cache: false })
}

/// The size of a cache entry (a file, or a directory's files).
fn content_bytes(uri: &str, path: &Path, options: &FetchOptions) -> Result<u64, StorageError> {
    let meta = std::fs::metadata(path).map_err(|e| cache::cache_error(path, e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    Ok(walk(uri, path, options.max_files)?.iter().map(|f| f.size).fold(0u64, u64::saturating_add))
}
