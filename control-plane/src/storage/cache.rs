//! The content-addressed model cache: `<root>/sha256/<digest>` (a file, or a directory tree),
//! temp entries under `<root>/tmp/`, and `<root>/index.json` mapping a remote's identity to the
//! digest it had.
//!
//! Entries appear only by an atomic rename of a complete, verified temp file or directory, so an
//! interrupted download leaves at most a temp entry, which nothing reads.

use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::StorageError;

/// The index keeps at most this many remotes; the least recently written go first.
const MAX_INDEX_ENTRIES: usize = 4096;
/// An index file larger than this is ignored (it is a cache; a rebuild costs only downloads).
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// A temp entry untouched for this long belongs to a download that died.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// Serializes this process's index read-modify-writes; across processes the last writer wins,
/// which can only cost a re-download.
static INDEX_LOCK: Mutex<()> = Mutex::new(());
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What the index remembers about one remote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The remote's version as its server described it (ETag, Last-Modified, sizes).
    pub(crate) validator: String,
    /// The digest of the content downloaded for that version.
    pub(crate) digest: String,
    /// Its size in bytes.
    pub(crate) bytes: u64,
    /// Write order, for eviction.
    #[serde(default)]
    seq: u64,
}

impl IndexEntry {
    pub(crate) fn new(validator: String, digest: String, bytes: u64) -> Self {
        IndexEntry { validator, digest, bytes, seq: 0 }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: BTreeMap<String, IndexEntry>,
}

/// The cache at one root.
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    pub(crate) fn new(root: &Path) -> Result<Cache, StorageError> {
        let cache = Cache { root: root.to_path_buf() };
        for dir in [cache.root.join("sha256"), cache.root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, e))?;
        }
        cache.remove_stale_temps();
        Ok(cache)
    }

    /// Removes temp entries a killed process left behind. Only old ones: a younger one may be a
    /// download in progress in another process.
    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for entry in entries.flatten() {
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            if modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age > STALE_TEMP_AGE) {
                remove_path(&entry.path());
            }
        }
    }

    /// Where the content with `digest` lives (whether or not it is there).
    pub(crate) fn entry(&self, digest: &str) -> PathBuf {
        self.root.join("sha256").join(digest)
    }

    /// A fresh temp path (nothing created) that is removed when the guard drops, unless installed.
    pub(crate) fn temp(&self) -> TempEntry {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        TempEntry { path: Some(self.root.join("tmp").join(format!("{}-{n}-{nanos}", std::process::id()))) }
    }

    /// Moves a complete temp entry to `sha256/<digest>`. When that entry already exists (the same
    /// content fetched before, or concurrently), the existing one is kept.
    pub(crate) fn install(&self, mut temp: TempEntry, digest: &str) -> Result<PathBuf, StorageError> {
        let target = self.entry(digest);
        let Some(source) = temp.path.take() else { return Ok(target) };
        if target.exists() {
            remove_path(&source);
            return Ok(target);
        }
        match fs::rename(&source, &target) {
            Ok(()) => Ok(target),
            Err(_) if target.exists() => {
                remove_path(&source);
                Ok(target)
            }
            Err(e) => {
                remove_path(&source);
                Err(cache_error(&target, e))
            }
        }
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Index {
        let path = self.index_path();
        let Ok(file) = fs::File::open(&path) else { return Index::default() };
        let mut text = String::new();
        if file.take(MAX_INDEX_BYTES + 1).read_to_string(&mut text).is_err() || text.len() as u64 > MAX_INDEX_BYTES {
            tracing::warn!(path = %path.display(), "model cache index unreadable or too large; starting a new one");
            return Index::default();
        }
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), "model cache index is corrupt ({e}); starting a new one");
            Index::default()
        })
    }

    /// The entry recorded for `key`, if its content is still in the cache.
    pub(crate) fn lookup(&self, key: &str) -> Option<IndexEntry> {
        let _guard = INDEX_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = self.read_index().entries.remove(key)?;
        self.entry(&entry.digest).exists().then_some(entry)
    }

    /// Records `entry` for `key` (temp file + rename, so readers never see half an index).
    pub(crate) fn record(&self, key: &str, mut entry: IndexEntry) -> Result<(), StorageError> {
        let _guard = INDEX_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut index = self.read_index();
        entry.seq = index.entries.values().map(|e| e.seq).max().unwrap_or(0) + 1;
        index.entries.insert(key.to_string(), entry);
        while index.entries.len() > MAX_INDEX_ENTRIES {
            let Some(oldest) = index.entries.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| k.clone()) else { break };
            index.entries.remove(&oldest);
        }
        let text =
            serde_json::to_string_pretty(&index).map_err(|e| StorageError::Cache { path: self.index_path(), reason: e.to_string() })?;
        let temp = self.temp();
        let temp_path = temp.path().to_path_buf();
        fs::write(&temp_path, text).map_err(|e| cache_error(&temp_path, e))?;
        let index_path = self.index_path();
        fs::rename(&temp_path, &index_path).map_err(|e| cache_error(&index_path, e))?;
        Ok(())
    }
}

/// A temp file or directory in the cache, removed on drop unless installed.
pub(crate) struct TempEntry {
    path: Option<PathBuf>,
}

impl TempEntry {
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_path(&path);
        }
    }
}

fn remove_path(path: &Path) {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "could not remove a model cache temp entry: {e}");
        }
    }
}

pub(crate) fn cache_error(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Cache { path: path.to_path_buf(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_temp_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path()).unwrap();
        assert!(cache.lookup("k").is_none());
        let temp = cache.temp();
        fs::write(temp.path(), b"x").unwrap();
        let installed = cache.install(temp, "d1").unwrap();
        assert_eq!(fs::read(&installed).unwrap(), b"x");
        cache.record("k", IndexEntry::new("v".into(), "d1".into(), 1)).unwrap();
        assert_eq!(cache.lookup("k").unwrap().digest, "d1");
        let dropped = cache.temp();
        fs::write(dropped.path(), b"partial").unwrap();
        let dropped_path = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!dropped_path.exists());
        fs::remove_file(&installed).unwrap();
        assert!(cache.lookup("k").is_none(), "an index entry whose content is gone is no hit");
        fs::write(dir.path().join("index.json"), b"{not json").unwrap();
        assert!(cache.lookup("k").is_none());

        let stale = dir.path().join("tmp/left-by-a-killed-process");
        let fresh = dir.path().join("tmp/in-progress");
        for path in [&stale, &fresh] {
            fs::write(path, b"partial").unwrap();
        }
        let old = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        Cache::new(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
    }
}
