//! Manifests in, JSON values and typed InferenceServices out. Parsing is bounded (input size and
//! document count); unknown fields are warnings, never errors, and the caller keeps the raw
//! document, so nothing a user wrote is dropped from storage.

use serde::Deserialize;
use serde_json::Value;

use super::inference_service::InferenceService;

/// Largest manifest accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Most documents accepted in one manifest.
pub const MAX_DOCUMENTS: usize = 1000;
/// The `apiVersion` of an InferenceService.
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
/// The `kind` of an InferenceService.
pub const KIND: &str = "InferenceService";

/// Why a manifest could not be split into documents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("manifest is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The input's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The input has more than [`MAX_DOCUMENTS`] documents.
    #[error("manifest has more than {limit} documents")]
    TooManyDocuments {
        /// The limit.
        limit: usize,
    },
    /// A document is not valid YAML (or JSON).
    #[error("document {document}: {message}")]
    Syntax {
        /// 1-based document number.
        document: usize,
        /// The parser's message, with line and column where known.
        message: String,
    },
    /// A document is not a mapping (an object).
    #[error("document {document}: expected a mapping (an object with apiVersion, kind, metadata, spec), found {found}")]
    NotAMapping {
        /// 1-based document number.
        document: usize,
        /// What was found: a list, a string, ...
        found: &'static str,
    },
}

/// A problem with one field of a document.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path, e.g. `spec.predictor.minReplicas`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Splits a manifest into its documents: multi-document YAML (`---`) or JSON (one object, or an
/// array of objects). Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge { bytes: text.len(), limit: MAX_INPUT_BYTES });
    }
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') { parse_json(text)? } else { parse_yaml(text)? };
    for (i, doc) in docs.iter().enumerate() {
        if !doc.is_object() {
            return Err(ParseError::NotAMapping { document: i + 1, found: kind_of(doc) });
        }
    }
    Ok(docs)
}

fn parse_json(text: &str) -> Result<Vec<Value>, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Syntax { document: 1, message: e.to_string() })?;
    match value {
        Value::Array(items) if items.len() > MAX_DOCUMENTS => Err(ParseError::TooManyDocuments { limit: MAX_DOCUMENTS }),
        Value::Array(items) => Ok(items.into_iter().filter(|v| !v.is_null()).collect()),
        other => Ok(vec![other]),
    }
}

fn parse_yaml(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        // Counting every document, empty ones too, bounds the work as well as the output.
        if i >= MAX_DOCUMENTS {
            return Err(ParseError::TooManyDocuments { limit: MAX_DOCUMENTS });
        }
        let value = Value::deserialize(de).map_err(|e| ParseError::Syntax { document: i + 1, message: e.to_string() })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl InferenceService {
    /// Reads an InferenceService from a parsed document. Returns it with one warning per unknown
    /// field (`unknown field spec.predictor.foo: kept but not used`); type errors name the field.
    pub fn from_value(value: &Value) -> Result<(InferenceService, Vec<String>), FieldError> {
        check_type_meta(value)?;
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| {
            let path = field_path(&path);
            // The derived root type reads apiVersion and kind itself (checked above).
            if path != "apiVersion" && path != "kind" {
                unknown.push(path);
            }
        };
        let de = serde_ignored::Deserializer::new(value, &mut record);
        let isvc: InferenceService = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            FieldError { field: if field == "." { "(document)".into() } else { field }, message: e.into_inner().to_string() }
        })?;
        let warnings = unknown.into_iter().map(|path| format!("unknown field {path}: kept but not used")).collect();
        Ok((isvc, warnings))
    }
}

/// `spec.predictor.containers[0].foo`: serde_ignored's own rendering marks `Option`s with `?`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

fn check_type_meta(value: &Value) -> Result<(), FieldError> {
    let Some(obj) = value.as_object() else {
        return Err(FieldError { field: "(document)".into(), message: format!("expected a mapping, found {}", kind_of(value)) });
    };
    for (field, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match obj.get(field) {
            Some(Value::String(s)) if s == want => {}
            Some(Value::String(s)) => {
                return Err(FieldError { field: field.into(), message: format!("is {s:?}; expected {want:?}") });
            }
            Some(other) => {
                return Err(FieldError { field: field.into(), message: format!("expected the string {want:?}, found {}", kind_of(other)) });
            }
            None => return Err(FieldError { field: field.into(), message: format!("required; expected {want:?}") }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_skip_empty_ones() {
        let docs = parse_documents("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs, vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]);
    }

    #[test]
    fn json_object_and_array() {
        assert_eq!(parse_documents(r#"{"a": 1}"#).unwrap().len(), 1);
        assert_eq!(parse_documents(r#"[{"a": 1}, {"b": 2}]"#).unwrap().len(), 2);
    }

    #[test]
    fn limits_are_enforced() {
        let big = "a".repeat(MAX_INPUT_BYTES + 1);
        assert!(matches!(parse_documents(&big), Err(ParseError::TooLarge { .. })));
        let many = "a: 1\n---\n".repeat(MAX_DOCUMENTS + 1);
        assert_eq!(parse_documents(&many), Err(ParseError::TooManyDocuments { limit: MAX_DOCUMENTS }));
        let empties = "---\n".repeat(MAX_DOCUMENTS + 1);
        assert_eq!(parse_documents(&empties), Err(ParseError::TooManyDocuments { limit: MAX_DOCUMENTS }));
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let err = parse_documents("a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert!(matches!(err, ParseError::Syntax { document: 2, .. }), "{err}");
        let err = parse_documents("a: 1\n---\n- x\n").unwrap_err();
        assert_eq!(err, ParseError::NotAMapping { document: 2, found: "a list" });
    }

    #[test]
    fn type_meta_is_checked() {
        let v = serde_json::json!({"apiVersion": "serving.kubeflow.org/v1beta1", "kind": "InferenceService"});
        assert_eq!(InferenceService::from_value(&v).unwrap_err().field, "apiVersion");
        let v = serde_json::json!({"apiVersion": API_VERSION, "kind": "Service"});
        assert_eq!(InferenceService::from_value(&v).unwrap_err().field, "kind");
        let v = serde_json::json!({"apiVersion": API_VERSION});
        assert_eq!(InferenceService::from_value(&v).unwrap_err().field, "kind");
    }

    #[test]
    fn type_errors_name_the_field_and_unknown_fields_warn() {
        let v = serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "a"},
            "spec": {"predictor": {"minReplicas": "two", "model": {}}}
        });
        let err = InferenceService::from_value(&v).unwrap_err();
        assert_eq!(err.field, "spec.predictor.minReplicas", "{err}");

        let v = serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "a"},
            "spec": {"predictor": {"foo": 1, "model": {"bar": {"x": 1}}}, "baz": true}
        });
        let (_, warnings) = InferenceService::from_value(&v).unwrap();
        assert_eq!(
            warnings,
            vec![
                "unknown field spec.baz: kept but not used",
                "unknown field spec.predictor.foo: kept but not used",
                "unknown field spec.predictor.model.bar: kept but not used",
            ]
        );
    }
}
