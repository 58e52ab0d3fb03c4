//! Per-model engine choice for configs that name no engine: every available engine loads the
//! model, each runs the same sample batch, and the fastest keeps the model.
//!
//! The sample is made from the model's signature (no config warmup is needed): the batch
//! dimension is [`SAMPLE_BATCH`], other variable dimensions 1, floats in [0, 1), integers 1 (never
//! 0, which an integer division would trap on), text "a". Each engine runs it once untimed (lazy
//! initialisation, allocator warm-up), then [`TIMED_RUNS`] times; the median decides. An engine
//! that fails to load or to run the sample is left out with a warning; when none runs it, the
//! most preferred engine that loaded keeps the model (its errors then surface per request).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Backend, BackendError, DataType, Encoded, LoadOptions, Model, ModelSignature, Tensor};

/// Rows of the sample batch: the middle of the batch sizes dynamic batching forms.
pub(crate) const SAMPLE_BATCH: usize = 8;

/// Timed runs per engine; the median is compared.
const TIMED_RUNS: usize = 5;

/// A backend that loads a model on each of its engines and keeps the fastest.
pub(crate) struct Fastest {
    engines: Vec<Arc<dyn Backend>>,
}

impl Fastest {
    /// Races `engines` (at least one), most preferred first.
    pub(crate) fn new(engines: Vec<Arc<dyn Backend>>) -> Fastest {
        Fastest { engines }
    }
}

impl Backend for Fastest {
    fn name(&self) -> &'static str {
        self.engines.first().map_or("none", |e| e.name())
    }

    fn serves(&self, _platform: &str, _backend: &str) -> bool {
        false
    }

    fn platform(&self) -> &'static str {
        self.engines.first().map_or("", |e| e.platform())
    }

    fn default_model_filename(&self) -> &'static str {
        self.engines.first().map_or("", |e| e.default_model_filename())
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError> {
        self.load_with(path, &LoadOptions::default())
    }

    fn load_with(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn Model>, BackendError> {
        let mut loaded: Vec<(&'static str, Box<dyn Model>)> = Vec::new();
        let mut first_error = None;
        for engine in &self.engines {
            match engine.load_with(path, options) {
                Ok(model) => loaded.push((engine.name(), model)),
                Err(e) => {
                    tracing::warn!(model = %path.display(), "engine {} cannot load the model: {e}", engine.name());
                    first_error.get_or_insert(e);
                }
            }
        }
        if loaded.len() <= 1 {
            return match loaded.pop() {
                Some((engine, model)) => Ok(Box::new(Chosen { engine, model })),
                None => Err(first_error.unwrap_or_else(|| BackendError::Load("no engine to load the model".into()))),
            };
        }
        let sample = match sample_batch(loaded[0].1.signature()) {
            Ok(sample) => sample,
            Err(why) => {
                let (engine, model) = loaded.swap_remove(0);
                tracing::info!(model = %path.display(), "engine choice: {engine} (no sample batch for a race: {why})");
                return Ok(Box::new(Chosen { engine, model }));
            }
        };
        let mut times: Vec<(usize, Duration)> = Vec::new();
        for (ix, (engine, model)) in loaded.iter().enumerate() {
            match time(model.as_ref(), &sample) {
                Ok(median) => times.push((ix, median)),
                Err(e) => tracing::warn!(model = %path.display(), "engine {engine} failed the sample batch: {e}"),
            }
        }
        let report =
            times.iter().map(|(ix, t)| format!("{} {:.3} ms", loaded[*ix].0, t.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ");
        let winner = times.iter().min_by_key(|(_, t)| *t).map_or(0, |(ix, _)| *ix);
        let (engine, model) = loaded.swap_remove(winner);
        tracing::info!(
            model = %path.display(),
            "engine choice: {engine} (median of {TIMED_RUNS} runs of a {SAMPLE_BATCH}-row sample batch: {})",
            if report.is_empty() { "no engine ran it" } else { report.as_str() }
        );
        Ok(Box::new(Chosen { engine, model }))
    }
}

/// The median time of `model` on `sample` over [`TIMED_RUNS`], after one untimed run.
fn time(model: &dyn Model, sample: &[Tensor]) -> Result<Duration, BackendError> {
    model.execute(sample.to_vec())?;
    let mut runs = Vec::with_capacity(TIMED_RUNS);
    for _ in 0..TIMED_RUNS {
        let start = Instant::now();
        model.execute(sample.to_vec())?;
        runs.push(start.elapsed());
    }
    runs.sort();
    Ok(runs[TIMED_RUNS / 2])
}

/// A sample batch for `signature` (see the module documentation).
pub(crate) fn sample_batch(signature: &ModelSignature) -> Result<Vec<Tensor>, String> {
    let mut seed = 0x2545_f491_u32;
    let mut unit = move || {
        // xorshift32: deterministic, varied values; nothing here needs statistical quality.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed >> 8) as f32 / (1u32 << 24) as f32
    };
    signature
        .inputs
        .iter()
        .map(|input| {
            let shape: Vec<usize> = input
                .shape
                .iter()
                .enumerate()
                .map(|(d, &n)| match usize::try_from(n) {
                    Ok(n) => n,
                    Err(_) if d == 0 => SAMPLE_BATCH,
                    Err(_) => 1,
                })
                .collect();
            let count: usize = shape.iter().product();
            if count > 1 << 24 {
                return Err(format!("input '{}' has {count} elements", input.name));
            }
            let tensor = match input.datatype {
                DataType::Bytes => Tensor::from_bytes_elements(shape, std::iter::repeat_n(&b"a"[..], count)),
                DataType::Fp32 => {
                    Tensor::from_bytes(input.datatype, shape, (0..count).flat_map(|_| unit().to_le_bytes()).collect::<Vec<u8>>().into())
                }
                DataType::Fp64 => Tensor::from_bytes(
                    input.datatype,
                    shape,
                    (0..count).flat_map(|_| f64::from(unit()).to_le_bytes()).collect::<Vec<u8>>().into(),
                ),
                DataType::Fp16 | DataType::Bf16 | DataType::Bool => {
                    let size = input.datatype.element_size().unwrap_or(1);
                    Tensor::from_bytes(input.datatype, shape, vec![0u8; count * size].into())
                }
                integer => {
                    // Little-endian 1 in whatever width the type has.
                    let size = integer.element_size().unwrap_or(1);
                    let one = (0..size).map(|b| u8::from(b == 0));
                    Tensor::from_bytes(integer, shape, one.cycle().take(count * size).collect::<Vec<u8>>().into())
                }
            };
            tensor.map_err(|e| e.to_string())
        })
        .collect()
}

/// The model the race kept, and the engine that runs it.
struct Chosen {
    engine: &'static str,
    model: Box<dyn Model>,
}

impl Model for Chosen {
    fn signature(&self) -> &ModelSignature {
        self.model.signature()
    }

    fn prepares(&self) -> bool {
        self.model.prepares()
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Option<Encoded>, BackendError> {
        self.model.prepare(inputs)
    }

    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        self.model.execute(inputs)
    }

    fn execute_prepared(&self, inputs: Vec<Tensor>, prepared: &[Encoded]) -> Result<Vec<Tensor>, BackendError> {
        self.model.execute_prepared(inputs, prepared)
    }

    fn engine(&self) -> Option<&'static str> {
        Some(self.model.engine().unwrap_or(self.engine))
    }
}
