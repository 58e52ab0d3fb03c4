//! The in-process ceiling: how many rows per second the ONNX backend computes for a model
//! with no server around it, at each batch size, on one thread (as one Triton instance runs).
//! The best rate is the most a server with one instance of the model can approach.
//!
//! `cargo run --release -p quiver-benches --bin ceiling -- MODEL.onnx [--seconds S] [--batch-sizes 1,2,4]`

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use quiver_benches::data::{random_tensor_bytes, SplitMix64};
use quiver_model_formats::{onnx::OnnxModel, Model, Tensor};

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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = OnnxModel::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let signature = model.signature().clone();
    let measure = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    println!("{} ({} threads available to the process)", args.model.display(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("{:>6} {:>12} {:>12} {:>14}", "batch", "rows/s", "batches/s", "ms/batch");
    let mut best = (0usize, 0f64);
    for &batch in &args.batch_sizes {
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
        let run = || model.execute(inputs.clone()).map(drop);
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
