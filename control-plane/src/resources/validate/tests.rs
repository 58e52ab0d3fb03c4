use serde_json::{json, Value};

use super::*;

/// A valid InferenceService with `patch` merged into it (objects merge, `null` removes).
fn isvc(patch: Value) -> InferenceService {
    let mut base = json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://bucket/iris"}}}
    });
    merge(&mut base, patch);
    InferenceService::from_value(&base).unwrap().0
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn predictor(patch: Value) -> InferenceService {
    isvc(json!({"spec": {"predictor": patch}}))
}

fn model(patch: Value) -> InferenceService {
    predictor(json!({"model": patch}))
}

fn annotated(key: &str, value: &str) -> InferenceService {
    isvc(json!({"metadata": {"annotations": {(format!("autoscaling.knative.dev/{key}")): value}}}))
}

#[track_caller]
fn refused(isvc: InferenceService, field: &str, needle: &str) {
    let err = validate(&isvc).expect_err("expected a validation error");
    let cause = err.causes.iter().find(|c| c.field == field).unwrap_or_else(|| panic!("no cause for {field}: {err}"));
    assert!(cause.message.contains(needle), "{field}: {:?} does not mention {needle:?}", cause.message);
    assert!(err.to_string().contains(&format!("{field}: ")), "{err}");
}

#[track_caller]
fn accepted(isvc: InferenceService) -> Validated {
    validate(&isvc).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults() {
    let v = accepted(isvc(json!({})));
    let p = v.predictor;
    assert_eq!(p.format, ModelFormat { name: "onnx".into(), version: None });
    assert_eq!(p.storage_uri, "s3://bucket/iris");
    assert_eq!(p.protocol, Protocol::V1);
    assert_eq!(
        p.scaling,
        Scaling {
            min_replicas: 1,
            max_replicas: 0,
            target: None,
            metric: ScaleMetric::Concurrency,
            container_concurrency: 0,
            annotations: Default::default()
        }
    );
    assert_eq!((p.timeout_seconds, p.canary_traffic_percent, p.batcher), (None, None, None));
    assert!(v.warnings.is_empty());
}

#[test]
fn names() {
    for bad in ["", "Iris", "1iris", "iris_1", "iris-", &"a".repeat(64)] {
        refused(isvc(json!({"metadata": {"name": bad}})), "metadata.name", if bad.is_empty() { "required" } else { "DNS-1035" });
    }
    refused(isvc(json!({"metadata": {"name": null}})), "metadata.name", "required");
    for good in ["a", "abc-123", &"a".repeat(63)] {
        accepted(isvc(json!({"metadata": {"name": good}})));
    }
}

#[test]
fn exactly_one_implementation() {
    refused(predictor(json!({"model": null})), "spec.predictor", "found none");
    refused(predictor(json!({"sklearn": {"storageUri": "/m"}})), "spec.predictor", "found model, sklearn");
    let v = accepted(predictor(json!({"model": null, "sklearn": {"storageUri": "/models/iris"}})));
    assert_eq!(v.predictor.format.name, "sklearn");
}

#[test]
fn formats() {
    refused(model(json!({"modelFormat": null})), "spec.predictor.model.modelFormat.name", "required");
    refused(model(json!({"modelFormat": {"name": ""}})), "spec.predictor.model.modelFormat.name", "required");
    for name in ["onnx", "ONNX", "huggingface", "sklearn", "xgboost", "lightgbm"] {
        let v = accepted(model(json!({"modelFormat": {"name": name, "version": "1"}})));
        assert_eq!(v.predictor.format, ModelFormat { name: name.to_ascii_lowercase(), version: Some("1".into()) });
    }
    for name in ["tensorflow", "pytorch", "pmml", "paddle", "mlflow"] {
        refused(model(json!({"modelFormat": {"name": name}})), "spec.predictor.model.modelFormat.name", "supported: onnx");
    }
    refused(model(json!({"modelFormat": {"name": "triton"}})), "spec.predictor.model.modelFormat.name", "modelFormat name onnx");
    for key in ["tensorflow", "pytorch", "pmml", "paddle"] {
        refused(predictor(json!({"model": null, (key): {"storageUri": "/m"}})), &format!("spec.predictor.{key}"), "not supported");
    }
    refused(predictor(json!({"model": null, "triton": {"storageUri": "/m"}})), "spec.predictor.triton", "not a model format");
    let v = accepted(model(json!({"runtime": "kserve-onnxruntime"})));
    assert_eq!(v.predictor.runtime.as_deref(), Some("kserve-onnxruntime"));
}

#[test]
fn storage_uris() {
    refused(model(json!({"storageUri": null})), "spec.predictor.model.storageUri", "required");
    refused(predictor(json!({"model": null, "onnx": {}})), "spec.predictor.onnx.storageUri", "required");
    for good in ["/models/iris", "models/iris", "file:///models/iris", "http://host/m.onnx", "https://host/m.onnx", "s3://bucket/key"] {
        assert_eq!(accepted(model(json!({"storageUri": good}))).predictor.storage_uri, good);
    }
    for bad in ["gs://b/m", "pvc://claim/m", "hf://org/model", "oci://reg/img", "https://acct.blob.core.windows.net/c/m", "azure://x"] {
        let isvc = model(json!({"storageUri": bad}));
        if bad.starts_with("https") {
            // Azure Blob over https is plain https to Quiver.
            accepted(isvc);
        } else {
            refused(isvc, "spec.predictor.model.storageUri", "s3://");
        }
    }
    refused(model(json!({"storageUri": "s3://"})), "spec.predictor.model.storageUri", "bucket");
}

#[test]
fn protocol_versions() {
    assert_eq!(accepted(model(json!({"protocolVersion": "v1"}))).predictor.protocol, Protocol::V1);
    assert_eq!(accepted(model(json!({"protocolVersion": "v2"}))).predictor.protocol, Protocol::V2);
    assert_eq!(accepted(model(json!({"protocolVersion": "grpc-v2"}))).predictor.protocol, Protocol::V2);
    refused(model(json!({"protocolVersion": "v3"})), "spec.predictor.model.protocolVersion", "v1, v2 or grpc-v2");
    refused(
        predictor(json!({"model": null, "onnx": {"storageUri": "/m", "protocolVersion": "V2"}})),
        "spec.predictor.onnx.protocolVersion",
        "v1",
    );
}

#[test]
fn extension_fields() {
    let v = accepted(predictor(json!({
        "minReplicas": 0, "maxReplicas": 3, "scaleTarget": 5, "scaleMetric": "rps", "containerConcurrency": 4,
        "timeout": 30, "canaryTrafficPercent": 10, "batcher": {"maxBatchSize": 32, "maxLatency": 500, "timeout": 60}
    })));
    let p = v.predictor;
    assert_eq!((p.scaling.min_replicas, p.scaling.max_replicas, p.scaling.target), (0, 3, Some(5.0)));
    assert_eq!((p.scaling.metric, p.scaling.container_concurrency), (ScaleMetric::Rps, 4));
    assert_eq!((p.timeout_seconds, p.canary_traffic_percent), (Some(30), Some(10)));
    assert_eq!(p.batcher, Some(Batcher { max_batch_size: Some(32), max_latency_ms: Some(500) }));
    assert_eq!(accepted(predictor(json!({"canaryTrafficPercent": 0}))).predictor.canary_traffic_percent, Some(0));
    assert_eq!(accepted(predictor(json!({"canaryTrafficPercent": 100}))).predictor.canary_traffic_percent, Some(100));
    assert_eq!(accepted(predictor(json!({"minReplicas": 5, "maxReplicas": 0}))).predictor.scaling.min_replicas, 5);

    let cases = [
        (json!({"canaryTrafficPercent": 101}), "spec.predictor.canaryTrafficPercent", "between 0 and 100"),
        (json!({"canaryTrafficPercent": -1}), "spec.predictor.canaryTrafficPercent", "between 0 and 100"),
        (json!({"minReplicas": -1}), "spec.predictor.minReplicas", "0 or more"),
        (json!({"maxReplicas": -1}), "spec.predictor.maxReplicas", "0 or more"),
        (json!({"minReplicas": 4, "maxReplicas": 2}), "spec.predictor.minReplicas", "cannot be greater"),
        (json!({"maxReplicas": 5_000_000_000_i64}), "spec.predictor.maxReplicas", "too large"),
        (json!({"scaleMetric": "latency"}), "spec.predictor.scaleMetric", "concurrency, rps"),
        (json!({"scaleTarget": 0}), "spec.predictor.scaleTarget", "greater than 0"),
        (json!({"containerConcurrency": -2}), "spec.predictor.containerConcurrency", "0 or more"),
        (json!({"timeout": 0}), "spec.predictor.timeout", "greater than 0"),
        (json!({"batcher": {"maxBatchSize": 0}}), "spec.predictor.batcher.maxBatchSize", "greater than 0"),
        (json!({"batcher": {"maxLatency": -5}}), "spec.predictor.batcher.maxLatency", "greater than 0"),
        (json!({"batcher": {"timeout": 0}}), "spec.predictor.batcher.timeout", "greater than 0"),
        (json!({"logger": {"mode": "everything"}}), "spec.predictor.logger.mode", "all, request or response"),
    ];
    for (patch, field, needle) in cases {
        refused(predictor(patch), field, needle);
    }
}

#[test]
fn all_causes_are_reported() {
    let err = validate(&predictor(json!({"canaryTrafficPercent": 200, "timeout": -1, "model": {"storageUri": "gs://x/y"}}))).unwrap_err();
    for field in ["spec.predictor.canaryTrafficPercent", "spec.predictor.timeout", "spec.predictor.model.storageUri"] {
        assert!(err.names(field), "{err}");
    }
}

#[test]
fn warnings() {
    let v = accepted(predictor(json!({"scaleMetric": "cpu"})));
    assert_eq!(v.predictor.scaling.metric, ScaleMetric::Concurrency);
    assert!(v.warnings[0].contains("spec.predictor.scaleMetric"), "{:?}", v.warnings);
    let v = accepted(predictor(json!({"logger": {"mode": "all", "url": "http://sink"}})));
    assert!(v.warnings[0].contains("not implemented"), "{:?}", v.warnings);
    let v = accepted(isvc(json!({"spec": {"transformer": {"containers": []}, "explainer": {"art": {}}}})));
    assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    assert!(v.warnings.iter().all(|w| w.contains("not implemented")));
}

#[test]
fn knative_annotations() {
    let v = accepted(isvc(json!({"metadata": {"annotations": {
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/maxScale": "7",
        "autoscaling.knative.dev/target": "2.5",
        "autoscaling.knative.dev/metric": "rps",
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/window": "1m30s",
        "autoscaling.knative.dev/panic-window-percentage": "10",
        "autoscaling.knative.dev/panic-threshold-percentage": "200",
        "autoscaling.knative.dev/scale-down-delay": "0s",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "5m",
        "autoscaling.knative.dev/initial-scale": "2",
        "autoscaling.knative.dev/target-utilization-percentage": "70",
        "serving.kserve.io/enable-tag-routing": "true"
    }}})));
    let s = v.predictor.scaling;
    assert_eq!((s.min_replicas, s.max_replicas, s.target, s.metric), (0, 7, Some(2.5), ScaleMetric::Rps));
    assert_eq!(s.annotations.len(), 12, "only autoscaling.knative.dev/* are copied: {:?}", s.annotations);
    assert_eq!(s.annotations["autoscaling.knative.dev/window"], "1m30s");
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);

    let cases = [
        ("minScale", "-1", "whole number"),
        ("min-scale", "one", "whole number"),
        ("max-scale", "1.5", "whole number"),
        ("initial-scale", "x", "whole number"),
        ("target", "0", "greater than 0"),
        ("target", "ten", "greater than 0"),
        ("target-utilization-percentage", "150", "between 1 and 100"),
        ("metric", "latency", "concurrency, rps"),
        ("class", "custom.example.com", "kpa.autoscaling.knative.dev"),
        ("window", "60", "missing unit"),
        ("window", "2s", "between 6s"),
        ("window", "2h", "between 6s"),
        ("panic-window-percentage", "0", "between 1 and 100"),
        ("panic-threshold-percentage", "100", "between 110 and 1000"),
        ("scale-down-delay", "-1s", "negative"),
        ("scale-down-delay", "2h", "between 0s"),
        ("scale-to-zero-pod-retention-period", "5d", "unknown unit"),
    ];
    for (key, value, needle) in cases {
        refused(annotated(key, value), &format!("metadata.annotations[\"autoscaling.knative.dev/{key}\"]"), needle);
    }

    let v = accepted(annotated("class", "hpa.autoscaling.knative.dev"));
    assert!(v.warnings[0].contains("HPA"), "{:?}", v.warnings);
    let v = accepted(annotated("metric", "memory"));
    assert_eq!(v.predictor.scaling.metric, ScaleMetric::Concurrency);
    assert_eq!(v.warnings.len(), 1);
    let v = accepted(annotated("stable-window-thing", "1"));
    assert!(v.warnings[0].contains("kept but not used"), "{:?}", v.warnings);
    assert_eq!(v.predictor.scaling.annotations.len(), 1);
}

#[test]
fn fields_win_over_annotations() {
    let v = accepted(isvc(json!({
        "metadata": {"annotations": {
            "autoscaling.knative.dev/minScale": "3", "autoscaling.knative.dev/maxScale": "4",
            "autoscaling.knative.dev/target": "9", "autoscaling.knative.dev/metric": "rps"
        }},
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 2, "scaleTarget": 5, "scaleMetric": "concurrency"}}
    })));
    let s = v.predictor.scaling;
    assert_eq!((s.min_replicas, s.max_replicas, s.target, s.metric), (1, 2, Some(5.0), ScaleMetric::Concurrency));
    // The annotations stay in the copy for the autoscaler's configuration.
    assert_eq!(s.annotations["autoscaling.knative.dev/minScale"], "3");

    // Predictor annotations override the InferenceService's.
    let v = accepted(isvc(json!({
        "metadata": {"annotations": {"autoscaling.knative.dev/target": "9"}},
        "spec": {"predictor": {"annotations": {"autoscaling.knative.dev/target": "4"}}}
    })));
    assert_eq!(v.predictor.scaling.target, Some(4.0));
    refused(
        isvc(json!({"spec": {"predictor": {"annotations": {"autoscaling.knative.dev/target": "-4"}}}})),
        "spec.predictor.annotations[\"autoscaling.knative.dev/target\"]",
        "greater than 0",
    );

    // An annotation minimum above a field maximum names the annotation.
    refused(
        isvc(json!({"metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "5"}}, "spec": {"predictor": {"maxReplicas": 2}}})),
        "metadata.annotations[\"autoscaling.knative.dev/min-scale\"]",
        "cannot be greater",
    );
}
