//! Reading a Triton-layout model repository: `<repo>/<model>/config.pbtxt` (optional) and
//! `<repo>/<model>/<version>/<model file>`, with integer version directories.

use std::{
    fs,
    path::{Path, PathBuf},
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
    /// The model directory has no loadable version.
    #[error("model '{0}' has no version directory to load (expected <model>/<integer>/)")]
    NoVersions(String),
}

fn io_error(path: &Path, e: std::io::Error) -> RepositoryError {
    RepositoryError::Io { path: path.to_path_buf(), message: e.to_string() }
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
    /// Reads `<repository>/<name>`.
    pub fn read(repository: &Path, name: &str) -> Result<ModelDirectory, RepositoryError> {
        let path = repository.join(name);
        let config_path = path.join("config.pbtxt");
        let config = match fs::read_to_string(&config_path) {
            Ok(text) => config::parse_pbtxt(&text).map_err(|source| RepositoryError::Config { path: config_path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ModelConfig::default(),
            Err(e) => return Err(io_error(&config_path, e)),
        };
        let mut available_versions = Vec::new();
        for entry in fs::read_dir(&path).map_err(|e| io_error(&path, e))? {
            let entry = entry.map_err(|e| io_error(&path, e))?;
            let file_name = entry.file_name();
            let Some(version) = file_name.to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
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
}
