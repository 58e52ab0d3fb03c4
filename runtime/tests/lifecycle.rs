//! The model lifecycle through the registry, on the shipped `mlp` example (versions 1 and 2):
//! control modes, reloads that keep unchanged versions, failed loads that leave serving
//! untouched, unloads that let requests in flight finish, canary routing, and scale to zero
//! with the activator.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use quiver_core::{DataType, Engines, Tensor};
use quiver_engine_tract::OnnxBackend;
use quiver_runtime::{
    infer::{InferInput, InferRequest},
    model::LoadOptions,
    registry::{traffic::Revision, ControlMode, ModelRegistry, RegistryOptions, TrafficChange},
    ServeError,
};

/// A fresh repository holding a copy of the shipped `mlp` (versions 1 and 2, policy `all`).
struct Repo(PathBuf);

impl Repo {
    fn new(tag: &str) -> Repo {
        let dir = std::env::temp_dir().join(format!("quiver-lifecycle-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/models/mlp");
        copy_dir(&shipped, &dir.join("mlp"));
        Repo(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn registry(&self, mode: ControlMode, startup: &[&str]) -> ModelRegistry {
        ModelRegistry::new(
            self.0.clone(),
            RegistryOptions {
                control_mode: mode,
                startup_models: startup.iter().map(|s| s.to_string()).collect(),
                load: LoadOptions { engines: Engines::new(vec![Arc::new(OnnxBackend)]), ..Default::default() },
            },
        )
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn request() -> InferRequest {
    let tensor = Tensor::from_bytes(DataType::Fp32, vec![1, 16], Bytes::from(vec![0u8; 64])).unwrap();
    InferRequest { inputs: vec![InferInput { name: "input".into(), tensor }], ..Default::default() }
}

/// Runs one unversioned request; returns the version that answered.
async fn infer(registry: &ModelRegistry, pin: Option<Revision>) -> Result<String, ServeError> {
    let routed = registry.route("mlp", "", pin)?;
    let valid = routed.info().validate(request())?;
    Ok(routed.infer(valid).await?.model_version)
}

fn index(registry: &ModelRegistry) -> Vec<(String, String, &'static str, String)> {
    registry.index(false).into_iter().map(|r| (r.name, r.version, r.state, r.reason)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_loads_and_unloads_on_request() {
    let repo = Repo::new("explicit");
    copy_dir(&repo.path("mlp"), &repo.path("other"));
    let config = std::fs::read_to_string(repo.path("other/config.pbtxt")).unwrap();
    std::fs::write(repo.path("other/config.pbtxt"), config.replace("name: \"mlp\"", "name: \"other\"")).unwrap();
    let registry = repo.registry(ControlMode::Explicit, &["mlp"]);
    // Before and during the startup load, the startup models are LOADING, the others not loaded.
    let before = index(&registry);
    assert!(before.contains(&("mlp".into(), String::new(), "LOADING", String::new())), "{before:?}");
    assert!(before.contains(&("other".into(), String::new(), "UNAVAILABLE", "not loaded".into())), "{before:?}");
    let summary = registry.load_startup().await.unwrap();
    assert_eq!((summary.ready, summary.failed), (1, 0));
    assert!(registry.all_ready());
    assert!(registry.info("other", "").is_err(), "only --load-model models load at startup");

    registry.load("other", None).await.unwrap();
    assert_eq!(registry.ready_versions("other"), ["1", "2"]);
    assert!(matches!(registry.load("missing", None).await, Err(ServeError::InvalidInput(m)) if m.contains("no model directory")));
    assert!(matches!(registry.load("../etc", None).await, Err(ServeError::InvalidInput(_))));

    // A request routed before the unload finishes on its version afterwards.
    let in_flight = registry.route("other", "1", None).unwrap();
    registry.unload("other").await.unwrap();
    let valid = in_flight.info().validate(request()).unwrap();
    assert_eq!(in_flight.infer(valid).await.unwrap().model_version, "1");
    assert!(matches!(registry.route("other", "", None), Err(ServeError::Unavailable(_))));
    let rows = index(&registry);
    assert!(rows.contains(&("other".into(), "1".into(), "UNAVAILABLE", "unloaded".into())), "{rows:?}");
    assert!(registry.all_ready(), "an unloaded model does not hold readiness back");

    // Loading it again brings it back.
    registry.load("other", None).await.unwrap();
    let other = registry.route("other", "2", None).unwrap();
    let valid = other.info().validate(request()).unwrap();
    assert_eq!(other.infer(valid).await.unwrap().model_version, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_refused_outside_explicit_mode() {
    let repo = Repo::new("none");
    for mode in [ControlMode::None, ControlMode::Poll] {
        let registry = repo.registry(mode, &[]);
        registry.load_startup().await.unwrap();
        assert_eq!(registry.ready_versions("mlp"), ["1", "2"], "{mode:?} loads everything");
        for result in [registry.load("mlp", None).await, registry.unload("mlp").await] {
            assert!(matches!(result, Err(ServeError::InvalidInput(m)) if m.contains("--model-control-mode explicit")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_unchanged_versions_and_survive_failures() {
    let repo = Repo::new("reload");
    let registry = repo.registry(ControlMode::Explicit, &["*"]);
    registry.load_startup().await.unwrap();
    let v1 = registry.route("mlp", "1", None).unwrap().info().clone();
    let v2 = registry.route("mlp", "2", None).unwrap().info().clone();

    // Nothing changed: the same loaded versions serve on.
    registry.load("mlp", None).await.unwrap();
    assert!(Arc::ptr_eq(&v1, registry.route("mlp", "1", None).unwrap().info()));
    assert!(Arc::ptr_eq(&v2, registry.route("mlp", "2", None).unwrap().info()));

    // Version 2's file changes: only it is loaded again.
    let model = std::fs::read(repo.path("mlp/2/model.onnx")).unwrap();
    std::fs::write(repo.path("mlp/2/model.onnx"), &model).unwrap();
    std::fs::write(repo.path("mlp/2/notes.txt"), b"retrained").unwrap();
    registry.load("mlp", None).await.unwrap();
    assert!(Arc::ptr_eq(&v1, registry.route("mlp", "1", None).unwrap().info()));
    assert!(!Arc::ptr_eq(&v2, registry.route("mlp", "2", None).unwrap().info()));

    // A corrupt new version 3 fails; 1 and 2 go on serving, and the default stays 2.
    std::fs::create_dir_all(repo.path("mlp/3")).unwrap();
    std::fs::write(repo.path("mlp/3/model.onnx"), b"not an onnx file").unwrap();
    let err = registry.load("mlp", None).await.unwrap_err();
    assert!(err.to_string().contains("version 3"), "{err}");
    assert_eq!(infer(&registry, None).await.unwrap(), "2");
    assert!(!registry.is_ready("mlp", "3"));
    assert!(registry.is_ready("mlp", ""));
    let rows = index(&registry);
    assert!(rows.iter().any(|r| r.1 == "3" && r.2 == "UNAVAILABLE" && !r.3.is_empty()), "{rows:?}");
    assert!(registry.all_ready());

    // A broken config: the whole reload fails, every version keeps serving, the index says why.
    std::fs::remove_dir_all(repo.path("mlp/3")).unwrap();
    let config = std::fs::read_to_string(repo.path("mlp/config.pbtxt")).unwrap();
    std::fs::write(repo.path("mlp/config.pbtxt"), "max_batch_size: oops").unwrap();
    assert!(registry.load("mlp", None).await.is_err());
    assert_eq!(infer(&registry, None).await.unwrap(), "2");
    assert!(index(&registry).iter().any(|r| r.1.is_empty() && r.2 == "UNAVAILABLE" && r.3.contains("config.pbtxt")));

    // A config given in the load request replaces the file (here: only version 1).
    std::fs::write(repo.path("mlp/config.pbtxt"), config).unwrap();
    let json = r#"{"max_batch_size": 8, "version_policy": {"specific": {"versions": [1]}}}"#;
    let override_config = quiver_runtime::protocol::parse_config_override(json).unwrap();
    registry.load("mlp", Some(override_config)).await.unwrap();
    assert_eq!(registry.ready_versions("mlp"), ["1"]);
    assert_eq!(infer(&registry, None).await.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_pin_promote_rollback() {
    let repo = Repo::new("canary");
    let registry = repo.registry(ControlMode::Explicit, &["mlp"]);
    registry.load_startup().await.unwrap();
    let split = TrafficChange::Split { canary: 2, percent: 30, stable: None, rollback: None };
    let status = registry.change_traffic("mlp", split).await.unwrap();
    assert_eq!(status.traffic.iter().map(|t| (t.version.as_str(), t.percent)).collect::<Vec<_>>(), [("1", 70), ("2", 30)]);

    let mut canary = 0;
    for _ in 0..200 {
        if infer(&registry, None).await.unwrap() == "2" {
            canary += 1;
        }
    }
    assert_eq!(canary, 60, "exactly 30% of every hundred");
    assert_eq!(infer(&registry, Some(Revision::Canary)).await.unwrap(), "2");
    assert_eq!(infer(&registry, Some(Revision::Stable)).await.unwrap(), "1");
    // An explicit version bypasses the split.
    assert_eq!(registry.route("mlp", "1", None).unwrap().revision(), None);

    registry.change_traffic("mlp", TrafficChange::Rollback).await.unwrap();
    for _ in 0..20 {
        assert_eq!(infer(&registry, None).await.unwrap(), "1");
    }
    let status = registry.traffic("mlp").unwrap();
    assert_eq!((status.rollbacks, status.latest_rolledout_version.as_deref()), (1, Some("1")));
    assert!(matches!(infer(&registry, Some(Revision::Canary)).await, Err(ServeError::InvalidInput(_))), "no canary any more");

    registry.change_traffic("mlp", TrafficChange::Split { canary: 2, percent: 10, stable: None, rollback: None }).await.unwrap();
    let status = registry.change_traffic("mlp", TrafficChange::Promote).await.unwrap();
    assert_eq!(status.latest_rolledout_version.as_deref(), Some("2"));
    assert_eq!(status.previous_rolledout_version.as_deref(), Some("1"));
    assert!(status.traffic.is_empty());
    assert_eq!(infer(&registry, None).await.unwrap(), "2");
    assert!(registry.change_traffic("mlp", TrafficChange::Promote).await.is_err(), "nothing to promote");
    let bad = TrafficChange::Split { canary: 7, percent: 10, stable: None, rollback: None };
    assert!(registry.change_traffic("mlp", bad).await.unwrap_err().to_string().contains("not loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_to_zero_and_every_buffered_request_is_served() {
    let repo = Repo::new("zero");
    let config = std::fs::read_to_string(repo.path("mlp/config.pbtxt")).unwrap();
    std::fs::write(
        repo.path("mlp/config.pbtxt"),
        format!(
            "{config}\nparameters {{ key: \"min_instances\" value {{ string_value: \"0\" }} }}\n\
             parameters {{ key: \"idle_grace_period_s\" value {{ string_value: \"0.2\" }} }}\n"
        ),
    )
    .unwrap();
    let registry = Arc::new(repo.registry(ControlMode::None, &[]));
    registry.load_startup().await.unwrap();
    assert_eq!(infer(&registry, None).await.unwrap(), "2");

    // Busy: a request in flight (holding its version) keeps the model up.
    let held = registry.route("mlp", "2", None).unwrap();
    // The autoscaler's decision (quiver serve's KPA makes it after the grace period).
    registry.scale("mlp", 0).await.unwrap();
    assert!(registry.index(false).iter().all(|r| r.reason.is_empty() || r.version == "1"), "version 2 is busy");
    drop(held);
    registry.scale("mlp", 0).await.unwrap();
    let rows = registry.index(false);
    assert!(rows.iter().all(|r| r.state == "READY" && r.reason == "scaled to zero"), "{rows:?}");
    // Metadata and readiness answer without loading.
    assert!(registry.is_ready("mlp", ""));
    assert_eq!(registry.info("mlp", "2").unwrap().inputs()[0].name, "input");
    assert!(registry.index(false).iter().all(|r| r.reason == "scaled to zero"));

    // A burst while scaled to zero: every request waits for the one load and is served.
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { infer(&registry, None).await })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap().unwrap(), "2");
    }
    let rows = registry.index(false);
    assert!(rows.iter().any(|r| r.version == "2" && r.reason.is_empty()), "version 2 is loaded again: {rows:?}");
    assert!(rows.iter().any(|r| r.version == "1" && r.reason == "scaled to zero"), "version 1 was not asked for: {rows:?}");
}
