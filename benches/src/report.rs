//! The result of one concurrency level, as a table row or a JSON object.

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

/// Everything measured at one concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelReport {
    /// Model name.
    pub model: String,
    /// Protocol (`http`).
    pub protocol: String,
    /// Closed-loop concurrency: requests outstanding at any time.
    pub concurrency: usize,
    /// Batch size of each request.
    pub batch_size: usize,
    /// Length of the measurement window, in seconds.
    pub duration_s: f64,
    /// Successful requests completed in the window.
    pub requests: u64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Inferences per second: requests per second × batch size.
    pub throughput_infer_per_s: f64,
    /// Latency of the successful requests.
    pub latency_us: LatencySummary,
    /// Failed requests by kind (HTTP status, `transport`, `timeout`).
    pub errors: BTreeMap<String, u64>,
    /// The server's own view from `/metrics`, when it serves Triton's metrics.
    pub server: Option<ServerStats>,
}

/// Column headings of [`table_row`], aligned with it.
pub fn table_header() -> String {
    format!(
        "{:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>10} {:>10}",
        "concurrency",
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
        "compute µs"
    )
}

/// One level as a row of the table: latencies in ms; the server's columns show "-" when the
/// server has no metrics (queue and compute are µs per request).
pub fn table_row(r: &LevelReport) -> String {
    let mut row = format!("{:>11} {:>10.1} {:>9.1}", r.concurrency, r.throughput_infer_per_s, r.requests_per_s);
    for (_, us) in r.latency_us.percentiles() {
        let _ = write!(row, " {:>9.2}", us as f64 / 1000.0);
    }
    let _ = write!(row, " {:>7}", r.errors.values().sum::<u64>());
    let opt = |v: Option<f64>, precision: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.precision$}"));
    let server = r.server.as_ref();
    let _ = write!(
        row,
        " {:>9} {:>10} {:>10}",
        opt(server.and_then(|s| s.avg_batch_size), 2),
        opt(server.and_then(|s| s.queue_us_per_request), 0),
        opt(server.and_then(|s| s.compute_infer_us_per_request), 0),
    );
    row
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
            concurrency: 32,
            batch_size: 2,
            duration_s: 10.0,
            requests: 1000,
            requests_per_s: 100.0,
            throughput_infer_per_s: 200.0,
            latency_us: LatencySummary::from_histogram(&h),
            errors: BTreeMap::from([("503".into(), 3)]),
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
        let header = table_header();
        let columns: Vec<usize> = ["p50", "p90", "p95", "p99", "max"].iter().map(|k| header.find(k).unwrap()).collect();
        assert!(columns.windows(2).all(|w| w[0] < w[1]), "{header}");
    }

    #[test]
    fn rows_align_with_the_header() {
        let server = ServerStats::from_delta(
            ModelCounters { request_success: 1000.0, inference_count: 2000.0, exec_count: 250.0, queue_us: 5e5, compute_infer_us: 9e6 },
            1000,
        );
        for r in [report(None), report(Some(server))] {
            let row = table_row(&r);
            assert_eq!(row.chars().count(), table_header().chars().count(), "\n{}\n{row}", table_header());
        }
        let row = table_row(&report(Some(server)));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..3], ["32", "200.0", "100.0"]);
        assert!(cells[7].starts_with("100.0"), "{row}");
        assert_eq!(cells[8..], ["3", "8.00", "500", "9000"]);
        assert!(table_row(&report(None)).ends_with(" -          -          -"));
    }

    #[test]
    fn json_has_one_object_per_level() {
        let v: serde_json::Value = serde_json::to_value(report(None)).unwrap();
        assert_eq!(v["concurrency"], 32);
        assert_eq!(v["throughput_infer_per_s"], 200.0);
        assert_eq!(v["errors"]["503"], 3);
        assert!(v["server"].is_null());
        assert!(v["latency_us"]["p99"].as_u64().unwrap() >= v["latency_us"]["p95"].as_u64().unwrap());
    }
}
