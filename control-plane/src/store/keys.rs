//! Table keys: `resource NUL namespace NUL name`, so one range scan lists a resource in one
//! namespace or in all of them, in namespace then name order.

use super::StoreError;

/// The longest name or namespace the store keys (Kubernetes' limit for object names).
const MAX_LEN: usize = 253;

pub(crate) fn object_key(resource: &str, namespace: &str, name: &str) -> String {
    format!("{resource}\0{namespace}\0{name}")
}

pub(crate) fn prefix(resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{resource}\0{ns}\0"),
        None => format!("{resource}\0"),
    }
}

/// Refuses what would break the key layout; the API applies the stricter DNS rules.
pub(crate) fn check(field: &str, value: &str, allow_empty: bool) -> Result<(), StoreError> {
    let invalid = |message: &str| Err(StoreError::Invalid { field: field.into(), message: message.into() });
    if value.is_empty() && !allow_empty {
        return invalid("required value");
    }
    if value.len() > MAX_LEN {
        return invalid("must be no more than 253 characters");
    }
    if value.chars().any(|c| c.is_control() || c == '/') {
        return invalid("must not contain '/' or control characters");
    }
    Ok(())
}
