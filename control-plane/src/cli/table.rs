//! kubectl-style tables and ages.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Left-aligned columns separated by three spaces, as kubectl's tabwriter prints them.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's `HumanDuration`: 45s, 3m20s, 15m, 2h5m, 30h, 4d6h, 30d, 2y30d, 9y.
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if !s.is_multiple_of(60) {
            format!("{m}m{}s", s % 60)
        } else {
            format!("{m}m")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if !m.is_multiple_of(60) {
            format!("{h}h{}m", m % 60)
        } else {
            format!("{h}h")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if !h.is_multiple_of(24) {
            format!("{}d{}h", h / 24, h % 24)
        } else {
            format!("{}d", h / 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", h / 24 / 365, (h / 24) % 365)
    } else {
        format!("{}y", h / 24 / 365)
    }
}

/// The age of an RFC 3339 timestamp at `now`, or `<unknown>`.
pub(crate) fn age(timestamp: &Value, now: SystemTime) -> String {
    match timestamp.as_str().and_then(|t| humantime::parse_rfc3339_weak(t).ok()) {
        Some(t) => human_duration(now.duration_since(t).unwrap_or_default()),
        None => "<unknown>".into(),
    }
}

/// A scalar as a cell: strings bare, numbers and booleans as JSON, nothing as "".
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The status of the condition of type `kind` ("" if absent).
pub(crate) fn condition(obj: &Value, kind: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .map(|c| cell(&c["status"]))
        .unwrap_or_default()
}

/// (PREV, LATEST): the percents of the predictor's previous and latest revisions.
pub(crate) fn traffic(obj: &Value) -> (String, String) {
    let entries = obj["status"]["components"]["predictor"]["traffic"].as_array().cloned().unwrap_or_default();
    let latest = entries.iter().find(|t| t["latestRevision"] == true).map(|t| cell(&t["percent"])).unwrap_or_default();
    let prev = entries.iter().find(|t| t["latestRevision"] != true).map(|t| cell(&t["percent"])).unwrap_or_default();
    (prev, latest)
}

/// The `get isvc` table.
pub(crate) fn isvc_table(items: &[Value], wide: bool, with_namespace: bool, now: SystemTime) -> String {
    let mut header = vec!["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"];
    if wide {
        header.extend(["DESIRED", "READY-REPLICAS"]);
    }
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            let predictor = &o["status"]["components"]["predictor"];
            let (prev, latest) = traffic(o);
            let mut row = vec![
                cell(&o["metadata"]["name"]),
                cell(&o["status"]["url"]),
                condition(o, "Ready"),
                prev,
                latest,
                cell(&predictor["previousRolledoutRevision"]),
                cell(&predictor["latestReadyRevision"]),
                age(&o["metadata"]["creationTimestamp"], now),
            ];
            if wide {
                row.push(cell(&predictor["replicas"]["desired"]));
                row.push(cell(&predictor["replicas"]["ready"]));
            }
            if with_namespace {
                row.insert(0, cell(&o["metadata"]["namespace"]));
            }
            row
        })
        .collect();
    render(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (7200, "120m"),
            (3 * 3600 + 300, "3h5m"),
            (30 * 3600, "30h"),
            (4 * 86400 + 6 * 3600, "4d6h"),
            (30 * 86400, "30d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn table_pads_columns() {
        let t = render(&["NAME", "AGE"], &[vec!["a-long-name".into(), "5s".into()], vec!["b".into(), "".into()]]);
        assert_eq!(t, "NAME          AGE\na-long-name   5s\nb\n");
    }
}
