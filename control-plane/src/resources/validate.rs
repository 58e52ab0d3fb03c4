//! Checks an InferenceService and normalizes its predictor into a [`PredictorSpec`]. Every
//! problem is collected (not just the first), each naming its field, so one `apply` shows the
//! user everything to fix. Pure: no IO (storage is checked later, by what loads the model).
//!
//! Decisions where Quiver differs from KServe:
//! - Formats: `onnx` and `huggingface` are served natively; `sklearn`, `xgboost` and `lightgbm`
//!   are served from their ONNX conversion (the storage check finds it). `triton` is refused: it
//!   names a server and a repository of many models, while an InferenceService here serves one
//!   model; an ONNX model in a Triton layout is served with `modelFormat: onnx`.
//! - Storage: plain paths, `file://`, `http(s)://` and `s3://` only.
//! - Autoscaling: embedded mode scales on concurrency or rps; `cpu`/`memory` and the HPA class
//!   are accepted with a warning.

use std::{collections::BTreeMap, fmt};

use super::{
    inference_service::{InferenceService, Predictor},
    predictor::{Batcher, ModelFormat, PredictorSpec, Protocol, ScaleMetric, Scaling},
};

mod knative;

/// Formats Quiver serves.
pub const SUPPORTED_FORMATS: &[&str] = &["onnx", "huggingface", "sklearn", "xgboost", "lightgbm"];
/// Storage URI forms Quiver reads.
pub const SUPPORTED_STORAGE: &str = "a local path, file://, http://, https:// or s3://";

/// A valid InferenceService's predictor, and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The normalized predictor.
    pub predictor: PredictorSpec,
    /// Accepted but not acted on (unimplemented components, ignored settings).
    pub warnings: Vec<String>,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// Its path, e.g. `spec.predictor.canaryTrafficPercent`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why an InferenceService is invalid: every cause found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid InferenceService: {}", join_causes(.causes))]
pub struct ValidationError {
    /// The causes, in the order found.
    pub causes: Vec<FieldCause>,
}

impl ValidationError {
    /// Whether some cause names this field.
    pub fn names(&self, field: &str) -> bool {
        self.causes.iter().any(|c| c.field == field)
    }
}

fn join_causes(causes: &[FieldCause]) -> String {
    causes.iter().map(FieldCause::to_string).collect::<Vec<_>>().join("; ")
}

/// Collects causes and warnings while checking.
#[derive(Default)]
pub(crate) struct Checker {
    causes: Vec<FieldCause>,
    warnings: Vec<String>,
}

impl Checker {
    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.causes.push(FieldCause { field: field.into(), message: message.into() });
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// Checks an InferenceService; on success returns its normalized predictor.
pub fn validate(isvc: &InferenceService) -> Result<Validated, ValidationError> {
    let mut c = Checker::default();
    check_name(&mut c, isvc.metadata.name.as_deref());
    let p = &isvc.spec.predictor;
    let model = check_model(&mut c, p);
    let scaling = check_scaling(&mut c, isvc);
    let timeout_seconds = positive(&mut c, "spec.predictor.timeout", p.timeout).map(|v| v as u64);
    let canary_traffic_percent = match p.canary_traffic_percent {
        Some(v) if (0..=100).contains(&v) => Some(v as u32),
        Some(v) => {
            c.error("spec.predictor.canaryTrafficPercent", format!("must be between 0 and 100, got {v}"));
            None
        }
        None => None,
    };
    let batcher = p.batcher.as_ref().map(|b| Batcher {
        max_batch_size: positive(&mut c, "spec.predictor.batcher.maxBatchSize", b.max_batch_size)
            .and_then(|v| fit_u32(&mut c, "spec.predictor.batcher.maxBatchSize", v)),
        max_latency_ms: positive(&mut c, "spec.predictor.batcher.maxLatency", b.max_latency).map(|v| v as u64),
    });
    if let Some(b) = &p.batcher {
        positive(&mut c, "spec.predictor.batcher.timeout", b.timeout);
    }
    if let Some(logger) = &p.logger {
        if let Some(mode) = logger.mode.as_deref() {
            if !matches!(mode, "all" | "request" | "response") {
                c.error("spec.predictor.logger.mode", format!("must be all, request or response, got {mode:?}"));
            }
        }
        c.warn("spec.predictor.logger: request logging is not implemented; ignored");
    }
    if isvc.spec.transformer.is_some() {
        c.warn("spec.transformer: transformers are not implemented; kept but not deployed");
    }
    if isvc.spec.explainer.is_some() {
        c.warn("spec.explainer: explainers are not implemented; kept but not deployed");
    }
    match (model, c.causes.is_empty()) {
        (Some(m), true) => Ok(Validated {
            predictor: PredictorSpec {
                format: m.format,
                runtime: m.runtime,
                storage_uri: m.storage_uri,
                protocol: m.protocol,
                scaling,
                timeout_seconds,
                canary_traffic_percent,
                batcher,
            },
            warnings: c.warnings,
        }),
        _ => Err(ValidationError { causes: c.causes }),
    }
}

/// DNS-1035 label, as KServe requires of InferenceService names (they become host names).
fn check_name(c: &mut Checker, name: Option<&str>) {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        c.error("metadata.name", "required");
        return;
    };
    let starts_with_letter = name.starts_with(|ch: char| ch.is_ascii_lowercase());
    let ends_alnum = name.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit());
    let chars_ok = name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if name.len() > 63 || !starts_with_letter || !ends_alnum || !chars_ok {
        c.error(
            "metadata.name",
            format!(
                "{name:?} is not a DNS-1035 label: at most 63 lowercase letters, digits or '-', starting with a letter and \
                 ending with a letter or digit (e.g. \"my-name\" or \"abc-123\")"
            ),
        );
    }
}

/// The model part of a valid predictor.
struct CheckedModel {
    format: ModelFormat,
    runtime: Option<String>,
    storage_uri: String,
    protocol: Protocol,
}

/// The fields the model implementations share, wherever they were written.
struct Implementation<'a> {
    path: String,
    format_name: Option<&'a str>,
    format_version: Option<&'a str>,
    runtime: Option<&'a str>,
    storage_uri: Option<&'a str>,
    protocol_version: Option<&'a str>,
}

fn implementations(p: &Predictor) -> Vec<Implementation<'_>> {
    let mut found = Vec::new();
    if let Some(m) = &p.model {
        let format = m.model_format.as_ref();
        found.push(Implementation {
            path: "spec.predictor.model".into(),
            format_name: format.map(|f| f.name.as_str()),
            format_version: format.and_then(|f| f.version.as_deref()),
            runtime: m.runtime.as_deref(),
            storage_uri: m.storage_uri.as_deref(),
            protocol_version: m.protocol_version.as_deref(),
        });
    }
    let shorthands = [
        ("onnx", &p.onnx),
        ("sklearn", &p.sklearn),
        ("xgboost", &p.xgboost),
        ("lightgbm", &p.lightgbm),
        ("huggingface", &p.huggingface),
        ("pytorch", &p.pytorch),
        ("tensorflow", &p.tensorflow),
        ("triton", &p.triton),
        ("pmml", &p.pmml),
        ("paddle", &p.paddle),
    ];
    for (key, spec) in shorthands {
        if let Some(s) = spec {
            found.push(Implementation {
                path: format!("spec.predictor.{key}"),
                format_name: Some(key),
                format_version: None,
                runtime: None,
                storage_uri: s.storage_uri.as_deref(),
                protocol_version: s.protocol_version.as_deref(),
            });
        }
    }
    found
}

const IMPLEMENTATION_KEYS: &str = "model, onnx, sklearn, xgboost, lightgbm, huggingface, pytorch, tensorflow, triton, pmml, paddle";

fn check_model(c: &mut Checker, p: &Predictor) -> Option<CheckedModel> {
    let found = implementations(p);
    let imp = match found.as_slice() {
        [one] => one,
        [] => {
            c.error("spec.predictor", format!("exactly one of [{IMPLEMENTATION_KEYS}] must be given; found none"));
            return None;
        }
        many => {
            let names: Vec<_> = many.iter().map(|i| i.path.trim_start_matches("spec.predictor.")).collect();
            c.error("spec.predictor", format!("exactly one of [{IMPLEMENTATION_KEYS}] must be given; found {}", names.join(", ")));
            return None;
        }
    };
    let is_model = imp.path == "spec.predictor.model";
    let format_field = if is_model { format!("{}.modelFormat.name", imp.path) } else { imp.path.clone() };
    let format = match imp.format_name.map(str::trim).filter(|n| !n.is_empty()) {
        None => {
            c.error(format_field, format!("required: the model's format, one of {}", SUPPORTED_FORMATS.join(", ")));
            None
        }
        Some(name) => check_format(c, &format_field, &name.to_ascii_lowercase(), imp.format_version),
    };
    let storage_field = format!("{}.storageUri", imp.path);
    let storage_uri = match imp.storage_uri.map(str::trim).filter(|s| !s.is_empty()) {
        None => {
            c.error(storage_field, format!("required: where the model is ({SUPPORTED_STORAGE})"));
            None
        }
        Some(uri) => check_storage_uri(c, &storage_field, uri).then(|| uri.to_string()),
    };
    let protocol = match imp.protocol_version {
        None | Some("v1") => Some(Protocol::V1),
        Some("v2") | Some("grpc-v2") => Some(Protocol::V2),
        Some(other) => {
            c.error(format!("{}.protocolVersion", imp.path), format!("must be v1, v2 or grpc-v2, got {other:?}"));
            None
        }
    };
    Some(CheckedModel { format: format?, runtime: imp.runtime.map(str::to_string), storage_uri: storage_uri?, protocol: protocol? })
}

fn check_format(c: &mut Checker, field: &str, name: &str, version: Option<&str>) -> Option<ModelFormat> {
    if SUPPORTED_FORMATS.contains(&name) {
        return Some(ModelFormat { name: name.to_string(), version: version.map(str::to_string) });
    }
    let supported = "supported: onnx and huggingface (native), sklearn, xgboost and lightgbm (served from their ONNX conversion)";
    if name == "triton" {
        c.error(
            field,
            format!("triton is a server for a repository of models, not a model format; for an ONNX model use modelFormat name onnx ({supported})"),
        );
    } else {
        c.error(field, format!("model format {name:?} is not supported; {supported}"));
    }
    None
}

/// Syntax only: the scheme and that something follows it.
fn check_storage_uri(c: &mut Checker, field: &str, uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        // A plain path, absolute or relative; a Windows-style or `scheme:` form still has no `://`.
        return true;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" | "http" | "https" | "s3" if !rest.trim_matches('/').is_empty() => true,
        "file" | "http" | "https" | "s3" => {
            c.error(field, format!("{uri:?} names no {}", if scheme.eq_ignore_ascii_case("s3") { "bucket" } else { "location" }));
            false
        }
        _ => {
            c.error(field, format!("storage scheme {scheme}:// is not supported; use {SUPPORTED_STORAGE}"));
            false
        }
    }
}

fn positive(c: &mut Checker, field: &str, v: Option<i64>) -> Option<i64> {
    match v {
        Some(v) if v > 0 => Some(v),
        Some(v) => {
            c.error(field, format!("must be greater than 0, got {v}"));
            None
        }
        None => None,
    }
}

fn fit_u32(c: &mut Checker, field: &str, v: i64) -> Option<u32> {
    match u32::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            c.error(field, format!("{v} is too large (at most {})", u32::MAX));
            None
        }
    }
}

fn non_negative_u32(c: &mut Checker, field: &str, v: Option<i64>) -> Option<u32> {
    match v {
        Some(v) if v < 0 => {
            c.error(field, format!("must be 0 or more, got {v}"));
            None
        }
        Some(v) => fit_u32(c, field, v),
        None => None,
    }
}

fn check_scaling(c: &mut Checker, isvc: &InferenceService) -> Scaling {
    let p = &isvc.spec.predictor;
    let ann = knative::check_annotations(c, isvc.metadata.annotations.as_ref(), p.annotations.as_ref());
    let min_field = non_negative_u32(c, "spec.predictor.minReplicas", p.min_replicas);
    let max_field = non_negative_u32(c, "spec.predictor.maxReplicas", p.max_replicas);
    // Fields win over annotations where both are given, as in KServe.
    let (min_replicas, min_source) = match (p.min_replicas, min_field, &ann.min_scale) {
        (Some(_), v, _) => (v.unwrap_or(1), "spec.predictor.minReplicas".to_string()),
        (None, _, Some((v, path))) => (*v, path.clone()),
        (None, _, None) => (1, "spec.predictor.minReplicas".to_string()),
    };
    let max_replicas = match (p.max_replicas, max_field, &ann.max_scale) {
        (Some(_), v, _) => v.unwrap_or(0),
        (None, _, Some((v, _))) => *v,
        (None, _, None) => 0,
    };
    if max_replicas > 0 && min_replicas > max_replicas {
        c.error(min_source, format!("minimum replicas ({min_replicas}) cannot be greater than maximum replicas ({max_replicas})"));
    }
    let target = match p.scale_target {
        Some(_) => positive(c, "spec.predictor.scaleTarget", p.scale_target).map(|v| v as f64),
        None => ann.target,
    };
    let metric = match p.scale_metric.as_deref() {
        Some(m) => knative::metric(c, "spec.predictor.scaleMetric", m),
        None => ann.metric,
    }
    .unwrap_or_default();
    let container_concurrency = non_negative_u32(c, "spec.predictor.containerConcurrency", p.container_concurrency).unwrap_or(0);
    Scaling { min_replicas, max_replicas, target, metric, container_concurrency, annotations: ann.all }
}

/// The autoscaling settings read from `autoscaling.knative.dev/*` annotations.
#[derive(Default)]
pub(crate) struct AnnotationScaling {
    min_scale: Option<(u32, String)>,
    max_scale: Option<(u32, String)>,
    target: Option<f64>,
    metric: Option<ScaleMetric>,
    all: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests;
