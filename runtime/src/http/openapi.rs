//! The server's OpenAPI 3 document, served at `GET /openapi.json` (where KServe's Python model
//! server serves its own) and `GET /openapi.yaml`.
//!
//! The source is `docs/openapi/quiver.yaml`; the JSON generated from it is embedded here, and a
//! test fails when the two drift (`QUIVER_UPDATE_OPENAPI=1` rewrites the JSON). An
//! [`HttpExtension`] may add paths (the control plane's management API under `quiver up`):
//! they are merged once, on the first request for the document, never per request.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::warn;

use super::HttpExtension;

/// The data plane's document, generated from `docs/openapi/quiver.yaml`.
pub(crate) const DATA_PLANE_JSON: &str = include_str!("../../../docs/openapi/quiver.json");

/// The served document in both forms, built once.
#[derive(Debug, Default)]
pub struct Documents {
    json: OnceLock<Bytes>,
    yaml: OnceLock<Bytes>,
}

impl Documents {
    /// The document as JSON: the data plane's, with the extension's part merged in.
    pub fn json(&self, extension: Option<&dyn HttpExtension>) -> Bytes {
        self.json
            .get_or_init(|| match extension.and_then(|e| e.openapi()) {
                None => Bytes::from_static(DATA_PLANE_JSON.as_bytes()),
                Some(extra) => {
                    let merged = merged(data_plane(), extra);
                    Bytes::from(serde_json::to_vec(&merged).unwrap_or_else(|_| DATA_PLANE_JSON.as_bytes().to_vec()))
                }
            })
            .clone()
    }

    /// The same document as YAML.
    pub fn yaml(&self, extension: Option<&dyn HttpExtension>) -> Bytes {
        self.yaml
            .get_or_init(|| {
                let value: Value = serde_json::from_slice(&self.json(extension)).unwrap_or(Value::Null);
                Bytes::from(serde_yaml_ng::to_string(&value).unwrap_or_default())
            })
            .clone()
    }
}

/// The embedded data-plane document, parsed.
pub(crate) fn data_plane() -> Value {
    serde_json::from_str(DATA_PLANE_JSON).unwrap_or(Value::Null)
}

/// `base` with `extra`'s paths, tags and components added. On a name both define, `base`'s
/// entry stays (and the clash is logged): an extension adds to the server's API, never redefines it.
pub(crate) fn merged(mut base: Value, extra: Value) -> Value {
    let Value::Object(extra) = extra else { return base };
    let Some(out) = base.as_object_mut() else { return base };
    for (key, value) in extra {
        match (key.as_str(), value) {
            ("paths", Value::Object(paths)) => add_entries(out, "paths", paths),
            ("components", Value::Object(sections)) => {
                let components = out.entry("components").or_insert_with(|| Value::Object(Map::new()));
                if let Some(components) = components.as_object_mut() {
                    for (section, entries) in sections {
                        if let Value::Object(entries) = entries {
                            add_entries(components, &section, entries);
                        }
                    }
                }
            }
            ("tags", Value::Array(tags)) => {
                if let Some(Value::Array(existing)) = out.get_mut("tags") {
                    existing.extend(tags);
                } else {
                    out.insert("tags".into(), Value::Array(tags));
                }
            }
            // The extension's own title, version and description describe only its part.
            _ => {}
        }
    }
    base
}

fn add_entries(parent: &mut Map<String, Value>, section: &str, entries: Map<String, Value>) {
    let target = parent.entry(section).or_insert_with(|| Value::Object(Map::new()));
    let Some(target) = target.as_object_mut() else { return };
    for (name, entry) in entries {
        if target.contains_key(&name) {
            warn!("OpenAPI: the extension's {section} entry '{name}' is already defined by the server; kept the server's");
            continue;
        }
        target.insert(name, entry);
    }
}

/// Checks that a generated JSON file matches its YAML source, or rewrites it when
/// `QUIVER_UPDATE_OPENAPI` is set. Shared by the crates that embed a document.
#[cfg(test)]
pub(crate) fn check_generated(yaml_path: &std::path::Path, json_path: &std::path::Path) {
    let yaml = std::fs::read_to_string(yaml_path).unwrap();
    let source: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    if std::env::var_os("QUIVER_UPDATE_OPENAPI").is_some() {
        let mut text = serde_json::to_string_pretty(&source).unwrap();
        text.push('\n');
        std::fs::write(json_path, text).unwrap();
    }
    let generated: Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    assert!(
        generated == source,
        "{} is out of date with {}: run `QUIVER_UPDATE_OPENAPI=1 cargo test -p quiver-runtime --lib openapi`",
        json_path.display(),
        yaml_path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi")
    }

    #[test]
    fn generated_json_matches_the_yaml_sources() {
        let dir = docs_dir();
        check_generated(&dir.join("quiver.yaml"), &dir.join("quiver.json"));
        check_generated(&dir.join("management.yaml"), &dir.join("management.json"));
    }

    /// Every `$ref` of the document points at something the document defines.
    #[test]
    fn every_reference_resolves() {
        fn walk(node: &Value, refs: &mut Vec<String>) {
            match node {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        refs.push(r.clone());
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let management: Value = serde_json::from_str(include_str!("../../../docs/openapi/management.json")).unwrap();
        let doc = merged(data_plane(), management);
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(refs.len() > 50, "{}", refs.len());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
            assert!(doc.pointer(pointer).is_some(), "unresolved {r}");
        }
    }

    #[test]
    fn merging_adds_and_never_replaces() {
        let base = json!({"paths": {"/a": {"get": {}}}, "components": {"schemas": {"x": {"type": "string"}}}, "tags": [{"name": "a"}]});
        let extra = json!({
            "info": {"title": "ignored"},
            "paths": {"/a": {"post": {}}, "/b": {"get": {}}},
            "components": {"schemas": {"x": {"type": "integer"}, "y": {}}, "securitySchemes": {"bearerAuth": {"type": "http"}}},
            "tags": [{"name": "b"}],
        });
        let out = merged(base, extra);
        assert_eq!(out["paths"]["/a"], json!({"get": {}}));
        assert_eq!(out["paths"]["/b"], json!({"get": {}}));
        assert_eq!(out["components"]["schemas"]["x"], json!({"type": "string"}));
        assert!(out["components"]["schemas"]["y"].is_object());
        assert_eq!(out["components"]["securitySchemes"]["bearerAuth"]["type"], "http");
        assert_eq!(out["tags"], json!([{"name": "a"}, {"name": "b"}]));
        assert!(out.get("info").is_none());
    }

    #[test]
    fn the_served_document_is_built_once() {
        let docs = Documents::default();
        let first = docs.json(None);
        assert_eq!(first.as_ptr(), docs.json(None).as_ptr());
        let parsed: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(parsed["openapi"], "3.0.3");
        assert!(parsed["paths"]["/v2/models/{MODEL_NAME}/infer"]["post"].is_object());
        let yaml: Value = serde_yaml_ng::from_slice(&docs.yaml(None)).unwrap();
        assert_eq!(yaml, parsed);
    }
}
