//! The managed model repository under the Quiver home: each InferenceService is a Triton-layout
//! model named after it, each of its revisions a version directory (`<repo>/<name>/<N>/`)
//! holding the revision's model, linked from the download cache (hard links, so a revision
//! costs no disk of its own; copied where the cache is on another filesystem).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use quiver_core::{
    proto::{self, model_version_policy::PolicyChoice, ModelParameter},
    ModelConfig,
};

use crate::{resources::predictor::PredictorSpec, storage::ModelLayout};

/// The directory of version `number` of model `name`.
pub(crate) fn version_dir(repository: &Path, name: &str, number: u64) -> PathBuf {
    repository.join(name).join(number.to_string())
}

/// Refuses a model name that is not one plain directory name, so nothing placed or removed
/// under it can land outside the managed repository. (InferenceService names are DNS-1123
/// subdomains, checked at admission; this holds whatever the caller checked.)
fn check_name(name: &str) -> io::Result<()> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) if !name.starts_with('.') && !name.contains(['/', '\\', '\0']) => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{}' is not a model name", name.escape_debug()))),
    }
}

/// Places a fetched model as version `number` of `name`. Written beside the final directory
/// and renamed into place, so the runtime never reads a half-placed version. Symbolic links in
/// the fetched content are not followed (see [`link_tree`]), so the managed repository holds
/// only regular files and directories.
pub(crate) fn place(repository: &Path, name: &str, number: u64, layout: &ModelLayout) -> io::Result<()> {
    check_name(name)?;
    let target = version_dir(repository, name, number);
    let staging = repository.join(name).join(format!(".{number}.staging"));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    match layout {
        ModelLayout::OnnxFile(file) => link_or_copy(file, &staging.join("model.onnx"))?,
        ModelLayout::HuggingFace(dir) => link_tree(dir, &staging)?,
        ModelLayout::TritonModel(dir) => {
            // The highest version directory of the user's model is the revision's content.
            let source = highest_version(dir)?.unwrap_or_else(|| dir.to_path_buf());
            link_tree(&source, &staging)?;
        }
    }
    if target.exists() {
        fs::remove_dir_all(&target)?;
    }
    fs::rename(&staging, &target)
}

/// Removes version `number` of `name`.
pub(crate) fn remove_version(repository: &Path, name: &str, number: u64) -> io::Result<()> {
    check_name(name)?;
    match fs::remove_dir_all(version_dir(repository, name, number)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes every version of `name`.
pub(crate) fn remove_model(repository: &Path, name: &str) -> io::Result<()> {
    check_name(name)?;
    match fs::remove_dir_all(repository.join(name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The configuration the runtime loads `name` with: the user's `config.pbtxt` for a Triton
/// layout (else auto-complete decides), every version directory served (each is a revision),
/// and the `batcher`. The same template always gives the same configuration, so reloading
/// after a revision is added or retired leaves the serving versions untouched.
pub(crate) fn model_config(name: &str, template: &PredictorSpec, layout: Option<&ModelLayout>) -> Result<ModelConfig, String> {
    let mut config = match layout {
        Some(ModelLayout::TritonModel(dir)) => match fs::read_to_string(dir.join("config.pbtxt")) {
            Ok(text) => quiver_core::config::parse_pbtxt(&text).map_err(|e| format!("{}/config.pbtxt: {e}", dir.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ModelConfig::default(),
            Err(e) => return Err(format!("{}/config.pbtxt: {e}", dir.display())),
        },
        _ => ModelConfig::default(),
    };
    config.name = name.to_string();
    config.version_policy = Some(proto::ModelVersionPolicy { policy_choice: Some(PolicyChoice::All(proto::model_version_policy::All {})) });
    if let Some(batcher) = template.batcher {
        let size = batcher.max_batch_size.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        quiver_core::config::apply_kserve_batcher(&mut config, size, batcher.max_latency_ms);
    }
    // A replica is an instance: start as many instance threads as the service may scale to
    // (maxReplicas, bounded by the cores; one without a bound), and let the KPA decide how
    // many execute. A user's own instance_group (Triton layout) is kept as written.
    if config.instance_group.is_empty() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = match template.scaling.max_replicas {
            0 => 1,
            n => (n as usize).min(cores),
        };
        config.instance_group.push(proto::ModelInstanceGroup {
            name: name.to_string(),
            kind: proto::model_instance_group::Kind::Cpu as i32,
            count: i32::try_from(count).unwrap_or(1),
            ..Default::default()
        });
    }
    // Scale to zero and cold starts are the control plane's (the KPA decides), so the
    // runtime's own idle timer stays off for managed models; the cold-start buffer stays.
    config.parameters.remove("min_instances");
    if let Some(timeout) = template.timeout_seconds {
        config.parameters.insert("cold_start_timeout_s".into(), ModelParameter { string_value: timeout.to_string() });
    }
    Ok(config)
}

fn highest_version(dir: &Path) -> io::Result<Option<PathBuf>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(n) = entry.file_name().to_str().and_then(quiver_runtime::repository::version_number) else { continue };
        if entry.file_type()?.is_dir() && best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => fs::copy(from, to).map(|_| ()),
    }
}

/// Mirrors a directory tree with hard links (regular files only; symbolic links are not
/// followed, so a model directory cannot pull in files from outside it).
fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            link_or_copy(&entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(max_replicas: u32) -> PredictorSpec {
        let mut spec = crate::resources::predictor::example("/m.onnx", None);
        spec.scaling.max_replicas = max_replicas;
        spec
    }

    #[test]
    fn replicas_are_instances_up_to_max_replicas_and_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        let count = |max| model_config("m", &template(max), None).unwrap().instance_group[0].count;
        assert_eq!(count(0), 1, "no bound: one instance");
        assert_eq!(count(1), 1);
        assert_eq!(count(64), cores.min(64));
        let config = model_config("m", &template(2), None).unwrap();
        assert_eq!(config.name, "m");
        assert!(matches!(config.version_policy.and_then(|p| p.policy_choice), Some(PolicyChoice::All(_))));
    }

    #[test]
    fn a_version_is_placed_whole_and_removed() {
        let root = std::env::temp_dir().join(format!("quiver-managed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let cache = root.join("cache");
        fs::create_dir_all(cache.join("hf/sub")).unwrap();
        fs::write(cache.join("model.onnx"), b"onnx").unwrap();
        fs::write(cache.join("hf/config.json"), b"{}").unwrap();
        fs::write(cache.join("hf/sub/x"), b"x").unwrap();
        let repo = root.join("repo");
        place(&repo, "m", 1, &ModelLayout::OnnxFile(cache.join("model.onnx"))).unwrap();
        place(&repo, "m", 2, &ModelLayout::HuggingFace(cache.join("hf"))).unwrap();
        assert_eq!(fs::read(repo.join("m/1/model.onnx")).unwrap(), b"onnx");
        assert_eq!(fs::read(repo.join("m/2/sub/x")).unwrap(), b"x");
        assert!(!repo.join("m/.1.staging").exists());
        remove_version(&repo, "m", 1).unwrap();
        assert!(!repo.join("m/1").exists() && repo.join("m/2").exists());
        remove_version(&repo, "m", 1).unwrap();
        remove_model(&repo, "m").unwrap();
        assert!(!repo.join("m").exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn nothing_is_placed_or_removed_outside_the_repository() {
        let root = std::env::temp_dir().join(format!("quiver-managed-escape-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (repo, source, outside) = (root.join("repo"), root.join("source"), root.join("outside"));
        fs::create_dir_all(source.join("1")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        fs::write(source.join("1/model.onnx"), b"onnx").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), source.join("1/linked")).unwrap();
        std::os::unix::fs::symlink(&outside, source.join("1/linked-dir")).unwrap();
        let layout = ModelLayout::TritonModel(source.clone());
        for bad in ["..", "../outside", "/abs", "a/b", ".hidden", "a\\b", "a\0b", ""] {
            assert_eq!(place(&repo, bad, 1, &layout).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(remove_model(&repo, bad).is_err() && remove_version(&repo, bad, 1).is_err(), "{bad:?}");
        }
        assert!(outside.join("secret").exists());
        // Symlinks in the user's directory are not carried into the managed repository.
        place(&repo, "m", 1, &layout).unwrap();
        assert_eq!(fs::read(repo.join("m/1/model.onnx")).unwrap(), b"onnx");
        assert!(!repo.join("m/1/linked").exists() && !repo.join("m/1/linked-dir").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
