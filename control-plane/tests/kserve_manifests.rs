//! KServe's own example manifests (tests/fixtures/kserve/, copied from the KServe docs) parse,
//! and validate or are refused for the stated reasons; unknown fields survive a round trip.

use std::path::PathBuf;

use quiver_control_plane::resources::{
    parse::parse_documents,
    predictor::{Protocol, ScaleMetric},
    validate::validate,
    InferenceService,
};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kserve").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}");
    docs.remove(0)
}

/// Parses a fixture; asserts its warnings.
fn parse(name: &str, expected_warnings: &[&str]) -> (Value, InferenceService) {
    let raw = fixture(name);
    let (isvc, warnings) = InferenceService::from_value(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(warnings, expected_warnings, "{name}");
    (raw, isvc)
}

/// The docs' models live on Google Cloud Storage, which Quiver does not read: the same manifest
/// with a storage location Quiver reads.
fn with_storage(raw: &Value, uri: &str) -> InferenceService {
    let mut raw = raw.clone();
    let predictor = raw["spec"]["predictor"].as_object_mut().unwrap();
    let implementation = predictor.values_mut().find(|v| v.get("storageUri").is_some() || v.get("modelFormat").is_some()).unwrap();
    implementation["storageUri"] = json!(uri);
    InferenceService::from_value(&raw).unwrap().0
}

#[test]
fn sklearn_iris_quick_start() {
    let (raw, isvc) = parse("sklearn-iris.yaml", &[]);
    let err = validate(&isvc).unwrap_err();
    assert_eq!(err.causes.len(), 1, "{err}");
    assert_eq!(err.causes[0].field, "spec.predictor.model.storageUri");
    assert!(err.causes[0].message.contains("gs://"), "{err}");

    let v = validate(&with_storage(&raw, "s3://models/sklearn/iris")).unwrap();
    assert_eq!(v.predictor.format.name, "sklearn");
    assert_eq!(v.predictor.protocol, Protocol::V1);
    assert_eq!(v.predictor.scaling.min_replicas, 1);
    assert!(v.warnings.is_empty());
}

#[test]
fn sklearn_iris_old_schema() {
    let (raw, isvc) = parse("sklearn-iris-old-schema.yaml", &[]);
    assert!(validate(&isvc).unwrap_err().names("spec.predictor.sklearn.storageUri"));
    assert_eq!(validate(&with_storage(&raw, "/models/iris")).unwrap().predictor.format.name, "sklearn");
}

#[test]
fn canary_rollout() {
    let (raw, _) = parse("sklearn-iris-canary.yaml", &[]);
    let v = validate(&with_storage(&raw, "file:///models/iris/2")).unwrap();
    assert_eq!(v.predictor.canary_traffic_percent, Some(10));
    assert_eq!(v.predictor.template().canary_traffic_percent, None);
}

#[test]
fn onnx_style_sample() {
    let (raw, isvc) = parse("style-sample-onnx.yaml", &[]);
    assert_eq!(isvc.metadata.name.as_deref(), Some("style-sample"));
    assert_eq!(validate(&with_storage(&raw, "https://example.com/style.onnx")).unwrap().predictor.format.name, "onnx");
}

#[test]
fn huggingface_distilbert() {
    let (raw, isvc) = parse("huggingface-distilbert.yaml", &[]);
    let model = isvc.spec.predictor.model.as_ref().unwrap();
    assert_eq!(model.args.as_ref().unwrap().len(), 2);
    assert_eq!(model.resources.as_ref().unwrap()["limits"]["nvidia.com/gpu"], "1");
    // The docs' example names the model by --model_id, fetched from the Hub, not by storageUri.
    let err = validate(&isvc).unwrap_err();
    assert_eq!(err.causes.len(), 1, "{err}");
    assert!(err.names("spec.predictor.model.storageUri"), "{err}");
    let v = validate(&with_storage(&raw, "/models/distilbert")).unwrap();
    assert_eq!((v.predictor.format.name.as_str(), v.predictor.protocol), ("huggingface", Protocol::V2));
}

#[test]
fn knative_target_annotation() {
    let (raw, isvc) = parse("flowers-sample-autoscale.yaml", &[]);
    let err = validate(&isvc).unwrap_err();
    assert!(err.names("spec.predictor.model.modelFormat.name"), "tensorflow is refused: {err}");
    assert!(err.names("spec.predictor.model.storageUri"), "{err}");

    let mut raw = raw;
    raw["spec"]["predictor"]["model"]["modelFormat"]["name"] = json!("onnx");
    let v = validate(&with_storage(&raw, "/models/flowers")).unwrap();
    assert_eq!(v.predictor.scaling.target, Some(1.0));
    assert_eq!(v.predictor.scaling.metric, ScaleMetric::Concurrency);
    assert_eq!(v.predictor.scaling.annotations["autoscaling.knative.dev/target"], "1");
}

#[test]
fn component_level_autoscaling_with_a_transformer() {
    let (_, isvc) = parse("torch-transformer-autoscale.yaml", &[]);
    assert_eq!(isvc.spec.predictor.scale_target, Some(2));
    assert!(isvc.spec.transformer.is_some());
    let err = validate(&isvc).unwrap_err();
    assert!(err.names("spec.predictor.model.modelFormat.name"), "pytorch is refused: {err}");
}

#[test]
fn unknown_fields_are_kept_in_the_raw_document() {
    let text = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    priorityClassName: high
    model:
      modelFormat: {name: onnx}
      storageUri: s3://models/iris
      livenessProbe: {httpGet: {path: /healthz}}
  futureField: [1, 2]
"#;
    let raw = parse_documents(text).unwrap().remove(0);
    let (isvc, warnings) = InferenceService::from_value(&raw).unwrap();
    assert_eq!(
        warnings,
        [
            "unknown field spec.futureField: kept but not used",
            "unknown field spec.predictor.model.livenessProbe: kept but not used",
            "unknown field spec.predictor.priorityClassName: kept but not used",
        ]
    );
    validate(&isvc).unwrap();
    // What is stored is the raw document: serialize it, parse it again, nothing is lost.
    let stored = serde_json::to_string(&raw).unwrap();
    let again = parse_documents(&stored).unwrap().remove(0);
    assert_eq!(again, raw);
    assert_eq!(again["spec"]["predictor"]["model"]["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(again["spec"]["futureField"], json!([1, 2]));
    let (reparsed, _) = InferenceService::from_value(&again).unwrap();
    assert_eq!(reparsed.spec, isvc.spec);
    // The typed value serializes to the known fields only, and reads back the same.
    let typed = serde_json::to_value(&isvc).unwrap();
    let (back, warnings) = InferenceService::from_value(&typed).unwrap();
    assert_eq!((back.spec, back.metadata), (isvc.spec, isvc.metadata));
    assert!(warnings.is_empty(), "{warnings:?}");
}
