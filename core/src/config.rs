//! Triton's model configuration: `config.pbtxt` parsing (protobuf text format), the JSON form
//! served at `/v2/models/{m}/config`, and auto-completion from the model file.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use thiserror::Error;

use crate::{backend::ModelSignature, proto, DataType, TensorInfo};

pub use crate::proto::ModelConfig;

/// What can be wrong with a model configuration.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not a valid `ModelConfig` in protobuf text format (or JSON).
    #[error("invalid model configuration: {0}")]
    Parse(String),
    /// The configuration contradicts the model file or itself.
    #[error("model configuration does not match the model: {0}")]
    Mismatch(String),
    /// The configuration asks for something Quiver does not do.
    #[error("unsupported model configuration: {0}")]
    Unsupported(String),
}

const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_config.bin"));

fn model_config_descriptor() -> Result<MessageDescriptor, ConfigError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ConfigError::Parse(format!("descriptor set: {e}")))?;
    pool.get_message_by_name("inference.ModelConfig").ok_or_else(|| ConfigError::Parse("descriptor set lacks inference.ModelConfig".into()))
}

/// Parses a `config.pbtxt` (protobuf text format).
pub fn parse_pbtxt(text: &str) -> Result<ModelConfig, ConfigError> {
    let text = add_list_colons(text);
    let message = DynamicMessage::parse_text_format(model_config_descriptor()?, &text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    message.transcode_to::<ModelConfig>().map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Inserts the optional `:` between a field name and a `[` list.
///
/// The text format lets a message-typed field omit the colon before a list (`input [ {...} ]`),
/// and Triton's examples are written that way, but prost-reflect requires it. Quoted strings
/// and `#` comments are copied untouched.
fn add_list_colons(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut copied = 0;
    // Whether the last significant token was a field name (an identifier not following ':').
    let mut after_field_name = false;
    let mut after_colon = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                after_field_name = false;
                after_colon = false;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                    i += 1;
                }
                after_field_name = !after_colon;
                after_colon = false;
                continue;
            }
            b'[' if after_field_name => {
                out.push_str(&text[copied..i]);
                out.push(':');
                copied = i;
            }
            _ => {}
        }
        after_colon = c == b':';
        after_field_name = false;
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// Parses a configuration in Triton's JSON form (as accepted by the model load API).
pub fn parse_json(text: &str) -> Result<ModelConfig, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize(model_config_descriptor()?, &mut de).map_err(|e| ConfigError::Parse(e.to_string()))?;
    de.end().map_err(|e| ConfigError::Parse(e.to_string()))?;
    message.transcode_to::<ModelConfig>().map_err(|e| ConfigError::Parse(e.to_string()))
}

/// The configuration as Triton serves it: snake_case field names, enum names, integers as
/// numbers, and default-valued fields included.
pub fn to_json(config: &ModelConfig) -> Result<serde_json::Value, ConfigError> {
    let mut message = DynamicMessage::new(model_config_descriptor()?);
    message.transcode_from(config).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false);
    message.serialize_with_options(serde_json::value::Serializer, &options).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Fills in what a configuration leaves out from the model's own signature and checks the
/// rest against it, as Triton's auto-complete does.
///
/// - `name` defaults to the model's directory name and must equal it if given.
/// - With no inputs and outputs listed and `max_batch_size` 0, a model whose tensors all have
///   a variable first dimension gets `max_batch_size = default_max_batch_size`.
/// - Missing inputs/outputs are taken from the model; listed ones must exist in it with the same
///   datatype and compatible dims (dims exclude the batch dimension when `max_batch_size > 0`).
/// - When auto-complete chose `max_batch_size`, a model with no scheduler gets
///   `dynamic_batching {}`; no `instance_group` means
///   one CPU instance; no `version_policy` means `latest { num_versions: 1 }`.
pub fn autocomplete(
    config: &mut ModelConfig,
    model_name: &str,
    platform: &str,
    backend: &str,
    signature: &ModelSignature,
    default_max_batch_size: i32,
) -> Result<(), ConfigError> {
    if config.name.is_empty() {
        config.name = model_name.to_string();
    } else if config.name != model_name {
        return Err(ConfigError::Mismatch(format!("config name '{}' differs from the model directory name '{model_name}'", config.name)));
    }
    if config.platform.is_empty() && config.backend.is_empty() {
        config.platform = platform.to_string();
        config.backend = backend.to_string();
    } else if config.backend.is_empty() {
        config.backend = backend.to_string();
    } else if config.platform.is_empty() {
        config.platform = platform.to_string();
    }
    if config.max_batch_size < 0 {
        return Err(ConfigError::Mismatch(format!("max_batch_size {} is negative", config.max_batch_size)));
    }
    let unconfigured = config.input.is_empty() && config.output.is_empty();
    let batch_size_completed = unconfigured && config.max_batch_size == 0 && signature.supports_batching() && default_max_batch_size > 0;
    if batch_size_completed {
        config.max_batch_size = default_max_batch_size;
    }
    let batching = config.max_batch_size > 0;
    if batching && !signature.supports_batching() {
        return Err(ConfigError::Mismatch(format!(
            "max_batch_size is {} but not every input and output of the model has a variable first dimension",
            config.max_batch_size
        )));
    }
    complete_tensors(&mut config.input, &signature.inputs, batching, "input", |t| {
        let (dims, reshape) = completed_dims(&t.shape, batching);
        proto::ModelInput { name: t.name.clone(), data_type: t.datatype.to_config() as i32, dims, reshape, ..Default::default() }
    })?;
    complete_tensors(&mut config.output, &signature.outputs, batching, "output", |t| {
        let (dims, reshape) = completed_dims(&t.shape, batching);
        proto::ModelOutput { name: t.name.clone(), data_type: t.datatype.to_config() as i32, dims, reshape, ..Default::default() }
    })?;
    // Like Triton, only a batch size auto-complete chose comes with the dynamic batcher; a
    // config that sets max_batch_size and no scheduler keeps the default scheduler.
    if batch_size_completed && config.scheduling_choice.is_none() {
        config.scheduling_choice = Some(proto::model_config::SchedulingChoice::DynamicBatching(Default::default()));
    }
    if let Some(proto::model_config::SchedulingChoice::SequenceBatching(_)) = &config.scheduling_choice {
        return Err(ConfigError::Unsupported("sequence_batching is not supported".into()));
    }
    if let Some(proto::model_config::SchedulingChoice::EnsembleScheduling(_)) = &config.scheduling_choice {
        return Err(ConfigError::Unsupported("ensemble_scheduling is not supported".into()));
    }
    if config.instance_group.is_empty() {
        config.instance_group.push(proto::ModelInstanceGroup {
            name: config.name.clone(),
            kind: proto::model_instance_group::Kind::Cpu as i32,
            count: 1,
            ..Default::default()
        });
    }
    for group in &mut config.instance_group {
        if group.count < 0 {
            return Err(ConfigError::Mismatch(format!("instance_group count {} is negative", group.count)));
        }
        if group.count == 0 {
            group.count = 1;
        }
        if group.name.is_empty() {
            group.name = config.name.clone();
        }
    }
    if config.version_policy.is_none() {
        config.version_policy = Some(proto::ModelVersionPolicy {
            policy_choice: Some(proto::model_version_policy::PolicyChoice::Latest(proto::model_version_policy::Latest { num_versions: 1 })),
        });
    }
    Ok(())
}

/// Applies a KServe InferenceService `batcher { maxBatchSize, maxLatency }` to a config, on the
/// same dynamic batcher Triton's `dynamic_batching` drives: `maxBatchSize` becomes
/// `max_batch_size` and the preferred size, `maxLatency` (milliseconds) the maximum queue delay.
/// KServe's defaults are 32 and 500 ms.
pub fn apply_kserve_batcher(config: &mut ModelConfig, max_batch_size: Option<i32>, max_latency_ms: Option<u64>) {
    let max_batch_size = max_batch_size.filter(|&n| n > 0).unwrap_or(32);
    config.max_batch_size = max_batch_size;
    let mut batching = match config.scheduling_choice.take() {
        Some(proto::model_config::SchedulingChoice::DynamicBatching(db)) => db,
        _ => proto::ModelDynamicBatching::default(),
    };
    batching.preferred_batch_size = vec![max_batch_size];
    batching.max_queue_delay_microseconds = max_latency_ms.unwrap_or(500).saturating_mul(1000);
    config.scheduling_choice = Some(proto::model_config::SchedulingChoice::DynamicBatching(batching));
}

/// A config tensor (input or output) seen through the fields auto-complete checks.
pub trait ConfigTensor {
    /// The tensor's name.
    fn name(&self) -> &str;
    /// The `DataType` enum value.
    fn data_type(&self) -> i32;
    /// The dims clients see (without the batch dimension when batching).
    fn dims(&self) -> &[i64];
    /// The dims the model sees, when `reshape` differs from `dims`.
    fn reshape(&self) -> Option<&[i64]>;
}

macro_rules! config_tensor {
    ($t:ty) => {
        impl ConfigTensor for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn data_type(&self) -> i32 {
                self.data_type
            }
            fn dims(&self) -> &[i64] {
                &self.dims
            }
            fn reshape(&self) -> Option<&[i64]> {
                self.reshape.as_ref().map(|r| r.shape.as_slice())
            }
        }
    };
}
config_tensor!(proto::ModelInput);
config_tensor!(proto::ModelOutput);

fn config_dims(shape: &[i64], batching: bool) -> Vec<i64> {
    if batching {
        shape.get(1..).unwrap_or_default().to_vec()
    } else {
        shape.to_vec()
    }
}

/// The dims (and reshape) auto-complete writes for a model tensor. Config dims may not be
/// empty, so a batched tensor of rank 1 (`[batch]`, such as a classifier's labels) becomes
/// `dims: [1]` with `reshape: { shape: [] }`, as Triton's onnxruntime backend writes it.
fn completed_dims(shape: &[i64], batching: bool) -> (Vec<i64>, Option<proto::ModelTensorReshape>) {
    let dims = config_dims(shape, batching);
    if batching && dims.is_empty() {
        (vec![1], Some(proto::ModelTensorReshape { shape: Vec::new() }))
    } else {
        (dims, None)
    }
}

/// The element count of `dims` when every dim is fixed.
fn fixed_count(dims: &[i64]) -> Option<i64> {
    dims.iter().try_fold(1i64, |acc, &d| if d >= 0 { acc.checked_mul(d) } else { None })
}

fn complete_tensors<T: ConfigTensor>(
    configured: &mut Vec<T>,
    model: &[TensorInfo],
    batching: bool,
    kind: &str,
    make: impl Fn(&TensorInfo) -> T,
) -> Result<(), ConfigError> {
    for tensor in configured.iter() {
        let Some(info) = model.iter().find(|t| t.name == tensor.name()) else {
            let known: Vec<&str> = model.iter().map(|t| t.name.as_str()).collect();
            return Err(ConfigError::Mismatch(format!(
                "{kind} '{}' is not in the model (the model's {kind}s are {known:?})",
                tensor.name()
            )));
        };
        let datatype = proto::DataType::try_from(tensor.data_type()).ok().and_then(DataType::from_config);
        if datatype != Some(info.datatype) {
            return Err(ConfigError::Mismatch(format!(
                "{kind} '{}' has data_type {} in the config but {} in the model",
                tensor.name(),
                proto::DataType::try_from(tensor.data_type()).map(|d| d.as_str_name()).unwrap_or("unknown"),
                info.datatype.to_config().as_str_name()
            )));
        }
        if tensor.dims().is_empty() {
            return Err(ConfigError::Mismatch(format!("{kind} '{}' has empty dims", tensor.name())));
        }
        // With a reshape, the model sees the reshaped dims; clients see `dims`.
        let model_facing = tensor.reshape().unwrap_or(tensor.dims());
        if let (Some(reshape), Some(a), Some(b)) = (tensor.reshape(), fixed_count(tensor.dims()), tensor.reshape().and_then(fixed_count)) {
            if a != b {
                return Err(ConfigError::Mismatch(format!(
                    "{kind} '{}': dims {:?} and reshape {:?} have different element counts",
                    tensor.name(),
                    tensor.dims(),
                    reshape
                )));
            }
        }
        let model_dims = config_dims(&info.shape, batching);
        let compatible =
            model_dims.len() == model_facing.len() && model_dims.iter().zip(model_facing).all(|(&m, &c)| m == -1 || c == -1 || m == c);
        if !compatible {
            return Err(ConfigError::Mismatch(format!(
                "{kind} '{}' has {} {:?} in the config but the model has {:?}{}",
                tensor.name(),
                if tensor.reshape().is_some() { "reshape" } else { "dims" },
                model_facing,
                model_dims,
                if batching { " (excluding the batch dimension)" } else { "" }
            )));
        }
    }
    for info in model {
        if !configured.iter().any(|t| t.name() == info.name) {
            configured.push(make(info));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::model_config::SchedulingChoice;

    fn signature(batch: bool) -> ModelSignature {
        let first = if batch { -1 } else { 1 };
        ModelSignature {
            inputs: vec![TensorInfo { name: "x".into(), datatype: DataType::Fp32, shape: vec![first, 16] }],
            outputs: vec![TensorInfo { name: "y".into(), datatype: DataType::Fp32, shape: vec![first, 4] }],
        }
    }

    const FULL: &str = r#"
        name: "mlp"
        platform: "onnxruntime_onnx"
        max_batch_size: 8
        version_policy: { specific { versions: [1, 3] } }
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
        instance_group [ { count: 2 kind: KIND_CPU } ]
        dynamic_batching {
          preferred_batch_size: [ 4, 8 ]
          max_queue_delay_microseconds: 100
          default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 max_queue_size: 16 }
          priority_queue_policy { key: 1 value: { max_queue_size: 4 } }
        }
        parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
    "#;

    #[test]
    fn parses_triton_text_format() {
        let config = parse_pbtxt(FULL).unwrap();
        assert_eq!(config.name, "mlp");
        assert_eq!(config.max_batch_size, 8);
        assert_eq!(config.input[0].dims, vec![16]);
        assert_eq!(config.input[0].data_type, proto::DataType::TypeFp32 as i32);
        assert_eq!(config.instance_group[0].count, 2);
        let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice else { panic!("no batcher") };
        assert_eq!(db.preferred_batch_size, vec![4, 8]);
        assert_eq!(db.max_queue_delay_microseconds, 100);
        assert_eq!(db.priority_queue_policy[&1].max_queue_size, 4);
        assert_eq!(config.parameters["intra_op_thread_count"].string_value, "2");
    }

    #[test]
    fn list_colons_are_optional_but_strings_and_comments_are_untouched() {
        assert_eq!(add_list_colons("input [ { dims: [1] } ]"), "input :[ { dims: [1] } ]");
        assert_eq!(add_list_colons("a: [1] b [2]"), "a: [1] b :[2]");
        assert_eq!(add_list_colons("name: \"x [y]\" # z [w]\nk [1]"), "name: \"x [y]\" # z [w]\nk :[1]");
        assert_eq!(add_list_colons("s: 'q\\' [' t [1]"), "s: 'q\\' [' t :[1]");
        let config = parse_pbtxt("output [ { name: \"y\" data_type: TYPE_INT64 dims: [ -1 ] } ]").unwrap();
        assert_eq!(config.output[0].dims, vec![-1]);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(parse_pbtxt("max_batch_size: \"eight\""), Err(ConfigError::Parse(_))));
        assert!(matches!(parse_pbtxt("no_such_field: 1"), Err(ConfigError::Parse(_))));
        assert!(matches!(parse_pbtxt("input [ { name: \"x\" data_type: TYPE_NOPE } ]"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn json_form_matches_triton() {
        let config = parse_pbtxt(FULL).unwrap();
        let json = to_json(&config).unwrap();
        assert_eq!(json["max_batch_size"], 8);
        assert_eq!(json["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(json["input"][0]["dims"], serde_json::json!([16]));
        assert_eq!(json["dynamic_batching"]["preferred_batch_size"], serde_json::json!([4, 8]));
        assert_eq!(json["version_policy"]["specific"]["versions"], serde_json::json!([1, 3]));
        // Default-valued fields are present, as in Triton's output.
        assert_eq!(json["input"][0]["is_shape_tensor"], false);
        let back = parse_json(&json.to_string()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn kserve_batcher_maps_onto_dynamic_batching() {
        let mut config = parse_pbtxt("max_batch_size: 4 dynamic_batching { preserve_ordering: true }").unwrap();
        apply_kserve_batcher(&mut config, Some(16), Some(20));
        assert_eq!(config.max_batch_size, 16);
        let Some(SchedulingChoice::DynamicBatching(db)) = &config.scheduling_choice else { panic!() };
        assert_eq!(db.preferred_batch_size, vec![16]);
        assert_eq!(db.max_queue_delay_microseconds, 20_000);
        assert!(db.preserve_ordering, "other batcher settings are kept");
        let mut defaults = ModelConfig::default();
        apply_kserve_batcher(&mut defaults, None, None);
        assert_eq!(defaults.max_batch_size, 32);
        let Some(SchedulingChoice::DynamicBatching(db)) = &defaults.scheduling_choice else { panic!() };
        assert_eq!(db.max_queue_delay_microseconds, 500_000);
    }

    #[test]
    fn autocomplete_fills_an_empty_config() {
        let mut config = ModelConfig::default();
        autocomplete(&mut config, "m", "onnxruntime_onnx", "onnxruntime", &signature(true), 4).unwrap();
        assert_eq!(config.name, "m");
        assert_eq!(config.platform, "onnxruntime_onnx");
        assert_eq!(config.max_batch_size, 4);
        assert_eq!(config.input[0].dims, vec![16]);
        assert_eq!(config.output[0].dims, vec![4]);
        assert!(matches!(config.scheduling_choice, Some(SchedulingChoice::DynamicBatching(_))));
        assert_eq!(config.instance_group[0].count, 1);

        let labels = ModelSignature {
            inputs: signature(true).inputs,
            outputs: vec![TensorInfo { name: "y".into(), datatype: DataType::Int64, shape: vec![-1] }],
        };
        let mut config = ModelConfig::default();
        autocomplete(&mut config, "m", "onnxruntime_onnx", "onnxruntime", &labels, 4).unwrap();
        assert_eq!(config.output[0].dims, vec![1]);
        assert_eq!(config.output[0].reshape, Some(proto::ModelTensorReshape { shape: vec![] }));

        let mut fixed = ModelConfig::default();
        autocomplete(&mut fixed, "m", "onnxruntime_onnx", "onnxruntime", &signature(false), 4).unwrap();
        assert_eq!(fixed.max_batch_size, 0);
        assert_eq!(fixed.input[0].dims, vec![1, 16]);
        assert!(fixed.scheduling_choice.is_none());
    }

    #[test]
    fn autocomplete_checks_what_is_given() {
        let mut config = parse_pbtxt(FULL).unwrap();
        autocomplete(&mut config, "mlp", "onnxruntime_onnx", "onnxruntime", &signature(true), 4).unwrap();
        assert_eq!(config.max_batch_size, 8);
        let mut explicit = parse_pbtxt("max_batch_size: 8").unwrap();
        autocomplete(&mut explicit, "mlp", "onnxruntime_onnx", "onnxruntime", &signature(true), 4).unwrap();
        assert!(explicit.scheduling_choice.is_none(), "an explicit max_batch_size keeps the default scheduler");

        let check = |text: &str, sig: ModelSignature| {
            let mut config = parse_pbtxt(text).unwrap();
            autocomplete(&mut config, "mlp", "onnxruntime_onnx", "onnxruntime", &sig, 4)
        };
        assert!(matches!(check("name: \"other\"", signature(true)), Err(ConfigError::Mismatch(_))));
        assert!(check("input [{ name: \"z\" data_type: TYPE_FP32 dims: [16] }]", signature(true)).is_err());
        assert!(check("max_batch_size: 4 input [{ name: \"x\" data_type: TYPE_INT64 dims: [16] }]", signature(true)).is_err());
        assert!(check("max_batch_size: 4 input [{ name: \"x\" data_type: TYPE_FP32 dims: [15] }]", signature(true)).is_err());
        assert!(check("max_batch_size: 4", signature(false)).is_err());
        assert!(check("max_batch_size: -1", signature(true)).is_err());
        // Triton's own form for a classifier label: dims [1], reshaped to the model's [].
        let labels = ModelSignature {
            inputs: signature(true).inputs,
            outputs: vec![TensorInfo { name: "y".into(), datatype: DataType::Int64, shape: vec![-1] }],
        };
        assert!(check("max_batch_size: 4 output [{ name: \"y\" data_type: TYPE_INT64 dims: [1] reshape: { shape: [] } }]", labels.clone())
            .is_ok());
        assert!(check("max_batch_size: 4 output [{ name: \"y\" data_type: TYPE_INT64 dims: [1] }]", labels.clone()).is_err());
        assert!(check("max_batch_size: 4 output [{ name: \"y\" data_type: TYPE_INT64 dims: [2] reshape: { shape: [] } }]", labels).is_err());
        assert!(check(
            "max_batch_size: 4 input [{ name: \"x\" data_type: TYPE_FP32 dims: [4, 4] reshape: { shape: [16] } }]",
            signature(true)
        )
        .is_ok());
        assert!(check("max_batch_size: 4 input [{ name: \"x\" data_type: TYPE_FP32 dims: [] }]", signature(true)).is_err());
        // Without batching, dims are the full shape.
        assert!(check("input [{ name: \"x\" data_type: TYPE_FP32 dims: [1, 16] }]", signature(false)).is_ok());
    }
}
