//! Cheap change detection for a model directory: a hash of the config file's bytes and, per
//! version directory, of every file's path, size and modification time. A reload keeps the
//! versions whose fingerprint did not change, and poll mode reloads only changed models.

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    path::Path,
    time::UNIX_EPOCH,
};

/// Deepest directory level walked inside a version directory.
const MAX_DEPTH: usize = 8;

/// Most files hashed per version directory; beyond it the rest are ignored (and a change
/// there goes unnoticed until the next explicit load).
const MAX_FILES: usize = 10_000;

/// The fingerprint of a model directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash of `config.pbtxt` (0 when absent), or of a config given in a load request.
    pub config: u64,
    /// Hash of each version directory's files.
    pub versions: BTreeMap<u64, u64>,
}

/// The hash of some bytes.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Fingerprints `model_dir`'s config file and the given versions.
pub fn fingerprint(model_dir: &Path, versions: &[u64]) -> Fingerprint {
    let config = std::fs::read(model_dir.join("config.pbtxt")).map(|b| hash_bytes(&b)).unwrap_or(0);
    let versions = versions.iter().map(|&v| (v, version_hash(&model_dir.join(v.to_string())))).collect();
    Fingerprint { config, versions }
}

fn version_hash(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut files = 0;
    walk(dir, dir, 0, &mut files, &mut h);
    h.finish()
}

fn walk(root: &Path, dir: &Path, depth: usize, files: &mut usize, h: &mut impl Hasher) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if *files >= MAX_FILES {
            return;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(root, &path, depth + 1, files, h);
            }
            continue;
        }
        *files += 1;
        path.strip_prefix(root).unwrap_or(&path).hash(h);
        meta.len().hash(h);
        let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        modified.hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_show_per_version() {
        let dir = std::env::temp_dir().join(format!("quiver-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::create_dir_all(dir.join("2/sub")).unwrap();
        std::fs::write(dir.join("1/model.onnx"), b"one").unwrap();
        std::fs::write(dir.join("2/sub/weights"), b"two").unwrap();
        let a = fingerprint(&dir, &[1, 2]);
        assert_eq!(a, fingerprint(&dir, &[1, 2]), "stable");
        assert_eq!(a.config, 0);
        std::fs::write(dir.join("2/sub/weights"), b"two, longer").unwrap();
        let b = fingerprint(&dir, &[1, 2]);
        assert_eq!(a.versions[&1], b.versions[&1]);
        assert_ne!(a.versions[&2], b.versions[&2]);
        std::fs::write(dir.join("config.pbtxt"), b"max_batch_size: 2").unwrap();
        assert_ne!(fingerprint(&dir, &[1]).config, 0);
        assert_eq!(fingerprint(&dir, &[3]).versions[&3], version_hash(&dir.join("missing")), "absent is just empty");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
