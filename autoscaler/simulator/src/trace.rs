//! Load traces: CSV files with the header `time_s,concurrency` or `time_s,rps` and one row per
//! second. Lines starting with `#` are comments. Everything about a trace file is checked,
//! and bounded, before the simulator sees it.

use std::{fs::File, io::Read, path::Path};

use thiserror::Error;

use quiver_autoscaler::config::ScaleMetric;

/// Most seconds a trace may hold (a week).
pub const MAX_TRACE_SECONDS: usize = 7 * 24 * 3600;
/// Largest trace file read, in bytes.
pub const MAX_TRACE_BYTES: u64 = 64 << 20;
/// Largest load a row may give (in-flight requests or requests per second).
pub const MAX_LOAD: f64 = 1e9;
/// Largest `time_s` accepted (about 31 years), so times stay far from overflow.
pub const MAX_TIME_S: u64 = 1 << 30;

/// Why a trace could not be read.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("cannot read the trace {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said (in the message, so not a separate error source).
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_TRACE_BYTES`].
    #[error("the trace is larger than {MAX_TRACE_BYTES} bytes")]
    TooLarge,
    /// The first line is not one of the two headers.
    #[error("the trace's header is '{0}'; expected 'time_s,concurrency' or 'time_s,rps'")]
    Header(String),
    /// A row is malformed.
    #[error("trace line {line}: {reason}")]
    Row {
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The header is followed by no rows.
    #[error("the trace has a header but no rows")]
    Empty,
    /// More rows than [`MAX_TRACE_SECONDS`].
    #[error("the trace is longer than {MAX_TRACE_SECONDS} seconds")]
    TooLong,
}

/// A load trace: one value per second from `start_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// What the values measure.
    pub metric: ScaleMetric,
    /// The `time_s` of the first row.
    pub start_s: u64,
    /// The load of each second, in order.
    pub loads: Vec<f64>,
}

impl Trace {
    /// The second of the `index`th row.
    pub fn time_of(&self, index: usize) -> u64 {
        self.start_s + index as u64
    }

    /// Writes the trace as CSV, in the form [`read_trace`] reads.
    pub fn to_csv(&self) -> String {
        let mut out = format!("time_s,{}\n", self.metric);
        for (i, load) in self.loads.iter().enumerate() {
            out.push_str(&format!("{},{}\n", self.time_of(i), load));
        }
        out
    }
}

/// Reads the trace file at `path`.
pub fn load_trace(path: &Path) -> Result<Trace, TraceError> {
    let io = |error| TraceError::Io { path: path.display().to_string(), error };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() > MAX_TRACE_BYTES {
        return Err(TraceError::TooLarge);
    }
    read_trace(file).map_err(|e| match e {
        TraceError::Io { error, .. } => io(error),
        other => other,
    })
}

/// Reads a trace from `reader` (at most [`MAX_TRACE_BYTES`]).
pub fn read_trace(reader: impl Read) -> Result<Trace, TraceError> {
    let mut bytes = Vec::new();
    reader.take(MAX_TRACE_BYTES + 1).read_to_end(&mut bytes).map_err(|error| TraceError::Io { path: "input".into(), error })?;
    if bytes.len() as u64 > MAX_TRACE_BYTES {
        return Err(TraceError::TooLarge);
    }
    let mut csv =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).comment(Some(b'#')).from_reader(bytes.as_slice());

    let header = csv.headers().map_err(|e| TraceError::Header(e.to_string()))?.clone();
    let metric = match (header.get(0), header.get(1), header.len()) {
        (Some("time_s"), Some("concurrency"), 2) => ScaleMetric::Concurrency,
        (Some("time_s"), Some("rps"), 2) => ScaleMetric::Rps,
        _ => return Err(TraceError::Header(header.iter().collect::<Vec<_>>().join(","))),
    };

    let mut start_s = None;
    let mut loads = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| TraceError::Row { line: e.position().map_or(0, |p| p.line()), reason: e.to_string() })?;
        let line = record.position().map_or(0, |p| p.line());
        let row_error = |reason: String| TraceError::Row { line, reason };
        if loads.len() == MAX_TRACE_SECONDS {
            return Err(TraceError::TooLong);
        }
        if record.len() != 2 {
            return Err(row_error(format!("expected 2 fields (time_s,{metric}), found {}", record.len())));
        }
        let time_s: u64 = record[0]
            .parse()
            .ok()
            .filter(|&t| t <= MAX_TIME_S)
            .ok_or_else(|| row_error(format!("time_s '{}' is not a whole number of seconds in [0, {MAX_TIME_S}]", &record[0])))?;
        let expected = start_s.map(|start: u64| start + loads.len() as u64);
        if let Some(expected) = expected.filter(|&e| e != time_s) {
            return Err(row_error(format!("time_s {time_s} where {expected} was expected: the trace needs one row per second, in order")));
        }
        let load: f64 = record[1]
            .parse()
            .ok()
            .filter(|v: &f64| (0.0..=MAX_LOAD).contains(v))
            .ok_or_else(|| row_error(format!("{metric} '{}' is not a number in [0, {MAX_LOAD}]", &record[1])))?;
        start_s.get_or_insert(time_s);
        loads.push(load);
    }
    match start_s {
        Some(start_s) => Ok(Trace { metric, start_s, loads }),
        None => Err(TraceError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_kinds_of_trace() {
        let t = read_trace("time_s,concurrency\n0,1.5\n1,2\n# a comment\n2, 0\n".as_bytes()).unwrap();
        assert_eq!(t, Trace { metric: ScaleMetric::Concurrency, start_s: 0, loads: vec![1.5, 2.0, 0.0] });
        let t = read_trace("time_s,rps\n10,100\n11,120\n".as_bytes()).unwrap();
        assert_eq!((t.metric, t.start_s, t.loads.len()), (ScaleMetric::Rps, 10, 2));
        assert_eq!(read_trace(t.to_csv().as_bytes()).unwrap(), t);
    }

    #[test]
    fn bad_traces_are_clear_errors() {
        let cases = [
            ("", "header"),
            ("time,load\n0,1\n", "expected 'time_s,concurrency' or 'time_s,rps'"),
            ("time_s,concurrency,extra\n0,1,2\n", "header"),
            ("time_s,concurrency\n", "no rows"),
            ("time_s,concurrency\n0,1\n2,1\n", "line 3: time_s 2 where 1 was expected"),
            ("time_s,concurrency\n1,1\n0,1\n", "time_s 0 where 2 was expected"),
            ("time_s,concurrency\n0,-1\n", "line 2: concurrency '-1' is not a number"),
            ("time_s,rps\n0,NaN\n", "rps 'NaN'"),
            ("time_s,rps\n0,inf\n", "rps 'inf'"),
            ("time_s,rps\n0,1e10\n", "not a number in [0"),
            ("time_s,concurrency\n0.5,1\n", "time_s '0.5' is not a whole number"),
            ("time_s,concurrency\n-1,1\n", "time_s '-1'"),
            ("time_s,concurrency\n99999999999999999999,1\n", "whole number"),
            ("time_s,concurrency\n0\n", "expected 2 fields"),
            ("time_s,concurrency\n0,1,2\n", "expected 2 fields"),
            ("time_s,concurrency\n0,\u{fffd}\n", "not a number"),
        ];
        for (text, want) in cases {
            let err = read_trace(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn traces_are_bounded() {
        let mut text = String::from("time_s,concurrency\n");
        for t in 0..=MAX_TRACE_SECONDS {
            text.push_str(&format!("{t},1\n"));
        }
        assert!(matches!(read_trace(text.as_bytes()), Err(TraceError::TooLong)));
        let huge = std::io::repeat(b'#').take(MAX_TRACE_BYTES + 10);
        assert!(matches!(read_trace(huge), Err(TraceError::TooLarge)));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let err = read_trace(&b"time_s,concurrency\n0,\xff\xfe\n"[..]).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = load_trace(Path::new("/nonexistent/trace.csv")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/trace.csv"), "{err}");
    }
}
