//! Local content: walking a directory, hashing files, the directory digest, progress reports.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Progress, StorageError};

/// Progress is reported at most once per this many bytes (and at every file's end), so a large
/// download does not call the callback per network chunk.
const REPORT_EVERY: u64 = 4 << 20;

/// Counts bytes and files and calls the progress callback now and then.
pub(crate) struct Tracker<'a> {
    progress: &'a (dyn Fn(Progress) + Send + Sync),
    state: Progress,
    last_reported: u64,
}

impl<'a> Tracker<'a> {
    pub(crate) fn new(progress: &'a (dyn Fn(Progress) + Send + Sync), total_bytes: Option<u64>, files_total: usize) -> Self {
        Tracker { progress, state: Progress { done_bytes: 0, total_bytes, files_done: 0, files_total }, last_reported: 0 }
    }

    pub(crate) fn add_bytes(&mut self, n: u64) {
        self.state.done_bytes += n;
        if self.state.done_bytes - self.last_reported >= REPORT_EVERY {
            self.report();
        }
    }

    pub(crate) fn file_done(&mut self) {
        self.state.files_done += 1;
        self.report();
    }

    fn report(&mut self) {
        self.last_reported = self.state.done_bytes;
        (self.progress)(self.state.clone());
    }
}

/// One file of a directory: its path relative to the directory (`/`-separated) and on disk.
pub(crate) struct LocalFile {
    pub(crate) relative: String,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
}

/// Directories nested deeper than this are refused (and symlink loops end here).
const MAX_DEPTH: usize = 64;

/// Every regular file under `dir` (following symlinks), sorted by relative path; at most
/// `max_files` of them.
pub(crate) fn walk(uri: &str, dir: &Path, max_files: usize) -> Result<Vec<LocalFile>, StorageError> {
    let unreadable = |path: &Path, reason: String| StorageError::Unreadable { uri: uri.to_string(), path: path.to_path_buf(), reason };
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new(), 0usize)];
    while let Some((current, prefix, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(unreadable(&current, format!("directories nested deeper than {MAX_DEPTH} levels")));
        }
        for entry in fs::read_dir(&current).map_err(|e| unreadable(&current, e.to_string()))? {
            let entry = entry.map_err(|e| unreadable(&current, e.to_string()))?;
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|_| unreadable(&path, "the file name is not UTF-8".into()))?;
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::metadata(&path).map_err(|e| unreadable(&path, e.to_string()))?;
            if meta.is_dir() {
                pending.push((path, relative, depth + 1));
            } else if meta.is_file() {
                if files.len() >= max_files {
                    return Err(StorageError::TooManyFiles { uri: uri.to_string(), limit: max_files });
                }
                files.push(LocalFile { relative, path, size: meta.len() });
            }
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

/// The sha256 of a file's bytes, lowercase hex. Reads through tokio so a large file does not
/// hold up the runtime's worker.
pub(crate) async fn hash_file(uri: &str, path: &Path, tracker: &mut Tracker<'_>) -> Result<String, StorageError> {
    let unreadable = |e: std::io::Error| StorageError::Unreadable { uri: uri.to_string(), path: path.to_path_buf(), reason: e.to_string() };
    let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await.map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        tracker.add_bytes(n as u64);
    }
    tracker.file_done();
    Ok(hex(&hasher.finalize()))
}

/// A directory's digest: the sha256 of its files' `relative path NUL file digest LF` lines,
/// sorted by relative path. Two trees with the same files and bytes have the same digest
/// wherever they live.
pub(crate) fn directory_digest<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = entries.into_iter().collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for (relative, digest) in sorted {
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update(digest.as_bytes());
        hasher.update([b'\n']);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_digest_is_order_independent() {
        let a = directory_digest([("b", "2"), ("a", "1")]);
        assert_eq!(a, directory_digest([("a", "1"), ("b", "2")]));
        assert_ne!(a, directory_digest([("a", "2"), ("b", "1")]));
        assert_eq!(a.len(), 64);
    }
}
