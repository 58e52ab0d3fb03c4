//! Manifests: files, directories or stdin, each holding one or more YAML or JSON documents.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{CliError, MAX_INPUT_BYTES};

/// Most documents one command handles.
const MAX_DOCUMENTS: usize = 1000;

fn read_bounded(mut r: impl Read, what: &str) -> Result<String, CliError> {
    let mut text = String::new();
    r.by_ref().take(MAX_INPUT_BYTES + 1).read_to_string(&mut text).map_err(|e| CliError::Input(format!("reading {what}: {e}")))?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(CliError::Input(format!("{what} is larger than {MAX_INPUT_BYTES} bytes")));
    }
    Ok(text)
}

/// Every document of every input, in order: `-` is stdin, a directory contributes its *.yaml,
/// *.yml and *.json files in name order (not recursing, as kubectl without -R).
pub(crate) fn load(inputs: &[String]) -> Result<Vec<(String, Value)>, CliError> {
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            out.extend(parse(&read_bounded(std::io::stdin().lock(), "stdin")?, "stdin")?);
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| CliError::Input(format!("reading directory {input}: {e}")))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")))
                .collect();
            files.sort();
            for f in files {
                out.extend(load_file(&f)?);
                check_count(out.len())?;
            }
        } else {
            out.extend(load_file(path)?);
        }
        check_count(out.len())?;
    }
    Ok(out)
}

fn check_count(n: usize) -> Result<(), CliError> {
    if n > MAX_DOCUMENTS {
        return Err(CliError::Input(format!("more than {MAX_DOCUMENTS} documents given")));
    }
    Ok(())
}

fn load_file(path: &Path) -> Result<Vec<(String, Value)>, CliError> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| CliError::Input(format!("{what}: {e}")))?;
    parse(&read_bounded(file, &what)?, &what)
}

/// Splits multi-document YAML (JSON is YAML too), skips empty documents and expands `kind: List`.
/// Each document comes with where it came from, for messages.
pub(crate) fn parse(text: &str, source: &str) -> Result<Vec<(String, Value)>, CliError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| CliError::Input(format!("{source}: document {}: {e}", i + 1)))?;
        let at = format!("{source} (document {})", i + 1);
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
                let Some(items) = map.get("items").and_then(Value::as_array) else {
                    return Err(CliError::Input(format!("{at}: a List needs an items array")));
                };
                out.extend(items.iter().map(|item| (at.clone(), item.clone())));
            }
            Value::Object(_) => out.push((at, value)),
            _ => return Err(CliError::Input(format!("{at}: a document must be an object with apiVersion, kind and metadata"))),
        }
        check_count(out.len())?;
    }
    Ok(out)
}
