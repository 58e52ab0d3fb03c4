//! The command line of `quiver bench`, with perf_analyzer's flag names where one exists.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};

use crate::{input::InputData, request::TensorFormat, schedule::Distribution};

/// Options of `quiver bench`: which model to load, over which protocol, and how hard.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Name of the model to benchmark.
    #[arg(short = 'm', long = "model")]
    pub model: String,

    /// Server address: `host:port` or `http://host:port[/prefix]` (gRPC: `host:port`)
    /// [default: localhost:8000 for HTTP, localhost:8001 for gRPC].
    #[arg(short = 'u', long = "url")]
    pub url: Option<String>,

    /// Protocol to send requests over.
    #[arg(short = 'i', long = "protocol", value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,

    /// Closed loop: requests outstanding at any time [default: 1].
    #[arg(long, conflicts_with_all = ["concurrency_range", "request_rate_range"])]
    pub concurrency: Option<usize>,

    /// Closed loop: concurrency levels to measure one after the other, as `start[:end[:step]]`.
    #[arg(long, value_name = "START:END:STEP", conflicts_with = "request_rate_range")]
    pub concurrency_range: Option<ConcurrencyRange>,

    /// Open loop: request rates (per second) to measure one after the other, as
    /// `start[:end[:step]]`. Latency runs from each request's intended send time.
    #[arg(long, value_name = "START:END:STEP")]
    pub request_rate_range: Option<RateRange>,

    /// Open loop: how request arrivals are spaced.
    #[arg(long, value_enum, default_value_t = Distribution::Constant)]
    pub request_distribution: Distribution,

    /// Open loop: most requests (connections) outstanding at once; a request due when all are
    /// busy waits for one, and its wait counts in its latency and as delayed.
    #[arg(long, default_value_t = 128)]
    pub max_concurrency: usize,

    /// Length of each measurement window, in milliseconds.
    #[arg(short = 'p', long = "measurement-interval", value_name = "MS", default_value_t = 5000)]
    pub measurement_interval_ms: u64,

    /// A level is stable when the throughput and mean latency of each of the last 3 windows
    /// lie within this percentage of their average.
    #[arg(short = 's', long, value_name = "PERCENT", default_value_t = 10.0)]
    pub stability_percentage: f64,

    /// Most windows measured per level before reporting it unstable (with fewer than 3,
    /// stability is not checked).
    #[arg(short = 'r', long, default_value_t = 10)]
    pub max_trials: usize,

    /// Unmeasured load before each level's first window, in seconds.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub warmup: Duration,

    /// Batch size of each request: fills the batch (first variable) dimension of every input.
    #[arg(short = 'b', long = "batch-size", default_value_t = 1)]
    pub batch_size: usize,

    /// Shape of an input, as `NAME:d1,d2,...`, without the batch dimension when the model
    /// batches (as perf_analyzer). Needed for inputs with variable dimensions besides the batch.
    #[arg(long = "shape", value_name = "NAME:DIMS")]
    pub shapes: Vec<ShapeOverride>,

    /// Request data: `random`, `zero`, or a JSON file in perf_analyzer's format
    /// (`{"data": [{"INPUT": [...]}, ...]}`).
    #[arg(long, value_name = "random|zero|FILE", default_value = "random")]
    pub input_data: InputData,

    /// HTTP: how input tensors travel (gRPC always sends raw contents).
    #[arg(long, value_enum, default_value_t = TensorFormat::Binary)]
    pub input_tensor_format: TensorFormat,

    /// HTTP: how output tensors are asked for.
    #[arg(long, value_enum, default_value_t = TensorFormat::Binary)]
    pub output_tensor_format: TensorFormat,

    /// Where Triton's Prometheus metrics are, for the server's side (batch size, queue and
    /// compute time) [default: /metrics on the HTTP server; none for gRPC].
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,

    /// Print one JSON object per level instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also write every level to this CSV file.
    #[arg(long, short = 'f', value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,

    /// Draw latency (p50, p90, p99) against throughput across the levels, to a .png or .svg.
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// The load levels of a run: closed-loop concurrencies or open-loop request rates.
#[derive(Debug, Clone, PartialEq)]
pub enum Levels {
    /// Closed loop at each concurrency.
    Concurrency(Vec<usize>),
    /// Open loop at each rate (requests per second).
    RequestRate(Vec<f64>),
}

impl BenchArgs {
    /// The levels to measure, in order.
    pub fn levels(&self) -> Levels {
        match (&self.request_rate_range, &self.concurrency_range, self.concurrency) {
            (Some(rates), _, _) => Levels::RequestRate(rates.levels()),
            (None, Some(range), _) => Levels::Concurrency(range.levels()),
            (None, None, Some(n)) => Levels::Concurrency(vec![n]),
            (None, None, None) => Levels::Concurrency(vec![1]),
        }
    }

    /// The server address, or the protocol's default.
    pub fn url(&self) -> &str {
        match (&self.url, self.protocol) {
            (Some(url), _) => url,
            (None, Protocol::Http) => "localhost:8000",
            (None, Protocol::Grpc) => "localhost:8001",
        }
    }

    /// The length of a measurement window.
    pub fn measurement_interval(&self) -> Duration {
        Duration::from_millis(self.measurement_interval_ms)
    }
}

/// The wire protocol a benchmark speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Open Inference Protocol over HTTP/1.1 (binary tensors unless asked otherwise).
    Http,
    /// Open Inference Protocol over gRPC, tensors in raw contents.
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

/// perf_analyzer's `--request-rate-range start:end:step`, in requests per second; `end`
/// defaults to `start` and `step` to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRange {
    /// First rate.
    pub start: f64,
    /// Last rate (inclusive, when the steps land on it).
    pub end: f64,
    /// Increment between rates.
    pub step: f64,
}

/// Most levels a rate range may expand to.
pub const MAX_RATE_LEVELS: usize = 1000;

impl RateRange {
    /// The rates `start, start+step, ...` up to and including `end` (with a little slack for
    /// decimal steps such as 0.1).
    pub fn levels(&self) -> Vec<f64> {
        (0..MAX_RATE_LEVELS).map(|i| self.start + self.step * i as f64).take_while(|&r| r <= self.end + self.step * 1e-9).collect()
    }
}

impl FromStr for RateRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s
            .split(':')
            .map(|p| match p.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(format!("'{p}' is not a positive number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end, step) = match parts[..] {
            [start] => (start, start, 1.0),
            [start, end] => (start, end, 1.0),
            [start, end, step] => (start, end, step),
            _ => return Err(format!("'{s}' is not START[:END[:STEP]]")),
        };
        if end < start {
            return Err(format!("end {end} is below start {start}"));
        }
        if (end - start) / step >= MAX_RATE_LEVELS as f64 {
            return Err(format!("'{s}' has more than {MAX_RATE_LEVELS} levels"));
        }
        Ok(RateRange { start, end, step })
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
    fn rate_range_follows_perf_analyzer() {
        assert_eq!("100".parse::<RateRange>().unwrap().levels(), vec![100.0]);
        assert_eq!("100:300:100".parse::<RateRange>().unwrap().levels(), vec![100.0, 200.0, 300.0]);
        assert_eq!("0.5:1.5:0.1".parse::<RateRange>().unwrap().levels().len(), 11);
        assert_eq!("10:12".parse::<RateRange>().unwrap().levels(), vec![10.0, 11.0, 12.0]);
        for bad in ["0", "-5", "nan", "inf", "5:1", "1:2:0", "1:2:3:4", "1:1000000:1"] {
            assert!(bad.parse::<RateRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse_with_defaults() {
        let a = parse(&["-m", "mlp"]).unwrap();
        assert_eq!(a.url(), "localhost:8000");
        assert_eq!(a.protocol, Protocol::Http);
        assert_eq!(a.levels(), Levels::Concurrency(vec![1]));
        assert_eq!(a.measurement_interval(), Duration::from_secs(5));
        assert_eq!((a.stability_percentage, a.max_trials), (10.0, 10));
        assert_eq!(a.batch_size, 1);
        assert_eq!(a.input_data, InputData::Random);
        assert_eq!((a.input_tensor_format, a.output_tensor_format), (TensorFormat::Binary, TensorFormat::Binary));
        assert_eq!(a.request_distribution, Distribution::Constant);

        let a = parse(&[
            "-m",
            "mlp",
            "-u",
            "http://h:1",
            "-i",
            "grpc",
            "--concurrency-range",
            "2:6:2",
            "-p",
            "500",
            "-s",
            "5",
            "-r",
            "4",
            "--warmup",
            "0",
            "-b",
            "8",
            "--shape",
            "x:4",
            "--json",
            "--input-data",
            "zero",
            "--input-tensor-format",
            "json",
            "--csv",
            "out.csv",
            "--plot",
            "p.svg",
        ])
        .unwrap();
        assert_eq!(a.protocol, Protocol::Grpc);
        assert_eq!(a.levels(), Levels::Concurrency(vec![2, 4, 6]));
        assert_eq!(a.measurement_interval(), Duration::from_millis(500));
        assert_eq!((a.stability_percentage, a.max_trials), (5.0, 4));
        assert_eq!(a.warmup, Duration::ZERO);
        assert_eq!(a.batch_size, 8);
        assert_eq!(a.shapes.len(), 1);
        assert!(a.json);
        assert_eq!(a.input_data, InputData::Zero);
        assert_eq!(a.input_tensor_format, TensorFormat::Json);
        assert_eq!(a.csv.as_deref(), Some(std::path::Path::new("out.csv")));
        assert_eq!(a.plot.as_deref(), Some(std::path::Path::new("p.svg")));
        assert_eq!(parse(&["-m", "m", "-i", "grpc"]).unwrap().url(), "localhost:8001");

        let a = parse(&["-m", "m", "--request-rate-range", "100:200:50", "--request-distribution", "poisson"]).unwrap();
        assert_eq!(a.levels(), Levels::RequestRate(vec![100.0, 150.0, 200.0]));
        assert_eq!(a.request_distribution, Distribution::Poisson);

        assert_eq!(parse(&["-m", "m", "--concurrency", "3"]).unwrap().levels(), Levels::Concurrency(vec![3]));
        assert!(parse(&["-m", "m", "--concurrency", "3", "--concurrency-range", "1:2"]).is_err());
        assert!(parse(&["-m", "m", "--concurrency", "3", "--request-rate-range", "10"]).is_err());
        assert!(parse(&["-m", "m", "--concurrency-range", "1:3", "--request-rate-range", "10"]).is_err());
        assert!(parse(&["-m", "m", "--warmup", "-1"]).is_err());
        assert!(parse(&["-m", "m", "--input-tensor-format", "xml"]).is_err());
    }
}
