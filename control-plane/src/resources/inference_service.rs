//! KServe's InferenceService (`serving.kserve.io/v1beta1`) as Rust types: the spec as users write
//! it (JSON names as in kserve/kserve `pkg/apis/serving/v1beta1`) and the status the controller
//! writes. Pod-spec fields are typed loosely (`serde_json::Value`): Quiver does not interpret them,
//! and the CRD keeps them (`x-kubernetes-preserve-unknown-fields`) as KServe's does.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An InferenceService's desired state (`spec`).
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "serving.kserve.io",
    version = "v1beta1",
    kind = "InferenceService",
    namespaced,
    status = "InferenceServiceStatus",
    shortname = "isvc",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"Prev","type":"integer","jsonPath":".status.components.predictor.traffic[?(@.tag=='prev')].percent"}"#,
    printcolumn = r#"{"name":"Latest","type":"integer","jsonPath":".status.components.predictor.traffic[?(@.latestRevision==true)].percent"}"#,
    printcolumn = r#"{"name":"PrevRolledoutRevision","type":"string","jsonPath":".status.components.predictor.traffic[?(@.tag=='prev')].revisionName"}"#,
    printcolumn = r#"{"name":"LatestReadyRevision","type":"string","jsonPath":".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// The model server.
    pub predictor: Predictor,
    /// A pre/post-processing component. Accepted and stored; not implemented by Quiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub transformer: Option<Value>,
    /// A model explanation component. Accepted and stored; not implemented by Quiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub explainer: Option<Value>,
}

/// `spec.predictor`: one model implementation (`model` or an older per-framework shorthand), the
/// component extension fields, and pod-spec fields.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
// KServe does not prune pod-spec fields it does not model; neither does the CRD.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Predictor {
    /// The model, by format (the schema introduced in KServe 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// Shorthand: an ONNX model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<FrameworkSpec>,
    /// Shorthand: a scikit-learn model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sklearn: Option<FrameworkSpec>,
    /// Shorthand: an XGBoost model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xgboost: Option<FrameworkSpec>,
    /// Shorthand: a LightGBM model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightgbm: Option<FrameworkSpec>,
    /// Shorthand: a Hugging Face model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huggingface: Option<FrameworkSpec>,
    /// Shorthand: a PyTorch (TorchServe) model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<FrameworkSpec>,
    /// Shorthand: a TensorFlow model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorflow: Option<FrameworkSpec>,
    /// Shorthand: a Triton model repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triton: Option<FrameworkSpec>,
    /// Shorthand: a PMML model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmml: Option<FrameworkSpec>,
    /// Shorthand: a PaddlePaddle model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paddle: Option<FrameworkSpec>,

    /// Minimum replicas; KServe's default is 1, 0 allows scale to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i64>,
    /// Maximum replicas; 0 (or absent) means no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i64>,
    /// Per-replica target of the scale metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target: Option<i64>,
    /// `concurrency`, `rps`, `cpu` or `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_metric: Option<String>,
    /// Hard limit of concurrent requests per replica (0 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Percent of traffic for the latest revision while a canary rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_traffic_percent: Option<i64>,
    /// Request/response logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logger: Option<LoggerSpec>,
    /// Server-side request batching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batcher: Option<BatcherSpec>,
    /// Labels for the component's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations for the component's pods (`autoscaling.knative.dev/*` are read from here too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Deployment strategy (KServe raw deployment mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub deployment_strategy: Option<Value>,

    /// Pod spec: custom containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_array")]
    pub containers: Option<Vec<Value>>,
    /// Pod spec: the service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Pod spec: node selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod spec: tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_array")]
    pub tolerations: Option<Vec<Value>>,
    /// Pod spec: affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub affinity: Option<Value>,
    /// Pod spec: volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_array")]
    pub volumes: Option<Vec<Value>>,
    /// Pod spec: image pull secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_array")]
    pub image_pull_secrets: Option<Vec<Value>>,
    /// Pod spec: resources (pod level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub resources: Option<Value>,
}

/// Declares a predictor implementation struct: the given leading fields plus the fields that
/// KServe's `PredictorExtensionSpec` gives every implementation (storage, protocol, and the
/// inline container fields). A macro rather than `#[serde(flatten)]` because flattening hides
/// unknown fields from the warnings and muddles the CRD schema.
macro_rules! predictor_implementation {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
        #[serde(rename_all = "camelCase")]
        #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Where the model is: a path, `file://`, `http(s)://`, `s3://`, ... .
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub storage_uri: Option<String>,
            /// The serving runtime's image version.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub runtime_version: Option<String>,
            /// `v1`, `v2` or `grpc-v2`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub protocol_version: Option<String>,
            /// Storage by reference (KServe's `storage` spec).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "any_object")]
            pub storage: Option<Value>,
            /// Container: name.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// Container: image.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub image: Option<String>,
            /// Container: command.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub command: Option<Vec<String>>,
            /// Container: arguments.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub args: Option<Vec<String>>,
            /// Container: environment variables.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "any_object_array")]
            pub env: Option<Vec<Value>>,
            /// Container: resource requests and limits.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "any_object")]
            pub resources: Option<Value>,
            /// Container: ports.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "any_object_array")]
            pub ports: Option<Vec<Value>>,
            /// Container: volume mounts.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "any_object_array")]
            pub volume_mounts: Option<Vec<Value>>,
        }
    };
}

predictor_implementation! {
    /// `spec.predictor.model`: a model by format, optionally naming the serving runtime.
    ModelSpec {
        /// The model's format.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_format: Option<ModelFormatSpec>,
        /// The ServingRuntime to use (informational in embedded mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime: Option<String>,
    }
}

predictor_implementation! {
    /// `spec.predictor.<framework>`: the older shorthand, the format given by the key.
    FrameworkSpec {}
}

/// `modelFormat`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct ModelFormatSpec {
    /// `onnx`, `sklearn`, `huggingface`, ...
    #[serde(default)]
    pub name: String,
    /// The format version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `logger`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct LoggerSpec {
    /// `all`, `request` or `response` (KServe's default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where log events are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `batcher`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatcherSpec {
    /// Largest batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<i64>,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<i64>,
    /// Batcher timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// An InferenceService's observed state (`status`), with KServe's JSON names.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: PredictorReady, IngressReady, Ready, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Knative duck-type status annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The service's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The service's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Per component status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsStatus>,
    /// The model's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_status: Option<ModelStatus>,
    /// `Serverless`, `RawDeployment`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_mode: Option<String>,
    /// The ServingRuntime in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_runtime_name: Option<String>,
    /// The ClusterServingRuntime in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_serving_runtime_name: Option<String>,
}

/// A Knative-style condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `PredictorReady`, `IngressReady`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `Error`, `Warning`, `Info` or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Knative's `Addressable`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Addressable {
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `status.components`: KServe keys a map by component type; these are its three keys.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct ComponentsStatus {
    /// The predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<ComponentStatus>,
    /// The transformer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformer: Option<ComponentStatus>,
    /// The explainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explainer: Option<ComponentStatus>,
}

/// One component's revisions, traffic and endpoints.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The latest revision that became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,
    /// The latest revision created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_revision: Option<String>,
    /// The revision that had 100% before the latest rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rolledout_revision: Option<String>,
    /// The latest revision rolled out to 100%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_rolledout_revision: Option<String>,
    /// The traffic split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficTarget>,
    /// The component's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The REST endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// The gRPC endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_url: Option<String>,
    /// The component's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Quiver extension (not in KServe): desired and ready replicas, for `get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
}

/// Quiver extension: replica counts of a component.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// What the autoscaler asks for.
    pub desired: u32,
    /// How many are ready.
    pub ready: u32,
}

/// Knative's `TrafficTarget`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTarget {
    /// The revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// Percent of traffic, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    /// Whether this target follows the latest ready revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// `prev` or `latest` in KServe's canary rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The tag's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `status.modelStatus`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// Whether the endpoints reflect the current spec.
    #[serde(default)]
    pub transition_status: TransitionStatus,
    /// Active and target model state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<ModelRevisionStates>,
    /// The last failure, when loading the target model failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_info: Option<FailureInfo>,
    /// Copies of the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<ModelCopies>,
}

/// `modelStatus.transitionStatus`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransitionStatus {
    /// The endpoints reflect the current spec.
    #[default]
    UpToDate,
    /// Waiting for the target model to become active.
    InProgress,
    /// The target model failed to load.
    BlockedByFailedLoad,
    /// The spec failed validation.
    InvalidSpec,
}

/// A model's state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelState {
    /// Not yet registered.
    #[default]
    Pending,
    /// Available, not loaded (loads when used).
    Standby,
    /// Loading.
    Loading,
    /// At least one copy loaded.
    Loaded,
    /// All copies failed to load.
    FailedToLoad,
}

/// `modelStatus.states`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRevisionStates {
    /// The state of the model serving traffic.
    #[serde(default)]
    pub active_model_state: ModelState,
    /// The state of the model being rolled out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    #[schemars(schema_with = "optional_model_state")]
    pub target_model_state: Option<ModelState>,
}

/// `modelStatus.lastFailureInfo`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailureInfo {
    /// `ModelLoadFailed`, `RuntimeUnhealthy`, `InvalidPredictorSpec`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where it failed (usually a pod or revision name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The model revision the failure belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_revision_name: Option<String>,
    /// When it failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The container's last exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `modelStatus.copies`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelCopies {
    /// Copies that failed to load recently.
    #[serde(default)]
    pub failed_copies: i64,
    /// All copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_copies: Option<i64>,
}

// KServe writes `targetModelState: ""` for "none".
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ModelState>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => ModelState::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(s)).map(Some),
    }
}

// Written out because kube 2.0's rewrite of an optional enum is not a structural schema (it
// nests `type` and `nullable` inside `anyOf`), which the apiserver refuses. "" as in KServe.
fn optional_model_state(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "description": "The state of the model being rolled out, if any.",
        "type": "string",
        "nullable": true,
        "enum": ["", "Pending", "Standby", "Loading", "Loaded", "FailedToLoad"]
    })
}

// A field Quiver keeps without modelling: any object, stored as written.
fn any_object(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({ "type": "object", "nullable": true, "x-kubernetes-preserve-unknown-fields": true })
}

fn any_object_array(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}
