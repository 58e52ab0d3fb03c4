//! A loaded model version: its completed configuration, its backend model and its scheduler,
//! and the request checks done before anything is queued.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use quiver_core::{
    config::{self, ConfigError},
    proto, Accelerator, Backend, DataType, Encoded, EngineError, Engines, LoadOptions as BackendOptions, Model, ModelConfig, Optimization,
    Placement, Tensor, TensorInfo,
};
use thiserror::Error;

use crate::{
    infer::{InferInput, InferOutput, InferRequest, InferResponse, Timing},
    metrics::VersionMetrics,
    repository::ModelDirectory,
    scheduler::{policy::queue_policy, ScheduleParams, Scheduler, SchedulerOptions},
    validate::ValidRequest,
    ServeError,
};

/// Why a model version could not be loaded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// No engine serves the config's platform/backend.
    #[error("{0}")]
    UnsupportedPlatform(#[from] EngineError),
    /// The backend failed to load the file.
    #[error("{0}")]
    Backend(String),
    /// The config does not fit the model.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The executor threads could not be started.
    #[error("failed to start executor threads: {0}")]
    Threads(String),
    /// A `model_warmup` sample is invalid or failed to run.
    #[error("warmup: {0}")]
    Warmup(String),
}

/// Settings that apply to every model load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `max_batch_size` given by auto-complete to models that can batch (Triton's
    /// `default-max-batch-size` backend setting, 4 by default).
    pub default_max_batch_size: i32,
    /// The engines models run on; the config's platform/backend (or the version's files)
    /// choose one per model.
    pub engines: Engines,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { default_max_batch_size: 4, engines: Engines::default() }
    }
}

/// What a model version is, without its weights: its name, completed configuration and
/// tensors. It outlives the loaded model when the model scales to zero, so metadata, config and
/// readiness never load weights.
#[derive(Debug)]
pub struct VersionInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) config: ModelConfig,
    /// Inputs in the backend's order (full shapes, -1 for variable dims).
    pub(crate) inputs: Vec<TensorInfo>,
    pub(crate) outputs: Vec<TensorInfo>,
    /// Per input: the dims the model sees (without batch), when the config reshapes it.
    pub(crate) input_reshape: Vec<Option<Vec<i64>>>,
    /// Per output: the dims clients see (without batch), when the config reshapes it.
    pub(crate) output_reshape: Vec<Option<Vec<i64>>>,
    /// The version's metric handles: a request refused by its checks counts as a failure even
    /// while the version is scaled to zero.
    pub(crate) metrics: VersionMetrics,
}

impl VersionInfo {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, as the protocol spells it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The completed configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The platform reported in metadata.
    pub fn platform(&self) -> &str {
        if self.config.platform.is_empty() {
            &self.config.backend
        } else {
            &self.config.platform
        }
    }

    /// Inputs as the metadata reports them (full shapes, -1 for variable dims).
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// Outputs as the metadata reports them.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
}

/// A model version ready to serve.
#[derive(Debug)]
pub struct ModelVersion {
    info: Arc<VersionInfo>,
    /// Index of each config output in the backend's output order.
    output_order: Vec<usize>,
    /// Most padded tokens a request of a text model may bring (its share of a batch).
    max_batch_tokens: usize,
    tokens: TokenCounter,
    scheduler: Scheduler,
    metrics: VersionMetrics,
}

/// The model, kept to count the tokens of text requests before they are queued.
struct TokenCounter(Arc<dyn Model>);

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounter")
    }
}

/// Token budget of a batch when the config sets no `max_batch_tokens` parameter
/// (text-embeddings-inference's default). Models that count no tokens never reach it.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 16384;

/// A string parameter of the config (`parameters { key value { string_value } }`).
fn config_parameter<'a>(config: &'a ModelConfig, key: &str) -> Option<&'a str> {
    config.parameters.get(key).map(|p| p.string_value.as_str())
}

/// The config's `max_batch_tokens` parameter, or the default.
pub(crate) fn max_batch_tokens(config: &ModelConfig) -> Result<usize, LoadError> {
    match config_parameter(config, "max_batch_tokens") {
        None => Ok(DEFAULT_MAX_BATCH_TOKENS),
        Some(text) => text.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            LoadError::Config(ConfigError::Mismatch(format!("parameter max_batch_tokens is '{text}', expected a positive integer")))
        }),
    }
}

/// Where the config's `instance_group`s put the model: the first GPU named by a `KIND_GPU`
/// group (GPU 0 when it names none), else the CPU.
fn placement(config: &ModelConfig) -> Placement {
    let gpu = proto::model_instance_group::Kind::Gpu as i32;
    config
        .instance_group
        .iter()
        .find(|g| g.kind == gpu)
        .map_or(Placement::Cpu, |g| Placement::Gpu(g.gpus.first().and_then(|&o| usize::try_from(o).ok()).unwrap_or(0)))
}

/// The config's `optimization` settings, as the engines take them.
fn optimization(config: &ModelConfig) -> Optimization {
    let Some(policy) = &config.optimization else { return Optimization::default() };
    let accelerators = |list: &[proto::model_optimization_policy::execution_accelerators::Accelerator]| {
        list.iter().map(|a| Accelerator { name: a.name.clone(), parameters: a.parameters.clone().into_iter().collect() }).collect()
    };
    let (gpu, cpu) = policy
        .execution_accelerators
        .as_ref()
        .map(|e| (accelerators(&e.gpu_execution_accelerator), accelerators(&e.cpu_execution_accelerator)))
        .unwrap_or_default();
    Optimization { graph_level: policy.graph.as_ref().map(|g| g.level), gpu_accelerators: gpu, cpu_accelerators: cpu }
}

/// Loads the model file for the config's placement. A GPU load that fails falls back to the
/// CPU only when the config's `gpu_fallback` parameter is `cpu`.
fn load_model(backend: &dyn Backend, path: &Path, config: &ModelConfig, name: &str) -> Result<Box<dyn Model>, LoadError> {
    let parameters = config.parameters.iter().map(|(k, v)| (k.clone(), v.string_value.clone())).collect();
    let options = BackendOptions { placement: placement(config), parameters, optimization: optimization(config) };
    match backend.load_with(path, &options) {
        Err(e) if options.placement != Placement::Cpu && config_parameter(config, "gpu_fallback") == Some("cpu") => {
            tracing::warn!(model = %name, "GPU load failed, falling back to the CPU as configured (gpu_fallback: cpu): {e}");
            backend.load_with(path, &BackendOptions { placement: Placement::Cpu, ..options })
        }
        result => result,
    }
    .map_err(|e| LoadError::Backend(e.to_string()))
}

impl ModelVersion {
    /// Loads `version` of the model in `dir`. Blocking: call it off the reactor.
    pub fn load(dir: &ModelDirectory, version: u64, options: &LoadOptions) -> Result<ModelVersion, LoadError> {
        let version_dir = dir.path.join(version.to_string());
        let engine = options.engines.select(&dir.config.platform, &dir.config.backend, &version_dir)?;
        let backend = engine.as_ref();
        let file = if dir.config.default_model_filename.is_empty() {
            backend.default_model_filename()
        } else {
            dir.config.default_model_filename.as_str()
        };
        let file = crate::repository::relative_file(file)
            .map_err(|e| LoadError::Config(ConfigError::Mismatch(format!("default_model_filename {e}"))))?;
        let path = version_dir.join(file);
        let model: Arc<dyn Model> = Arc::from(load_model(backend, &path, &dir.config, &dir.name)?);
        let mut config = dir.config.clone();
        config::autocomplete(
            &mut config,
            &dir.name,
            backend.platform(),
            model.engine().unwrap_or(backend.name()),
            model.signature(),
            options.default_max_batch_size,
        )?;
        let batching = config.max_batch_size > 0;
        let full_shape = |dims: &[i64]| if batching { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.to_vec() };
        let datatype = |dt: i32| {
            proto::DataType::try_from(dt)
                .ok()
                .and_then(DataType::from_config)
                .ok_or_else(|| LoadError::Config(ConfigError::Mismatch(format!("invalid data_type {dt}"))))
        };
        let inputs = config
            .input
            .iter()
            .map(|i| Ok(TensorInfo { name: i.name.clone(), datatype: datatype(i.data_type)?, shape: full_shape(&i.dims) }))
            .collect::<Result<Vec<_>, LoadError>>()?;
        let outputs = config
            .output
            .iter()
            .map(|o| Ok(TensorInfo { name: o.name.clone(), datatype: datatype(o.data_type)?, shape: full_shape(&o.dims) }))
            .collect::<Result<Vec<_>, LoadError>>()?;
        let signature = model.signature();
        let output_order = outputs
            .iter()
            .map(|o| signature.outputs.iter().position(|s| s.name == o.name))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LoadError::Config(ConfigError::Mismatch("config output missing from the model".into())))?;
        // The backend takes inputs in its own order; keep the config in that order too so
        // validation can place tensors directly.
        let inputs = signature
            .inputs
            .iter()
            .map(|s| inputs.iter().find(|i| i.name == s.name).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LoadError::Config(ConfigError::Mismatch("model input missing from the config".into())))?;

        let input_reshape = inputs
            .iter()
            .map(|i| {
                let configured = config.input.iter().find(|c| c.name == i.name);
                configured.and_then(|c| c.reshape.as_ref().map(|r| r.shape.clone()))
            })
            .collect();
        let output_reshape = config.output.iter().map(|o| o.reshape.as_ref().map(|_| o.dims.clone())).collect();

        let instances: usize = config.instance_group.iter().map(|g| g.count.max(1) as usize).sum();
        // tract executes a batch on the calling thread, so each instance is one busy thread;
        // more instances than cores only adds contention.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if instances > cores {
            tracing::warn!(model = %dir.name, "{instances} instances on {cores} cores: instances beyond the core count add contention, not throughput");
        }
        let (mut policy, preserve_ordering) = queue_policy(&config).map_err(|e| LoadError::Config(ConfigError::Mismatch(e)))?;
        let max_batch_tokens = max_batch_tokens(&config)?;
        policy.max_batch_tokens = Some(max_batch_tokens);
        let tokens = TokenCounter(model.clone());
        let version = version.to_string();
        let metrics = VersionMetrics::new(&dir.name, &version);
        let label = format!("{}:{}", dir.name, version);
        let scheduler = Scheduler::start(&label, model, SchedulerOptions { instances, policy, preserve_ordering }, metrics.clone())
            .map_err(|e| LoadError::Threads(e.to_string()))?;
        Ok(ModelVersion {
            info: Arc::new(VersionInfo {
                name: dir.name.clone(),
                version,
                config,
                inputs,
                outputs,
                input_reshape,
                output_reshape,
                metrics: metrics.clone(),
            }),
            output_order,
            max_batch_tokens,
            tokens,
            scheduler,
            metrics,
        })
    }

    /// Lets `n` of its instances execute at once (an autoscaler's replicas in one process);
    /// returns the number now active.
    pub fn set_active_instances(&self, n: usize) -> usize {
        self.scheduler.set_active(n)
    }

    /// Instances allowed to execute at once, and instances started.
    pub fn instances(&self) -> (usize, usize) {
        self.scheduler.instances()
    }

    /// Its name, configuration and tensors.
    pub fn info(&self) -> &Arc<VersionInfo> {
        &self.info
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The version, as the protocol spells it.
    pub fn version(&self) -> &str {
        &self.info.version
    }

    /// The completed configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.info.config
    }

    /// Inputs as the metadata reports them (full shapes, -1 for variable dims).
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.info.inputs
    }

    /// Outputs as the metadata reports them.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.info.outputs
    }

    /// Runs the configuration's `model_warmup` samples (Triton's warmup: each sample `count`
    /// times, zero, random or file data) through the same path as a request, so a version is
    /// marked ready only after it has served them. Warmups are not counted in the metrics.
    pub async fn warmup(&self, model_dir: &Path) -> Result<(), LoadError> {
        for sample in &self.info.config.model_warmup {
            let request =
                warmup_request(sample, &self.info, model_dir).map_err(|e| LoadError::Warmup(format!("sample '{}': {e}", sample.name)))?;
            let request = self.info.validate(request).map_err(|e| LoadError::Warmup(format!("sample '{}': {e}", sample.name)))?;
            for _ in 0..sample.count.max(1) {
                self.infer_unrecorded(request.clone())
                    .await
                    .map_err(|e| LoadError::Warmup(format!("sample '{}' failed: {e}", sample.name)))?;
            }
        }
        Ok(())
    }

    /// Serves one checked request (see [`VersionInfo::validate`]): queues it, executes it and
    /// records metrics.
    pub async fn infer(&self, request: ValidRequest) -> Result<InferResponse, ServeError> {
        let started = Instant::now();
        let result = self.infer_unrecorded(request).await;
        match &result {
            Ok((_, batch_size)) => self.metrics.request_succeeded(*batch_size, started.elapsed()),
            Err(e) => self.metrics.request_failed(e.failure_reason(), started.elapsed()),
        }
        result.map(|(response, _)| response)
    }

    async fn infer_unrecorded(&self, request: ValidRequest) -> Result<(InferResponse, u64), ServeError> {
        let ValidRequest { id, inputs, batch_size, outputs: wanted, priority, timeout } = request;
        let prepared = self.check_tokens(&inputs).await?;
        let tokens = prepared.as_ref().map(Encoded::count);
        let params = ScheduleParams { rows: batch_size as usize, tokens: tokens.map_or(0, |t| t.longest), priority, timeout };
        let execution = match prepared {
            Some(prepared) => self.scheduler.execute_prepared(inputs, prepared, params).await?,
            None => self.scheduler.execute(inputs, params).await?,
        };
        let timing = Timing { queue: execution.queue, compute: execution.compute };
        let produced = execution.outputs.len();
        let mut outputs: Vec<Option<Tensor>> = execution.outputs.into_iter().map(Some).collect();
        let mut selected = Vec::with_capacity(wanted.len());
        for ix in wanted {
            let tensor = self
                .output_order
                .get(ix)
                .and_then(|&backend_ix| outputs.get_mut(backend_ix))
                .and_then(Option::take)
                .ok_or_else(|| ServeError::Inference(format!("the backend returned {produced} outputs")))?;
            let tensor = match &self.info.output_reshape[ix] {
                Some(dims) => self.info.reshape(tensor, dims).map_err(|e| {
                    ServeError::Inference(format!("output '{}' does not fit its configured dims {dims:?}: {e}", self.info.outputs[ix].name))
                })?,
                None => tensor,
            };
            selected.push(InferOutput { name: self.info.outputs[ix].name.clone(), tensor });
        }
        let response = InferResponse {
            model_name: self.info.name.clone(),
            model_version: self.info.version.clone(),
            id,
            outputs: selected,
            tokens,
            timing,
        };
        Ok((response, batch_size))
    }

    /// Tokenizes a text model's request once, on the tokenization workers (the backend also
    /// rejects text it cannot take here, before the request can join a batch), and holds the
    /// request to the batch token budget: a request that alone pads past it could never be
    /// batched within it. Models that prepare nothing return at once.
    async fn check_tokens(&self, inputs: &[Tensor]) -> Result<Option<Encoded>, ServeError> {
        let model = &self.tokens.0;
        if !model.prepares() {
            return Ok(None);
        }
        // Admission before the expensive part: a request the queue would refuse is refused
        // before it is tokenized.
        if self.scheduler.is_full() {
            return Err(ServeError::QueueFull(format!(
                "the queue of model '{}' is full ({} requests); not tokenized",
                self.info.name,
                self.scheduler.capacity()
            )));
        }
        // Tensors share their buffers: the clone for the worker copies no text.
        let (model, job_inputs) = (model.clone(), inputs.to_vec());
        let Some(prepared) = crate::tokenize::shared()?.run(move || model.prepare(&job_inputs)).await?? else { return Ok(None) };
        let count = prepared.count();
        // A text model's input elements are its sequences, whether or not the model batches.
        let rows = inputs.first().map_or(1, Tensor::element_count);
        let padded = crate::scheduler::queue::padded_tokens(rows, count.longest);
        if padded > self.max_batch_tokens {
            return Err(ServeError::InvalidInput(format!(
                "the request pads to {padded} tokens ({rows} rows of up to {} tokens), more than max_batch_tokens {} of model '{}': send fewer or shorter texts per request",
                count.longest, self.max_batch_tokens, self.info.name
            )));
        }
        Ok(Some(prepared))
    }
}

/// Largest warmup tensor, in bytes: warmup data is built in memory from the config.
const MAX_WARMUP_TENSOR_BYTES: usize = 1 << 30;

/// The request of one `model_warmup` sample: every input named in the sample, with the
/// sample's batch size (when the model batches) and zero, random or file data. A data file is
/// raw little-endian tensor bytes in `<model>/warmup/<file>`, as Triton reads it.
fn warmup_request(sample: &proto::ModelWarmup, info: &VersionInfo, model_dir: &Path) -> Result<InferRequest, String> {
    use proto::model_warmup::input::InputDataType;
    let batching = info.config.max_batch_size > 0;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut inputs = Vec::with_capacity(sample.inputs.len());
    for (name, input) in &sample.inputs {
        let datatype = proto::DataType::try_from(input.data_type)
            .ok()
            .and_then(DataType::from_config)
            .ok_or_else(|| format!("input '{name}' has an invalid data_type"))?;
        let mut shape = Vec::with_capacity(input.dims.len() + 1);
        if batching {
            shape.push(sample.batch_size.max(1) as usize);
        }
        for &d in &input.dims {
            shape.push(usize::try_from(d).map_err(|_| format!("input '{name}' has a negative dimension {d}"))?);
        }
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the shape overflows")?;
        let element_size = datatype.element_size().unwrap_or(4);
        let size = elements.checked_mul(element_size).filter(|&n| n <= MAX_WARMUP_TENSOR_BYTES).ok_or("the tensor is too large")?;
        let data = match &input.input_data_type {
            Some(InputDataType::InputDataFile(file)) => {
                let path =
                    model_dir.join("warmup").join(crate::repository::relative_file(file).map_err(|e| format!("input_data_file {e}"))?);
                let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                if !meta.is_file() {
                    return Err(format!("{}: not a regular file", path.display()));
                }
                let len = meta.len();
                // The file must hold the tensor (BYTES: at most the bound); checked before reading.
                let fits = if datatype == DataType::Bytes { len <= MAX_WARMUP_TENSOR_BYTES as u64 } else { len == size as u64 };
                if !fits {
                    return Err(format!("{}: {len} bytes, the input needs {size}", path.display()));
                }
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Some(InputDataType::RandomData(true)) if datatype != DataType::Bytes => (0..size)
                .map(|_| {
                    // xorshift: any bytes do for a warmup; floats get small exponents below.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 56) as u8 & 0x3f
                })
                .collect(),
            // Zero data; BYTES elements are empty strings (a zero length each).
            _ => vec![0; size],
        };
        let tensor = Tensor::from_bytes(datatype, shape, data.into()).map_err(|e| format!("input '{name}': {e}"))?;
        inputs.push(InferInput { name: name.clone(), tensor });
    }
    Ok(InferRequest { inputs, ..Default::default() })
}

/// How long a model took to load, for logs.
pub fn elapsed_ms(since: Instant) -> u128 {
    Duration::as_millis(&since.elapsed())
}
