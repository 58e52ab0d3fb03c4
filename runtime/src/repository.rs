//! Reading a Triton-layout model repository: `<repo>/<model>/config.pbtxt` (optional) and
//! `<repo>/<model>/<version>/<model file>`, with integer version directories.

use std::{
    fs,
    io::Read,
    path::{Component, Path, PathBuf},
};

use quiver_core::{
    config,
    proto::{model_version_policy::PolicyChoice, ModelVersionPolicy},
    ModelConfig,
};
use thiserror::Error;

/// Why a repository or one of its models could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RepositoryError {
    /// A directory or file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// `config.pbtxt` is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        source: config::ConfigError,
    },
    /// A path in the model resolves outside the repository, or a name in its config is not a
    /// plain relative path.
    #[error("{path}: {message}")]
    Escape {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        message: String,
    },
    /// The model directory has no loadable version.
    #[error("model '{0}' has no version directory to load (expected <model>/<integer>/)")]
    NoVersions(String),
}

fn io_error(path: &Path, e: std::io::Error) -> RepositoryError {
    RepositoryError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Largest `config.pbtxt` read (Triton's own configs are a few kilobytes).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Deepest directory level inside a model directory checked for symlinks.
const MAX_SCAN_DEPTH: usize = 8;
/// Most entries of a model directory checked for symlinks.
const MAX_SCAN_ENTRIES: usize = 10_000;

/// A file name a config gives (`default_model_filename`, a warmup `input_data_file`): it must be
/// a relative path of plain names, so it names a file inside the directory it is joined to.
pub fn relative_file(name: &str) -> Result<&Path, String> {
    let path = Path::new(name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_))) && path.components().next().is_some();
    if !plain || name.contains(['\\', '\0']) {
        return Err(format!(
            "'{}' must be a relative file name inside the model directory (no '..', no absolute path)",
            name.escape_debug()
        ));
    }
    Ok(path)
}

/// Refuses a model whose directory, or anything in it, resolves outside `root` (the
/// canonical repository): a symlinked model directory, version directory or file that points
/// elsewhere. Symlinks that stay inside the repository are followed.
fn check_contained(root: &Path, dir: &Path) -> Result<(), RepositoryError> {
    let escape = |path: &Path| RepositoryError::Escape {
        path: path.to_path_buf(),
        message: "resolves outside the model repository (symlinks may only point inside it)".into(),
    };
    let canonical = fs::canonicalize(dir).map_err(|e| io_error(dir, e))?;
    if !canonical.starts_with(root) {
        return Err(escape(dir));
    }
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((current, depth)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_SCAN_ENTRIES {
                return Err(RepositoryError::Escape {
                    path: dir.to_path_buf(),
                    message: format!("holds more than {MAX_SCAN_ENTRIES} files and directories"),
                });
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_symlink() {
                // A dangling link names nothing a load could read.
                if fs::canonicalize(&path).is_ok_and(|target| !target.starts_with(root)) {
                    return Err(escape(&path));
                }
            } else if kind.is_dir() && depth < MAX_SCAN_DEPTH {
                pending.push((path, depth + 1));
            }
        }
    }
    Ok(())
}

/// The names of the models in a repository: its sub-directories, sorted, hidden ones skipped.
pub fn model_names(repository: &Path) -> Result<Vec<String>, RepositoryError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(repository).map_err(|e| io_error(repository, e))? {
        let entry = entry.map_err(|e| io_error(repository, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A model directory as found on disk.
#[derive(Debug, Clone)]
pub struct ModelDirectory {
    /// The model's name (its directory name).
    pub name: String,
    /// The directory.
    pub path: PathBuf,
    /// The parsed `config.pbtxt`, or the empty config when there is none (auto-complete fills it).
    pub config: ModelConfig,
    /// Every integer version directory present, ascending.
    pub available_versions: Vec<u64>,
}

impl ModelDirectory {
    /// Reads `<repository>/<name>`. Nothing in it may resolve outside the repository.
    pub fn read(repository: &Path, name: &str) -> Result<ModelDirectory, RepositoryError> {
        let path = repository.join(name);
        let root = fs::canonicalize(repository).map_err(|e| io_error(repository, e))?;
        check_contained(&root, &path)?;
        let config_path = path.join("config.pbtxt");
        let config = match read_config(&config_path) {
            Ok(text) => config::parse_pbtxt(&text).map_err(|source| RepositoryError::Config { path: config_path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ModelConfig::default(),
            Err(e) => return Err(io_error(&config_path, e)),
        };
        let mut available_versions = Vec::new();
        for entry in fs::read_dir(&path).map_err(|e| io_error(&path, e))? {
            let entry = entry.map_err(|e| io_error(&path, e))?;
            let file_name = entry.file_name();
            let Some(version) = file_name.to_str().and_then(version_number) else { continue };
            if entry.path().is_dir() {
                available_versions.push(version);
            }
        }
        available_versions.sort_unstable();
        Ok(ModelDirectory { name: name.to_string(), path, config, available_versions })
    }

    /// The versions the config's `version_policy` selects, ascending.
    pub fn selected_versions(&self) -> Result<Vec<u64>, RepositoryError> {
        let selected = select_versions(self.config.version_policy.as_ref(), &self.available_versions);
        if selected.is_empty() {
            return Err(RepositoryError::NoVersions(self.name.clone()));
        }
        Ok(selected)
    }
}

/// Reads a `config.pbtxt`: a regular file of at most [`MAX_CONFIG_BYTES`].
fn read_config(path: &Path) -> std::io::Result<String> {
    // Checked before opening: opening a FIFO would block the loader.
    if !fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(text)
}

/// Applies Triton's version policy to the versions present: `latest { num_versions: n }`
/// (default n = 1), `all`, or `specific { versions }` (those present).
pub fn select_versions(policy: Option<&ModelVersionPolicy>, available: &[u64]) -> Vec<u64> {
    match policy.and_then(|p| p.policy_choice.as_ref()) {
        None => available.iter().rev().take(1).copied().collect(),
        Some(PolicyChoice::Latest(latest)) => {
            let n = latest.num_versions.max(1) as usize;
            let mut chosen: Vec<u64> = available.iter().rev().take(n).copied().collect();
            chosen.reverse();
            chosen
        }
        Some(PolicyChoice::All(_)) => available.to_vec(),
        Some(PolicyChoice::Specific(specific)) => {
            available.iter().copied().filter(|v| specific.versions.iter().any(|&s| u64::try_from(s).ok() == Some(*v))).collect()
        }
    }
}

/// The version a directory name stands for, as Triton reads them: decimal digits not starting
/// with 0. Other names (`01`, `0`, `+1`, `v1`) are not versions and are passed over, so a
/// directory is always found again under the version it was read as.
pub fn version_number(name: &str) -> Option<u64> {
    if name.is_empty() || name.starts_with('0') || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_core::proto::model_version_policy::{All, Latest, Specific};

    fn policy(choice: PolicyChoice) -> ModelVersionPolicy {
        ModelVersionPolicy { policy_choice: Some(choice) }
    }

    #[test]
    fn version_policies() {
        let available = [1, 2, 5, 10];
        assert_eq!(select_versions(None, &available), vec![10]);
        assert_eq!(select_versions(Some(&policy(PolicyChoice::Latest(Latest { num_versions: 2 }))), &available), vec![5, 10]);
        assert_eq!(select_versions(Some(&policy(PolicyChoice::All(All {}))), &available), vec![1, 2, 5, 10]);
        assert_eq!(select_versions(Some(&policy(PolicyChoice::Specific(Specific { versions: vec![2, 3, 10] }))), &available), vec![2, 10]);
        assert!(select_versions(None, &[]).is_empty());
    }

    #[test]
    fn reads_a_model_directory() {
        let dir = std::env::temp_dir().join(format!("quiver-repo-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("m/1")).unwrap();
        fs::create_dir_all(dir.join("m/3")).unwrap();
        fs::create_dir_all(dir.join("m/notaversion")).unwrap();
        // Not versions to Triton: a leading zero, a sign, zero itself.
        for ignored in ["01", "007", "0", "+2", "-2", " 4"] {
            fs::create_dir_all(dir.join("m").join(ignored)).unwrap();
        }
        fs::create_dir_all(dir.join(".hidden")).unwrap();
        fs::write(dir.join("m/config.pbtxt"), "max_batch_size: 4\nversion_policy: { all {} }").unwrap();
        fs::write(dir.join("README"), "not a model").unwrap();
        assert_eq!(model_names(&dir).unwrap(), vec!["m".to_string()]);
        let m = ModelDirectory::read(&dir, "m").unwrap();
        assert_eq!(m.available_versions, vec![1, 3]);
        assert_eq!(m.selected_versions().unwrap(), vec![1, 3]);
        assert_eq!(m.config.max_batch_size, 4);
        fs::write(dir.join("m/config.pbtxt"), "max_batch_size: oops").unwrap();
        assert!(matches!(ModelDirectory::read(&dir, "m"), Err(RepositoryError::Config { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_file_names_stay_inside() {
        assert_eq!(relative_file("model.onnx").unwrap(), Path::new("model.onnx"));
        assert!(relative_file("sub/model.onnx").is_ok());
        for bad in ["", "..", "../x", "/etc/passwd", "a/../../b", "./x", "a\\..\\b", "a\0b"] {
            assert!(relative_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nothing_in_a_model_may_resolve_outside_the_repository() {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("quiver-repo-escape-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (repo, outside) = (base.join("repo"), base.join("outside"));
        fs::create_dir_all(repo.join("good/1")).unwrap();
        fs::create_dir_all(outside.join("m/1")).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        fs::write(repo.join("good/1/model.onnx"), "x").unwrap();
        let escaped = |name: &str| matches!(ModelDirectory::read(&repo, name), Err(RepositoryError::Escape { .. }));
        // A model directory that is a symlink: inside the repository it is followed, outside refused.
        symlink(outside.join("m"), repo.join("linked-out")).unwrap();
        symlink(repo.join("good"), repo.join("linked-in")).unwrap();
        assert!(escaped("linked-out"));
        assert_eq!(ModelDirectory::read(&repo, "linked-in").unwrap().available_versions, vec![1]);
        // `..` reaches outside whatever the caller checked.
        assert!(escaped("../outside/m"));
        // A version directory, a model file or a config that leads out.
        fs::create_dir_all(repo.join("v")).unwrap();
        symlink(outside.join("m/1"), repo.join("v/1")).unwrap();
        assert!(escaped("v"));
        fs::create_dir_all(repo.join("f/1")).unwrap();
        symlink(outside.join("secret"), repo.join("f/1/model.onnx")).unwrap();
        assert!(escaped("f"));
        fs::create_dir_all(repo.join("c/1")).unwrap();
        symlink(outside.join("secret"), repo.join("c/config.pbtxt")).unwrap();
        assert!(escaped("c"));
        // A config that is not a regular file or is too large fails without being read whole.
        fs::create_dir_all(repo.join("fifo/1")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(repo.join("fifo/config.pbtxt")).status().is_ok_and(|s| s.success());
        if made {
            let err = ModelDirectory::read(&repo, "fifo").unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        fs::create_dir_all(repo.join("big/1")).unwrap();
        fs::write(repo.join("big/config.pbtxt"), vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        assert!(ModelDirectory::read(&repo, "big").unwrap_err().to_string().contains("larger than"));
        fs::remove_dir_all(&base).unwrap();
    }
}
