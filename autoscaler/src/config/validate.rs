//! The parsers and range checks of single settings, as Knative's webhook and ConfigMap parser
//! apply them: each takes the key and value as written, so errors name what the user wrote.

use crate::settings::{parse_duration_secs, parse_integer, parse_number, Settings};

use super::ConfigError;

pub(super) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), reason: reason.into() }
}

/// Reads `key` with `parse` when set.
pub(super) fn read<T>(
    settings: &Settings,
    key: &str,
    parse: impl Fn(&str, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    settings.get(key).map(|value| parse(key, value)).transpose()
}

/// A number within `[min, max]`.
pub(super) fn number_in(min: f64, max: f64) -> impl Fn(&str, &str) -> Result<f64, ConfigError> {
    move |key, value| {
        let v = parse_number(key, value)?;
        if v < min || v > max {
            return Err(invalid(key, value, format!("must be in [{min}, {max}]")));
        }
        Ok(v)
    }
}

/// A whole number of at least `min`.
pub(super) fn integer_at_least(min: i32) -> impl Fn(&str, &str) -> Result<i32, ConfigError> {
    move |key, value| {
        let v = parse_integer(key, value)?;
        if v < min {
            return Err(invalid(key, value, format!("must be at least {min}")));
        }
        Ok(v)
    }
}

/// A whole-second duration within `[min_s, max_s]`.
pub(super) fn duration_in(min_s: u64, max_s: u64) -> impl Fn(&str, &str) -> Result<u64, ConfigError> {
    move |key, value| parse_duration_secs(key, value, min_s, max_s)
}

/// `-1` (unlimited) or a non-negative number.
pub(super) fn burst_capacity(key: &str, value: &str) -> Result<f64, ConfigError> {
    let v = parse_number(key, value)?;
    if v < 0.0 && v != -1.0 {
        return Err(invalid(key, value, "must be either non-negative or -1 (for unlimited)"));
    }
    Ok(v)
}

pub(super) fn scale_rate(key: &str, value: &str) -> Result<f64, ConfigError> {
    let v = parse_number(key, value)?;
    if v <= 1.0 {
        return Err(invalid(key, value, "must be greater than 1.0"));
    }
    Ok(v)
}

pub(super) fn class(key: &str, value: &str) -> Result<(), ConfigError> {
    match value {
        "kpa.autoscaling.knative.dev" => Ok(()),
        _ => Err(ConfigError::Unsupported {
            key: key.into(),
            value: value.into(),
            reason: "only the KPA (kpa.autoscaling.knative.dev) is implemented".into(),
        }),
    }
}
