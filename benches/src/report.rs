//! The result of one load level, as a table row, a JSON object or a CSV row.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::metrics::ServerStats;

/// Latency percentiles of the successful requests, in µs, in ascending order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest request.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of µs (all zero when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }

    /// The percentiles with their labels, in report order.
    pub fn percentiles(&self) -> [(&'static str, u64); 5] {
        [("p50", self.p50), ("p90", self.p90), ("p95", self.p95), ("p99", self.p99), ("max", self.max)]
    }
}

/// Everything measured at one load level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelReport {
    /// Model name.
    pub model: String,
    /// Protocol (`http`, `grpc`).
    pub protocol: String,
    /// Closed loop: requests outstanding at any time (`null` in request-rate mode).
    pub concurrency: Option<usize>,
    /// Open loop: requests sent per second (`null` in concurrency mode).
    pub request_rate: Option<f64>,
    /// Batch size of each request.
    pub batch_size: usize,
    /// Length of the reported windows together, in seconds.
    pub duration_s: f64,
    /// Windows measured at this level (the last 3, or fewer, are reported).
    pub windows: usize,
    /// Whether the reported windows agreed within the stability percentage; `null` when fewer
    /// than 3 windows were allowed, so stability was not checked.
    pub stable: Option<bool>,
    /// Successful requests completed in the reported windows.
    pub requests: u64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Inferences per second: requests per second × batch size.
    pub throughput_infer_per_s: f64,
    /// Latency of the successful requests (open loop: from the intended send time).
    pub latency_us: LatencySummary,
    /// Failed requests by kind (HTTP status or gRPC code, `transport`, `timeout`).
    pub errors: BTreeMap<String, u64>,
    /// Open loop: requests that left later than intended because every connection was busy.
    pub delayed: u64,
    /// The server's own view from `/metrics`, when it serves Triton's metrics.
    pub server: Option<ServerStats>,
}

impl LevelReport {
    /// The level as the table's first column shows it: a concurrency or a rate.
    pub fn load_label(&self) -> String {
        match (self.concurrency, self.request_rate) {
            (Some(c), _) => c.to_string(),
            (None, Some(r)) => format!("{r:.1}"),
            (None, None) => "-".into(),
        }
    }
}

/// Column headings of [`table_row`], aligned with it; the first column is the concurrency,
/// or the request rate when `rate_mode`.
pub fn table_header(rate_mode: bool) -> String {
    format!(
        "{:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>10} {:>10} {:>6}",
        if rate_mode { "req rate/s" } else { "concurrency" },
        "infer/s",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "avg batch",
        "queue µs",
        "compute µs",
        "stable"
    )
}

/// One level as a row of the table: latencies in ms; the server's columns show "-" when the
/// server has no metrics (queue and compute are µs per request).
pub fn table_row(r: &LevelReport) -> String {
    let mut row = format!("{:>11} {:>10.1} {:>9.1}", r.load_label(), r.throughput_infer_per_s, r.requests_per_s);
    for (_, us) in r.latency_us.percentiles() {
        let _ = write!(row, " {:>9.2}", us as f64 / 1000.0);
    }
    let _ = write!(row, " {:>7}", r.errors.values().sum::<u64>());
    let opt = |v: Option<f64>, precision: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.precision$}"));
    let server = r.server.as_ref();
    let stable = match r.stable {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let _ = write!(
        row,
        " {:>9} {:>10} {:>10} {:>6}",
        opt(server.and_then(|s| s.avg_batch_size), 2),
        opt(server.and_then(|s| s.queue_us_per_request), 0),
        opt(server.and_then(|s| s.compute_infer_us_per_request), 0),
        stable,
    );
    row
}

/// One CSV row per level, flat: latencies in µs, server figures empty when unknown.
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    model: &'a str,
    protocol: &'a str,
    concurrency: Option<usize>,
    request_rate: Option<f64>,
    batch_size: usize,
    duration_s: f64,
    windows: usize,
    stable: Option<bool>,
    requests: u64,
    requests_per_s: f64,
    infer_per_s: f64,
    p50_us: u64,
    p90_us: u64,
    p95_us: u64,
    p99_us: u64,
    max_us: u64,
    mean_us: f64,
    errors: u64,
    delayed: u64,
    avg_batch_size: Option<f64>,
    queue_us_per_request: Option<f64>,
    compute_infer_us_per_request: Option<f64>,
}

/// Writes levels as CSV with a header row, flushing after each so a long sweep that is
/// interrupted keeps what it measured.
pub struct CsvReport<W: std::io::Write> {
    writer: csv::Writer<W>,
}

impl<W: std::io::Write> CsvReport<W> {
    /// A report writing to `out`.
    pub fn new(out: W) -> CsvReport<W> {
        CsvReport { writer: csv::Writer::from_writer(out) }
    }

    /// Appends one level.
    pub fn write(&mut self, r: &LevelReport) -> std::io::Result<()> {
        let l = &r.latency_us;
        let server = r.server.as_ref();
        self.writer
            .serialize(CsvRow {
                model: &r.model,
                protocol: &r.protocol,
                concurrency: r.concurrency,
                request_rate: r.request_rate,
                batch_size: r.batch_size,
                duration_s: r.duration_s,
                windows: r.windows,
                stable: r.stable,
                requests: r.requests,
                requests_per_s: r.requests_per_s,
                infer_per_s: r.throughput_infer_per_s,
                p50_us: l.p50,
                p90_us: l.p90,
                p95_us: l.p95,
                p99_us: l.p99,
                max_us: l.max,
                mean_us: l.mean,
                errors: r.errors.values().sum(),
                delayed: r.delayed,
                avg_batch_size: server.and_then(|s| s.avg_batch_size),
                queue_us_per_request: server.and_then(|s| s.queue_us_per_request),
                compute_infer_us_per_request: server.and_then(|s| s.compute_infer_us_per_request),
            })
            .map_err(std::io::Error::other)?;
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ModelCounters, ServerStats};

    fn report(server: Option<ServerStats>) -> LevelReport {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            h.record(us * 100).unwrap(); // 0.1 ms .. 100 ms
        }
        LevelReport {
            model: "m".into(),
            protocol: "http".into(),
            concurrency: Some(32),
            request_rate: None,
            batch_size: 2,
            duration_s: 10.0,
            windows: 4,
            stable: Some(true),
            requests: 1000,
            requests_per_s: 100.0,
            throughput_infer_per_s: 200.0,
            latency_us: LatencySummary::from_histogram(&h),
            errors: BTreeMap::from([("503".into(), 3)]),
            delayed: 0,
            server,
        }
    }

    #[test]
    fn percentiles_ascend_in_report_order() {
        let s = report(None).latency_us;
        let values: Vec<u64> = s.percentiles().iter().map(|(_, v)| *v).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
        // Within the histogram's 3 significant digits.
        assert!((50_000..=50_100).contains(&s.p50), "{}", s.p50);
        assert!((99_000..=99_100).contains(&s.p99), "{}", s.p99);
        assert!((100_000..=100_100).contains(&s.max), "{}", s.max);
        assert_eq!(LatencySummary::from_histogram(&Histogram::new(3).unwrap()), LatencySummary::default());

        // JSON and the table list them in the same order: p50, p90, p95, p99, max.
        let json = serde_json::to_string(&s).unwrap();
        let positions: Vec<usize> = ["\"p50\"", "\"p90\"", "\"p95\"", "\"p99\"", "\"max\""].iter().map(|k| json.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        let header = table_header(false);
        let columns: Vec<usize> = ["p50", "p90", "p95", "p99", "max"].iter().map(|k| header.find(k).unwrap()).collect();
        assert!(columns.windows(2).all(|w| w[0] < w[1]), "{header}");
    }

    #[test]
    fn rows_align_with_the_header() {
        let server = ServerStats::from_delta(
            ModelCounters { request_success: 1000.0, inference_count: 2000.0, exec_count: 250.0, queue_us: 5e5, compute_infer_us: 9e6 },
            1000,
        );
        let mut rate = report(None);
        (rate.concurrency, rate.request_rate, rate.stable) = (None, Some(250.0), None);
        for r in [report(None), report(Some(server)), rate.clone()] {
            let row = table_row(&r);
            assert_eq!(row.chars().count(), table_header(false).chars().count(), "\n{}\n{row}", table_header(false));
        }
        assert_eq!(table_header(true).chars().count(), table_header(false).chars().count());
        assert!(table_row(&rate).trim_start().starts_with("250.0 "));
        assert!(table_row(&rate).ends_with(" -"), "stability not checked");
        let row = table_row(&report(Some(server)));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..3], ["32", "200.0", "100.0"]);
        assert!(cells[7].starts_with("100.0"), "{row}");
        assert_eq!(cells[8..], ["3", "8.00", "500", "9000", "yes"]);
        assert!(table_row(&report(None)).ends_with(" -          -          -    yes"));
    }

    #[test]
    fn json_has_one_object_per_level() {
        let v: serde_json::Value = serde_json::to_value(report(None)).unwrap();
        assert_eq!(v["concurrency"], 32);
        assert!(v["request_rate"].is_null());
        assert_eq!(v["stable"], true);
        assert_eq!(v["windows"], 4);
        assert_eq!(v["throughput_infer_per_s"], 200.0);
        assert_eq!(v["errors"]["503"], 3);
        assert!(v["server"].is_null());
        assert!(v["latency_us"]["p99"].as_u64().unwrap() >= v["latency_us"]["p95"].as_u64().unwrap());
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_level() {
        let server = ServerStats::from_delta(
            ModelCounters { request_success: 10.0, inference_count: 20.0, exec_count: 5.0, queue_us: 100.0, compute_infer_us: 50.0 },
            10,
        );
        let mut rate = report(None);
        (rate.concurrency, rate.request_rate) = (None, Some(99.5));
        let mut out = Vec::new();
        {
            let mut csv = CsvReport::new(&mut out);
            csv.write(&report(Some(server))).unwrap();
            csv.write(&rate).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(header[..4], ["model", "protocol", "concurrency", "request_rate"]);
        let col = |row: &str, name: &str| row.split(',').nth(header.iter().position(|h| *h == name).unwrap()).unwrap().to_string();
        assert_eq!(col(lines[1], "concurrency"), "32");
        assert_eq!(col(lines[1], "request_rate"), "");
        assert_eq!(col(lines[1], "avg_batch_size"), "4.0");
        assert_eq!(col(lines[1], "errors"), "3");
        assert_eq!(col(lines[2], "request_rate"), "99.5");
        assert_eq!(col(lines[2], "avg_batch_size"), "");
        assert!(col(lines[2], "p99_us").parse::<u64>().unwrap() >= col(lines[2], "p50_us").parse::<u64>().unwrap());
    }
}
