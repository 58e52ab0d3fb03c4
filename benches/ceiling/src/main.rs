//! The in-process ceiling: how many rows per second a backend computes for a model with no
//! server around it, at each batch size, on one thread (as one Triton instance runs). The best
//! rate is the most a server with one instance of the model can approach.
//!
//! `cargo run --release -p quiver-ceiling -- MODEL.onnx [--seconds S] [--batch-sizes 1,2,4]`
//!
//! A Hugging Face model (a `.safetensors` file with `config.json` and `tokenizer.json` beside
//! it) runs on the candle backend; its texts come from `--texts FILE.json` (a JSON list of
//! strings), batch `i` taking texts `i*b .. i*b+b` in turn, wrapping, as `quiver bench` takes
//! a data file's steps.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use quiver_benches::data::{random_tensor_bytes, SplitMix64};
use quiver_core::{DataType, LoadOptions, Model, Tensor};
use quiver_engine_candle::EmbeddingModel;
use quiver_engine_tract::OnnxModel;

/// Measures a model's in-process throughput at several batch sizes.
#[derive(Debug, Parser)]
#[command(name = "ceiling")]
struct Args {
    /// The ONNX model file.
    model: PathBuf,
    /// Seconds of measurement per batch size (after an untimed warmup of a tenth of it).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    batch_sizes: Vec<usize>,
    /// For a text model: a JSON list of the texts to embed.
    #[arg(long)]
    texts: Option<PathBuf>,
    /// The engine for an ONNX model: tract, or onnxruntime (its library from ORT_DYLIB_PATH).
    #[arg(long, default_value = "tract")]
    engine: String,
    /// onnxruntime's intra_op_thread_count (0: its default, one per core).
    #[arg(long, default_value_t = 0)]
    intra_op_threads: usize,
}

/// The model at `path`: candle for `.safetensors`, the chosen engine for the rest.
fn load(path: &std::path::Path, args: &Args) -> anyhow::Result<Box<dyn Model>> {
    Ok(if path.extension().is_some_and(|e| e == "safetensors") {
        Box::new(EmbeddingModel::load(path, &LoadOptions::default())?)
    } else if args.engine == "onnxruntime" {
        let mut options = LoadOptions::default();
        options.parameters.insert("intra_op_thread_count".into(), args.intra_op_threads.to_string());
        Box::new(quiver_engine_onnxruntime::OrtBackend::new(None).load_model(path, &options)?)
    } else if args.engine == "tract" {
        Box::new(OnnxModel::load(path)?)
    } else {
        bail!("--engine {}: expected tract or onnxruntime", args.engine)
    })
}

/// The inputs of every distinct batch of size `batch`: random data for numeric inputs, texts
/// for a BYTES input.
fn batch_inputs(model: &dyn Model, batch: usize, texts: &[String]) -> anyhow::Result<Vec<Vec<Tensor>>> {
    let signature = model.signature();
    if let [info] = &signature.inputs[..] {
        if info.datatype == DataType::Bytes {
            if texts.is_empty() {
                bail!("input '{}' is BYTES: give the texts with --texts FILE.json", info.name);
            }
            let count = texts.len().div_ceil(batch);
            return (0..count)
                .map(|i| {
                    let rows = (0..batch).map(|j| texts[(i * batch + j) % texts.len()].as_bytes());
                    Ok(vec![Tensor::from_bytes_elements(vec![batch], rows)?])
                })
                .collect();
        }
    }
    let mut rng = SplitMix64::new(quiver_benches::request::DATA_SEED);
    let mut inputs = Vec::with_capacity(signature.inputs.len());
    for info in &signature.inputs {
        let mut shape = Vec::with_capacity(info.shape.len());
        for (i, &d) in info.shape.iter().enumerate() {
            shape.push(match d {
                -1 if i == 0 => batch,
                d if d >= 0 => d as usize,
                _ => bail!("input '{}' has variable dimensions {:?} besides the batch", info.name, info.shape),
            });
        }
        let data = random_tensor_bytes(info.datatype, shape.iter().product(), &mut rng);
        inputs.push(Tensor::from_bytes(info.datatype, shape, Bytes::from(data))?);
    }
    Ok(vec![inputs])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = load(&args.model, &args).with_context(|| format!("loading {}", args.model.display()))?;
    let texts: Vec<String> = match &args.texts {
        Some(path) => serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}: expected a JSON list of strings", path.display()))?,
        None => Vec::new(),
    };
    let measure = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    println!("{} ({} threads available to the process)", args.model.display(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("{:>6} {:>12} {:>12} {:>14}", "batch", "rows/s", "batches/s", "ms/batch");
    let mut best = (0usize, 0f64);
    for &batch in &args.batch_sizes {
        let all = batch_inputs(model.as_ref(), batch, &texts)?;
        let mut next = all.iter().cycle();
        let mut run = || match next.next() {
            Some(inputs) => model.execute(inputs.clone()).map(drop),
            None => Ok(()),
        };
        let warm_until = Instant::now() + measure / 10;
        run()?;
        while Instant::now() < warm_until {
            run()?;
        }
        let start = Instant::now();
        let mut batches = 0u64;
        while start.elapsed() < measure {
            run()?;
            batches += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let rows_per_s = (batches * batch as u64) as f64 / elapsed;
        println!("{batch:>6} {rows_per_s:>12.1} {:>12.1} {:>14.3}", batches as f64 / elapsed, elapsed * 1000.0 / batches as f64);
        if rows_per_s > best.1 {
            best = (batch, rows_per_s);
        }
    }
    println!("ceiling: {:.1} rows/s (batch {})", best.1, best.0);
    Ok(())
}
