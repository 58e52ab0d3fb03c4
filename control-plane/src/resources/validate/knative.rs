//! Knative's `autoscaling.knative.dev/*` annotations: checked with Knative's bounds, collected
//! verbatim for the autoscaler's configuration.

use std::collections::BTreeMap;

use super::{AnnotationScaling, Checker};
use crate::resources::predictor::ScaleMetric;

const PREFIX: &str = "autoscaling.knative.dev/";
const KPA_CLASS: &str = "kpa.autoscaling.knative.dev";
const HPA_CLASS: &str = "hpa.autoscaling.knative.dev";
/// Knative caps every duration setting at an hour.
const HOUR_SECS: f64 = 3600.0;

/// Reads the Knative annotations from the InferenceService's metadata and the predictor's own
/// annotations (the predictor's win, as they are applied to its pods last).
pub(crate) fn check_annotations(
    c: &mut Checker,
    metadata: Option<&BTreeMap<String, String>>,
    predictor: Option<&BTreeMap<String, String>>,
) -> AnnotationScaling {
    let mut merged: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    let sources = [("metadata.annotations", metadata), ("spec.predictor.annotations", predictor)];
    for (base, map) in sources {
        for (key, value) in map.into_iter().flatten() {
            if key.starts_with(PREFIX) {
                merged.insert(key.as_str(), (value.as_str(), format!("{base}[{key:?}]")));
            }
        }
    }
    let mut out = AnnotationScaling::default();
    for (key, (value, field)) in &merged {
        out.all.insert((*key).to_string(), (*value).to_string());
        let value = value.trim();
        match &key[PREFIX.len()..] {
            "minScale" | "min-scale" => out.min_scale = scale(c, field, value).map(|v| (v, field.clone())),
            "maxScale" | "max-scale" => out.max_scale = scale(c, field, value).map(|v| (v, field.clone())),
            "initial-scale" | "initialScale" => {
                scale(c, field, value);
            }
            "target" => out.target = number(c, field, value, f64::MIN_POSITIVE, f64::MAX, "greater than 0"),
            "target-utilization-percentage" => {
                number(c, field, value, 1.0, 100.0, "between 1 and 100");
            }
            "metric" => out.metric = metric(c, field, value),
            "class" => match value {
                KPA_CLASS => {}
                HPA_CLASS => c.warn(format!("{field}: the HPA class is not used; embedded mode scales with the KPA on concurrency or rps")),
                other => c.error(field.as_str(), format!("must be {KPA_CLASS} or {HPA_CLASS}, got {other:?}")),
            },
            "window" => {
                duration_in(c, field, value, 6.0, HOUR_SECS);
            }
            "panic-window-percentage" => {
                number(c, field, value, 1.0, 100.0, "between 1 and 100");
            }
            "panic-threshold-percentage" => {
                number(c, field, value, 110.0, 1000.0, "between 110 and 1000");
            }
            "scale-down-delay" => {
                duration_in(c, field, value, 0.0, HOUR_SECS);
            }
            "scale-to-zero-pod-retention-period" => {
                duration_in(c, field, value, 0.0, f64::MAX);
            }
            _ => c.warn(format!("{field}: not a Knative autoscaling setting Quiver knows; kept but not used")),
        }
    }
    out
}

/// `concurrency` or `rps`; `cpu` and `memory` are accepted with a warning and scale on
/// concurrency.
pub(crate) fn metric(c: &mut Checker, field: &str, value: &str) -> Option<ScaleMetric> {
    match value {
        "concurrency" => Some(ScaleMetric::Concurrency),
        "rps" => Some(ScaleMetric::Rps),
        "cpu" | "memory" => {
            c.warn(format!("{field}: {value} is not measured in embedded mode; scaling on concurrency"));
            Some(ScaleMetric::Concurrency)
        }
        other => {
            c.error(field, format!("must be concurrency, rps, cpu or memory, got {other:?}"));
            None
        }
    }
}

fn scale(c: &mut Checker, field: &str, value: &str) -> Option<u32> {
    match value.parse::<u32>() {
        Ok(v) => Some(v),
        Err(_) => {
            c.error(field, format!("must be a whole number, 0 or more, got {value:?}"));
            None
        }
    }
}

fn number(c: &mut Checker, field: &str, value: &str, min: f64, max: f64, range: &str) -> Option<f64> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= min && v <= max => Some(v),
        _ => {
            c.error(field, format!("must be a number {range}, got {value:?}"));
            None
        }
    }
}

fn duration_in(c: &mut Checker, field: &str, value: &str, min_secs: f64, max_secs: f64) -> Option<f64> {
    match parse_duration_secs(value) {
        Ok(secs) if secs >= min_secs && secs <= max_secs => Some(secs),
        Ok(_) if max_secs == f64::MAX => {
            c.error(field, format!("must be at least {min_secs}s, got {value:?}"));
            None
        }
        Ok(_) => {
            c.error(field, format!("must be between {min_secs}s and {max_secs}s, got {value:?}"));
            None
        }
        Err(why) => {
            c.error(field, format!("{why} (a duration such as \"60s\", \"1m30s\" or \"500ms\"), got {value:?}"));
            None
        }
    }
}

/// A Go `time.Duration` string (`300ms`, `1.5h`, `2h45m`), in seconds. Knative parses these
/// with Go's `time.ParseDuration`; a bare `0` is the only number without a unit.
pub(crate) fn parse_duration_secs(s: &str) -> Result<f64, &'static str> {
    if s == "0" {
        return Ok(0.0);
    }
    if s.starts_with('-') {
        return Err("must not be negative");
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err("not a duration");
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| "not a duration")?;
        let unit_len = tail.find(|ch: char| ch.is_ascii_digit() || ch == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => HOUR_SECS,
            "" => return Err("missing unit"),
            _ => return Err("unknown unit"),
        };
        total += n * scale;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration_secs("60s"), Ok(60.0));
        assert_eq!(parse_duration_secs("1m30s"), Ok(90.0));
        assert_eq!(parse_duration_secs("500ms"), Ok(0.5));
        assert_eq!(parse_duration_secs("1.5h"), Ok(5400.0));
        assert_eq!(parse_duration_secs("0"), Ok(0.0));
        assert!(parse_duration_secs("60").is_err());
        assert!(parse_duration_secs("-1s").is_err());
        assert!(parse_duration_secs("1d").is_err());
        assert!(parse_duration_secs("").is_err());
        assert!(parse_duration_secs("s").is_err());
    }
}
