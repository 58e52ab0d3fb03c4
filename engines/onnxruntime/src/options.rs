//! Triton's onnxruntime backend settings, read from the model config, applied to a session.
//!
//! Parameters (`parameters { key value { string_value } }`): `intra_op_thread_count`,
//! `inter_op_thread_count`, `execution_mode` (0 sequential, 1 parallel), `enable_mem_arena`,
//! `enable_mem_pattern`, `share_session_between_instances`, and any ONNX Runtime session
//! configuration key (`session.…`, e.g. Triton's `session.use_device_allocator_for_initializers`
//! or `session.intra_op.allow_spinning`), passed to the session as given.
//! `optimization { graph { level } }`:
//! -1 basic, 1 basic and extended, 2 none, unset or 0 all (Triton's mapping). Execution
//! accelerators: on a GPU placement CUDA is always registered first-tried after any `tensorrt`
//! named in `gpu_execution_accelerator`; `cpu_execution_accelerator` (OpenVINO) is refused with
//! a clear error, since the wheels Quiver loads do not carry it.

use std::collections::BTreeMap;

use ort::{
    ep::{self, ArbitrarilyConfigurableExecutionProvider, ExecutionProviderDispatch},
    session::builder::{GraphOptimizationLevel, SessionBuilder},
};
use quiver_core::{BackendError, LoadOptions, Placement};

/// The session settings of one model, parsed once at load.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    intra_op_threads: Option<usize>,
    inter_op_threads: Option<usize>,
    parallel: bool,
    mem_arena: Option<bool>,
    mem_pattern: Option<bool>,
    level: GraphOptimizationLevel,
    /// Whether every instance runs on one session (one batch at a time) rather than each on its own.
    pub(crate) share_session: bool,
    providers: Vec<(String, BTreeMap<String, String>)>,
    /// ONNX Runtime session configuration entries (`session.` keys), in key order.
    config_entries: Vec<(String, String)>,
    placement: Placement,
}

fn invalid(key: &str, value: &str, expected: &str) -> BackendError {
    BackendError::Load(format!("parameter {key} is '{value}', expected {expected}"))
}

fn count(parameters: &BTreeMap<String, String>, key: &str) -> Result<Option<usize>, BackendError> {
    match parameters.get(key) {
        None => Ok(None),
        // 0 asks for ONNX Runtime's default, as in Triton.
        Some(v) => v.trim().parse::<usize>().map(|n| (n > 0).then_some(n)).map_err(|_| invalid(key, v, "a non-negative integer")),
    }
}

fn flag(parameters: &BTreeMap<String, String>, key: &str) -> Result<Option<bool>, BackendError> {
    match parameters.get(key).map(|v| v.trim()) {
        None => Ok(None),
        Some("1" | "true") => Ok(Some(true)),
        Some("0" | "false") => Ok(Some(false)),
        Some(v) => Err(invalid(key, v, "0, 1, true or false")),
    }
}

impl SessionSettings {
    /// Reads the settings from a load's options; a malformed value is a load error naming it.
    pub(crate) fn from_options(options: &LoadOptions) -> Result<SessionSettings, BackendError> {
        let p = &options.parameters;
        let parallel = match p.get("execution_mode").map(|v| v.trim()) {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(invalid("execution_mode", v, "0 (sequential) or 1 (parallel)")),
        };
        let level = match options.optimization.graph_level {
            None | Some(0) => GraphOptimizationLevel::All,
            Some(-1) => GraphOptimizationLevel::Level1,
            Some(1) => GraphOptimizationLevel::Level2,
            Some(2) => GraphOptimizationLevel::Disable,
            Some(other) => {
                return Err(BackendError::Load(format!(
                    "optimization.graph.level is {other}; onnxruntime takes -1 (basic), 1 (extended), 2 (disabled) or 0 (all)"
                )))
            }
        };
        if let Some(cpu) = options.optimization.cpu_accelerators.first() {
            return Err(BackendError::Load(format!(
                "cpu_execution_accelerator '{}' is not available: the onnxruntime engine runs the CPU provider only (remove it)",
                cpu.name
            )));
        }
        let mut providers = Vec::new();
        if let Placement::Gpu(_) = options.placement {
            for accelerator in &options.optimization.gpu_accelerators {
                match accelerator.name.as_str() {
                    "tensorrt" | "cuda" => providers.push((accelerator.name.clone(), accelerator.parameters.clone())),
                    other => {
                        return Err(BackendError::Load(format!(
                            "gpu_execution_accelerator '{other}' is unknown; onnxruntime takes 'tensorrt' or 'cuda'"
                        )))
                    }
                }
            }
            // CUDA always backs TensorRT for the nodes it cannot take, as in Triton.
            if !providers.iter().any(|(name, _)| name == "cuda") {
                providers.push(("cuda".to_string(), BTreeMap::new()));
            }
        }
        Ok(SessionSettings {
            intra_op_threads: count(p, "intra_op_thread_count")?,
            inter_op_threads: count(p, "inter_op_thread_count")?,
            parallel,
            mem_arena: flag(p, "enable_mem_arena")?,
            mem_pattern: flag(p, "enable_mem_pattern")?,
            level,
            share_session: flag(p, "share_session_between_instances")?.unwrap_or(false),
            providers,
            config_entries: p.iter().filter(|(k, _)| k.starts_with("session.")).map(|(k, v)| (k.clone(), v.trim().to_string())).collect(),
            placement: options.placement.clone(),
        })
    }

    /// Applies the settings to a fresh session builder.
    pub(crate) fn apply(&self, mut builder: SessionBuilder) -> Result<SessionBuilder, BackendError> {
        let fail = |e: ort::Error<SessionBuilder>| BackendError::Load(e.to_string());
        builder = builder.with_optimization_level(self.level).map_err(fail)?;
        if let Some(n) = self.intra_op_threads {
            builder = builder.with_intra_threads(n).map_err(fail)?;
        }
        if let Some(n) = self.inter_op_threads {
            builder = builder.with_inter_threads(n).map_err(fail)?;
        }
        builder = builder.with_parallel_execution(self.parallel).map_err(fail)?;
        if let Some(enable) = self.mem_pattern {
            builder = builder.with_memory_pattern(enable).map_err(fail)?;
        }
        for (key, value) in &self.config_entries {
            builder = builder.with_config_entry(key, value).map_err(fail)?;
        }
        let mut providers: Vec<ExecutionProviderDispatch> = Vec::new();
        let device = match self.placement {
            Placement::Gpu(ordinal) => i32::try_from(ordinal).map_err(|_| BackendError::Load(format!("GPU {ordinal} is out of range")))?,
            Placement::Cpu => 0,
        };
        for (name, parameters) in &self.providers {
            let dispatch: ExecutionProviderDispatch = if name == "tensorrt" {
                let mut trt = ep::TensorRT::default().with_device_id(device);
                for (k, v) in parameters {
                    trt = trt.with_arbitrary_config(tensorrt_key(k, v).0, tensorrt_key(k, v).1);
                }
                trt.build().error_on_failure()
            } else {
                let mut cuda = ep::CUDA::default().with_device_id(device);
                for (k, v) in parameters {
                    cuda = cuda.with_arbitrary_config(k, v);
                }
                cuda.build().error_on_failure()
            };
            providers.push(dispatch);
        }
        let mut cpu = ep::CPU::default();
        if let Some(enable) = self.mem_arena {
            cpu = cpu.with_arena_allocator(enable);
        }
        providers.push(cpu.build());
        builder.with_execution_providers(providers).map_err(|e| {
            BackendError::Load(format!("{e} (a GPU instance needs the onnxruntime-gpu wheel and the CUDA/cuDNN libraries it links)"))
        })
    }
}

/// Triton's TensorRT parameter names to ONNX Runtime's provider options (Triton's mapping table).
fn tensorrt_key(key: &str, value: &str) -> (String, String) {
    match (key, value) {
        ("precision_mode", "FP16") => ("trt_fp16_enable".into(), "1".into()),
        ("precision_mode", "INT8") => ("trt_int8_enable".into(), "1".into()),
        ("precision_mode", _) => ("trt_fp16_enable".into(), "0".into()),
        ("max_workspace_size_bytes", v) => ("trt_max_workspace_size".into(), v.into()),
        (k, v) if k.starts_with("trt_") => (k.into(), v.into()),
        (k, v) => (format!("trt_{k}"), v.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(parameters: &[(&str, &str)]) -> Result<SessionSettings, BackendError> {
        let options =
            LoadOptions { parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..LoadOptions::default() };
        SessionSettings::from_options(&options)
    }

    #[test]
    fn session_keys_pass_through_and_triton_keys_are_read() {
        let s = settings(&[
            ("intra_op_thread_count", "2"),
            ("session.intra_op.allow_spinning", " 0 "),
            ("session.use_device_allocator_for_initializers", "1"),
            ("sessions.typo", "1"),
        ])
        .unwrap();
        assert_eq!(s.intra_op_threads, Some(2));
        assert_eq!(
            s.config_entries,
            [
                ("session.intra_op.allow_spinning".to_string(), "0".to_string()),
                ("session.use_device_allocator_for_initializers".to_string(), "1".to_string()),
            ]
        );
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        let e = settings(&[("intra_op_thread_count", "many")]).unwrap_err().to_string();
        assert!(e.contains("intra_op_thread_count") && e.contains("many"), "{e}");
        let e = settings(&[("execution_mode", "2")]).unwrap_err().to_string();
        assert!(e.contains("execution_mode"), "{e}");
        let e = settings(&[("enable_mem_arena", "yes")]).unwrap_err().to_string();
        assert!(e.contains("enable_mem_arena"), "{e}");
    }
}
