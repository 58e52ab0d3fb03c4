//! The raw configuration as users write it: a flat map of Knative annotation names,
//! `config-autoscaler` ConfigMap keys and KServe fields to string values, plus the parsers for
//! those values (numbers, booleans and Go durations such as `60s` or `1m30s`).
//!
//! Nothing here knows what a value means; [`crate::config`] resolves the map into an
//! [`crate::AutoscalerConfig`] with Knative's precedence and validation.

use std::collections::BTreeMap;

use crate::config::ConfigError;

/// The prefix of Knative's per-revision autoscaling annotations.
pub const ANNOTATION_PREFIX: &str = "autoscaling.knative.dev/";

/// Knative's per-revision annotations (after [`ANNOTATION_PREFIX`]), each with the legacy
/// camelCase spelling Knative still reads when the kebab-case one is absent.
pub const ANNOTATIONS: &[(&str, Option<&str>)] = &[
    ("class", None),
    ("metric", None),
    ("target", None),
    ("target-utilization-percentage", Some("targetUtilizationPercentage")),
    ("min-scale", Some("minScale")),
    ("max-scale", Some("maxScale")),
    ("initial-scale", Some("initialScale")),
    ("activation-scale", None),
    ("scale-down-delay", Some("scaleDownDelay")),
    ("window", None),
    ("panic-window-percentage", Some("panicWindowPercentage")),
    ("panic-threshold-percentage", Some("panicThresholdPercentage")),
    ("target-burst-capacity", Some("targetBurstCapacity")),
    ("scale-to-zero-pod-retention-period", Some("scaleToZeroPodRetentionPeriod")),
    ("metric-aggregation-algorithm", Some("metricAggregationAlgorithm")),
];

/// The keys of Knative's cluster-wide `config-autoscaler` ConfigMap (written without a prefix).
pub const CLUSTER_KEYS: &[&str] = &[
    "pod-autoscaler-class",
    "enable-scale-to-zero",
    "allow-zero-initial-scale",
    "max-scale-up-rate",
    "max-scale-down-rate",
    "container-concurrency-target-percentage",
    "container-concurrency-target-default",
    "requests-per-second-target-default",
    "target-burst-capacity",
    "panic-window-percentage",
    "panic-threshold-percentage",
    "activator-capacity",
    "initial-scale",
    "min-scale",
    "max-scale",
    "max-scale-limit",
    "stable-window",
    "scale-down-delay",
    "scale-to-zero-grace-period",
    "scale-to-zero-pod-retention-period",
];

/// The autoscaling fields of a KServe InferenceService component.
pub const KSERVE_FIELDS: &[&str] = &["minReplicas", "maxReplicas", "scaleTarget", "scaleMetric"];

/// The revision (and KServe component) field that caps requests per replica.
pub const CONTAINER_CONCURRENCY: &str = "containerConcurrency";

/// Largest configuration file or value accepted, in bytes: a configuration is a few dozen keys.
pub const MAX_SETTINGS_BYTES: usize = 1 << 20;

/// The settings as written: recognised keys mapped to their string values. Later writes of a
/// key replace earlier ones, so `--set` overrides a `--config` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// No settings: every value takes Knative's default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Settings from a JSON object of keys to strings, numbers or booleans, e.g.
    /// `{"autoscaling.knative.dev/target": "10", "minReplicas": 0}`.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_SETTINGS_BYTES {
            return Err(ConfigError::NotASettingsObject(format!("{} bytes is more than the {MAX_SETTINGS_BYTES} accepted", text.len())));
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::NotASettingsObject(e.to_string()))?;
        let serde_json::Value::Object(object) = value else {
            return Err(ConfigError::NotASettingsObject("the top level is not an object".into()));
        };
        let mut settings = Self::new();
        for (key, value) in object {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ConfigError::Invalid {
                        key,
                        value: other.to_string(),
                        reason: "must be a string, a number or a boolean".into(),
                    })
                }
            };
            settings.set(&key, &text)?;
        }
        Ok(settings)
    }

    /// Sets `key` to `value`; the key must be one this crate understands.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        if !is_known_key(key) {
            return Err(ConfigError::UnknownKey(key.to_string()));
        }
        self.values.insert(key.to_string(), value.trim().to_string());
        Ok(())
    }

    /// Sets one `KEY=VALUE` assignment (the form of `--set`).
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| ConfigError::NotAnAssignment(assignment.to_string()))?;
        self.set(key, value)
    }

    /// The value of `key` exactly as written, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The annotation `name` (without [`ANNOTATION_PREFIX`]) as `(full key, value)`: the
    /// kebab-case key first, else its legacy camelCase alias (Knative's key priority).
    pub fn annotation(&self, name: &str) -> Option<(String, &str)> {
        let alias = ANNOTATIONS.iter().find(|(n, _)| *n == name).and_then(|(_, alias)| *alias);
        std::iter::once(name)
            .chain(alias)
            .map(|n| format!("{ANNOTATION_PREFIX}{n}"))
            .find_map(|key| self.get(&key).map(|v| (key.clone(), v)))
    }

    /// Whether any KServe field is set: then KServe's mapping onto annotations applies.
    pub fn has_kserve_fields(&self) -> bool {
        KSERVE_FIELDS.iter().any(|f| self.contains(f))
    }
}

fn is_known_key(key: &str) -> bool {
    if let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) {
        return ANNOTATIONS.iter().any(|(n, alias)| *n == name || *alias == Some(name));
    }
    CLUSTER_KEYS.contains(&key) || KSERVE_FIELDS.contains(&key) || key == CONTAINER_CONCURRENCY
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), reason: reason.into() }
}

/// A finite number (Go's `strconv.ParseFloat`, less NaN and infinities).
pub fn parse_number(key: &str, value: &str) -> Result<f64, ConfigError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(invalid(key, value, "must be a number")),
    }
}

/// A whole number that fits Kubernetes' int32 replica counts.
pub fn parse_integer(key: &str, value: &str) -> Result<i32, ConfigError> {
    value.parse::<i32>().map_err(|_| invalid(key, value, "must be a whole number"))
}

/// A boolean as Go's `strconv.ParseBool` reads one.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(key, value, "must be true or false")),
    }
}

/// A Go duration (`time.ParseDuration`: `30s`, `1m30s`, `1.5h`, `500ms`, `0`) in whole seconds,
/// within `[min_s, max_s]`. The simulator's clock ticks in seconds, so a fraction of a second
/// is refused, as Knative refuses one for its windows and delays.
pub fn parse_duration_secs(key: &str, value: &str, min_s: u64, max_s: u64) -> Result<u64, ConfigError> {
    let nanos = parse_go_duration_nanos(value)
        .ok_or_else(|| invalid(key, value, "must be a duration such as 30s, 1m30s or 1h (a number with a unit: h, m, s, ms)"))?;
    let out_of_range = || invalid(key, value, format!("must be in [{min_s}s, {max_s}s]"));
    if nanos < 0 {
        return Err(out_of_range());
    }
    const NANOS_PER_SECOND: i128 = 1_000_000_000;
    if nanos % NANOS_PER_SECOND != 0 {
        return Err(invalid(key, value, "must be specified with at most second precision"));
    }
    let secs = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| out_of_range())?;
    if secs < min_s || secs > max_s {
        return Err(out_of_range());
    }
    Ok(secs)
}

/// Go's duration grammar: an optional sign, then one or more `<decimal><unit>` terms; a bare
/// `0` is allowed. Returns nanoseconds, or `None` when the text is not a duration or overflows.
fn parse_go_duration_nanos(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || whole.len() > 18 {
            return None;
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut term = whole.checked_mul(unit_nanos)?;
        // Digits beyond nanosecond resolution cannot change the result.
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(18) {
            scale /= 10;
            term = term.checked_add(i128::from(digit - b'0') * scale)?;
        }
        total = total.checked_add(term)?;
        rest = after;
    }
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let cases: &[(&str, Option<i128>)] = &[
            ("0", Some(0)),
            ("60s", Some(60_000_000_000)),
            ("1m30s", Some(90_000_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("500ms", Some(500_000_000)),
            ("-6s", Some(-6_000_000_000)),
            ("+2m", Some(120_000_000_000)),
            ("60", None),
            ("s", None),
            ("", None),
            ("1x", None),
            ("1..5s", None),
            ("99999999999999999999h", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration_nanos(text), *want, "{text}");
        }
    }

    #[test]
    fn durations_must_be_whole_seconds_in_range() {
        assert_eq!(parse_duration_secs("k", "1m", 6, 3600).unwrap(), 60);
        assert_eq!(parse_duration_secs("k", "0s", 0, 10).unwrap(), 0);
        for bad in ["1500ms", "5s", "2h", "-1s", "soon"] {
            let err = parse_duration_secs("k", bad, 6, 3600).unwrap_err().to_string();
            assert!(err.contains("'k'") && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn json_settings_take_strings_numbers_and_booleans() {
        let s = Settings::from_json(r#"{"autoscaling.knative.dev/target": "10", "minReplicas": 0, "enable-scale-to-zero": true}"#).unwrap();
        assert_eq!(s.get("autoscaling.knative.dev/target"), Some("10"));
        assert_eq!(s.get("minReplicas"), Some("0"));
        assert_eq!(s.get("enable-scale-to-zero"), Some("true"));
    }

    #[test]
    fn bad_settings_input_is_a_clear_error() {
        let cases = [
            ("[1, 2]", "not a JSON object"),
            ("{", "not a JSON object"),
            (r#"{"autoscaling.knative.dev/targt": "10"}"#, "unknown setting 'autoscaling.knative.dev/targt'"),
            (r#"{"minReplicas": [1]}"#, "must be a string, a number or a boolean"),
        ];
        for (text, want) in cases {
            let err = Settings::from_json(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = Settings::new().set_assignment("minReplicas").unwrap_err().to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn annotations_prefer_the_kebab_case_key_over_the_legacy_alias() {
        let mut s = Settings::new();
        s.set_assignment("autoscaling.knative.dev/minScale=2").unwrap();
        assert_eq!(s.annotation("min-scale"), Some(("autoscaling.knative.dev/minScale".into(), "2")));
        s.set_assignment("autoscaling.knative.dev/min-scale=3").unwrap();
        assert_eq!(s.annotation("min-scale"), Some(("autoscaling.knative.dev/min-scale".into(), "3")));
    }

    #[test]
    fn scalar_parsers_name_the_key_and_value() {
        assert!(parse_bool("b", "True").unwrap());
        assert!(parse_bool("b", "yes").unwrap_err().to_string().contains("'b'"));
        assert!(parse_number("n", "NaN").is_err());
        assert!(parse_number("n", "inf").is_err());
        assert_eq!(parse_integer("i", "7").unwrap(), 7);
        assert!(parse_integer("i", "7.5").is_err());
    }
}
