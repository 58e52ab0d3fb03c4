//! The command line of `quiver bench`, with perf_analyzer's flag names where one exists.

use std::{fmt, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};

/// Options of `quiver bench`: which model to load, over which protocol, and how hard.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Name of the model to benchmark.
    #[arg(short = 'm', long = "model")]
    pub model: String,

    /// Server address: `host:port` or `http://host:port[/prefix]`.
    #[arg(short = 'u', long = "url", default_value = "localhost:8000")]
    pub url: String,

    /// Protocol to send requests over.
    #[arg(short = 'i', long = "protocol", value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,

    /// Number of concurrent outstanding requests (closed loop) [default: 1].
    #[arg(long, conflicts_with = "concurrency_range")]
    pub concurrency: Option<usize>,

    /// Concurrency levels to measure one after the other, as `start[:end[:step]]`.
    #[arg(long, value_name = "START:END:STEP")]
    pub concurrency_range: Option<ConcurrencyRange>,

    /// Length of the measurement at each concurrency level, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,

    /// Unmeasured load before each measurement, in seconds.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub warmup: Duration,

    /// Batch size of each request: fills the batch (first variable) dimension of every input.
    #[arg(short = 'b', long = "batch-size", default_value_t = 1)]
    pub batch_size: usize,

    /// Shape of an input, as `NAME:d1,d2,...`, without the batch dimension when the model
    /// batches (as perf_analyzer). Needed for inputs with variable dimensions besides the batch.
    #[arg(long = "shape", value_name = "NAME:DIMS")]
    pub shapes: Vec<ShapeOverride>,

    /// Print one JSON object per concurrency level instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The concurrency levels to measure, in order.
    pub fn concurrency_levels(&self) -> Vec<usize> {
        match (&self.concurrency_range, self.concurrency) {
            (Some(range), _) => range.levels(),
            (None, Some(n)) => vec![n],
            (None, None) => vec![1],
        }
    }
}

/// The wire protocol a benchmark speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Open Inference Protocol over HTTP/1.1 with binary tensors.
    Http,
    /// Open Inference Protocol over gRPC (not implemented yet).
    Grpc,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        })
    }
}

/// perf_analyzer's `--concurrency-range start:end:step`; `end` defaults to `start` and `step`
/// to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyRange {
    /// First level.
    pub start: usize,
    /// Last level (inclusive, when the steps land on it).
    pub end: usize,
    /// Increment between levels.
    pub step: usize,
}

impl ConcurrencyRange {
    /// The levels `start, start+step, ...` up to and including `end`.
    pub fn levels(&self) -> Vec<usize> {
        (self.start..=self.end).step_by(self.step).collect()
    }
}

impl FromStr for ConcurrencyRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s
            .split(':')
            .map(|p| p.trim().parse::<usize>().map_err(|_| format!("'{p}' is not a non-negative integer")))
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end, step) = match parts[..] {
            [start] => (start, start, 1),
            [start, end] => (start, end, 1),
            [start, end, step] => (start, end, step),
            _ => return Err(format!("'{s}' is not START[:END[:STEP]]")),
        };
        if start == 0 || step == 0 {
            return Err("concurrency and step must be at least 1".into());
        }
        if end < start {
            return Err(format!("end {end} is below start {start}"));
        }
        Ok(ConcurrencyRange { start, end, step })
    }
}

/// `--shape NAME:d1,d2,...`: fixed dimensions for one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeOverride {
    /// Input name.
    pub name: String,
    /// Dimensions, without the batch dimension when the model batches.
    pub dims: Vec<usize>,
}

impl FromStr for ShapeOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Input names may contain ':', so the dimensions follow the last one.
        let (name, dims) = s.rsplit_once(':').ok_or_else(|| format!("'{s}' is not NAME:d1,d2,..."))?;
        if name.is_empty() {
            return Err(format!("'{s}' has no input name"));
        }
        let dims = if dims.trim().is_empty() {
            Vec::new() // a scalar per batch row
        } else {
            dims.split(',')
                .map(|d| d.trim().parse::<usize>().map_err(|_| format!("dimension '{d}' of '{s}' is not a non-negative integer")))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(ShapeOverride { name: name.to_string(), dims })
    }
}

/// Parses a positive number of seconds (fractions allowed).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is not a non-negative number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn concurrency_range_follows_perf_analyzer() {
        assert_eq!("4".parse::<ConcurrencyRange>().unwrap().levels(), vec![4]);
        assert_eq!("1:4".parse::<ConcurrencyRange>().unwrap().levels(), vec![1, 2, 3, 4]);
        assert_eq!("1:8:3".parse::<ConcurrencyRange>().unwrap().levels(), vec![1, 4, 7]);
        assert!("0:4".parse::<ConcurrencyRange>().is_err());
        assert!("4:1".parse::<ConcurrencyRange>().is_err());
        assert!("1:4:0".parse::<ConcurrencyRange>().is_err());
        assert!("1:2:3:4".parse::<ConcurrencyRange>().is_err());
        assert!("a:4".parse::<ConcurrencyRange>().is_err());
    }

    #[test]
    fn shape_override_takes_the_last_colon() {
        let s: ShapeOverride = "input:3,224,224".parse().unwrap();
        assert_eq!(s, ShapeOverride { name: "input".into(), dims: vec![3, 224, 224] });
        let s: ShapeOverride = "ns:x:7".parse().unwrap();
        assert_eq!(s, ShapeOverride { name: "ns:x".into(), dims: vec![7] });
        assert_eq!("x:".parse::<ShapeOverride>().unwrap().dims, Vec::<usize>::new());
        assert!("x".parse::<ShapeOverride>().is_err());
        assert!(":3".parse::<ShapeOverride>().is_err());
        assert!("x:3,-1".parse::<ShapeOverride>().is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        let a = parse(&["-m", "mlp"]).unwrap();
        assert_eq!(a.url, "localhost:8000");
        assert_eq!(a.protocol, Protocol::Http);
        assert_eq!(a.concurrency_levels(), vec![1]);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.batch_size, 1);

        let a = parse(&["-m", "mlp", "-u", "http://h:1", "-i", "grpc", "--concurrency-range", "2:6:2", "--duration", "0.5",
            "--warmup", "0", "-b", "8", "--shape", "x:4", "--json"])
        .unwrap();
        assert_eq!(a.protocol, Protocol::Grpc);
        assert_eq!(a.concurrency_levels(), vec![2, 4, 6]);
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.warmup, Duration::ZERO);
        assert_eq!(a.batch_size, 8);
        assert_eq!(a.shapes.len(), 1);
        assert!(a.json);

        assert_eq!(parse(&["-m", "m", "--concurrency", "3"]).unwrap().concurrency_levels(), vec![3]);
        assert!(parse(&["-m", "m", "--concurrency", "3", "--concurrency-range", "1:2"]).is_err());
        assert!(parse(&["-m", "m", "--duration", "-1"]).is_err());
    }
}
