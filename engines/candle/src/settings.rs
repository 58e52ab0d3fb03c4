//! How a Hugging Face directory says to turn token states into a sentence embedding:
//! sentence-transformers' `modules.json`, `1_Pooling/config.json` and
//! `sentence_bert_config.json`, the tokenizer's `tokenizer_config.json`, and the model config's
//! `parameters` that override them.

use std::{collections::BTreeMap, fs, path::Path};

use serde::Deserialize;

use super::{pooling::Pooling, HfError};

/// The sentence-embedding head of a model: pooling, normalization and sequence length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingSettings {
    /// How token states become one vector per sentence.
    pub pooling: Pooling,
    /// Whether the vector is scaled to unit L2 norm (a `Normalize` module).
    pub normalize: bool,
    /// Tokens per sequence, special tokens included; longer text is truncated.
    pub max_length: usize,
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// sentence-transformers' `Pooling` module config (`1_Pooling/config.json`).
#[derive(Debug, Default, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// Largest `model_max_length` taken as real: Hugging Face writes 1e30 for "no limit".
const SANE_MODEL_MAX_LENGTH: u64 = 1 << 20;

/// Reads a JSON file that may be absent.
fn read_optional<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, HfError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| HfError::Invalid { path: path.to_path_buf(), message: e.to_string() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HfError::Io { path: path.to_path_buf(), message: e.to_string() }),
    }
}

impl PoolingConfig {
    fn pooling(&self) -> Result<Pooling, HfError> {
        let unsupported = [
            (self.pooling_mode_weightedmean_tokens, "pooling_mode_weightedmean_tokens"),
            (self.pooling_mode_lasttoken, "pooling_mode_lasttoken"),
        ];
        if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(HfError::Unsupported(format!("{name} is not supported (use mean, cls, max or mean_sqrt_len pooling)")));
        }
        let modes: Vec<Pooling> = [
            (self.pooling_mode_cls_token, Pooling::Cls),
            (self.pooling_mode_mean_tokens, Pooling::Mean),
            (self.pooling_mode_max_tokens, Pooling::Max),
            (self.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ]
        .into_iter()
        .filter_map(|(on, mode)| on.then_some(mode))
        .collect();
        match modes.as_slice() {
            [one] => Ok(*one),
            [] => Err(HfError::Unsupported("the pooling config enables no pooling mode".into())),
            _ => Err(HfError::Unsupported(format!("several pooling modes at once ({modes:?}, concatenated) are not supported"))),
        }
    }
}

/// What `modules.json` lists besides the transformer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Modules {
    /// Directory of the `Pooling` module's config, relative to the model directory.
    pooling_path: Option<String>,
    normalize: bool,
}

fn read_modules(dir: &Path) -> Result<Option<Modules>, HfError> {
    let path = dir.join("modules.json");
    let Some(entries) = read_optional::<Vec<ModuleEntry>>(&path)? else { return Ok(None) };
    let mut modules = Modules::default();
    for entry in entries {
        // Types are Python class paths such as `sentence_transformers.models.Pooling`.
        let kind = entry.kind.rsplit('.').next().unwrap_or_default();
        match kind {
            "Transformer" if entry.path.is_empty() => {}
            "Transformer" => {
                return Err(HfError::Unsupported(format!(
                    "the transformer lives in '{}/': put its config.json, tokenizer.json and safetensors in the version directory itself",
                    entry.path
                )))
            }
            "Pooling" => {
                // A module path names a sub-directory of the model, never a way out of it.
                let inside = std::path::Path::new(&entry.path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !inside || entry.path.contains(['\\', '\0']) {
                    return Err(HfError::Invalid {
                        path: path.clone(),
                        message: format!("module path '{}' must be a relative path inside the model's directory", entry.path),
                    });
                }
                modules.pooling_path = Some(entry.path)
            }
            "Normalize" => modules.normalize = true,
            other => {
                return Err(HfError::Unsupported(format!(
                    "sentence-transformers module '{other}' ({}) is not supported (Transformer, Pooling and Normalize are)",
                    entry.kind
                )))
            }
        }
    }
    Ok(Some(modules))
}

/// Reads the embedding settings of the model in `dir`. `max_position_embeddings` bounds the
/// sequence length; `parameters` (the model config's) may set `pooling`, `normalize` and
/// `max_sequence_length`, taking precedence over the files.
pub fn read_settings(
    dir: &Path,
    max_position_embeddings: usize,
    parameters: &BTreeMap<String, String>,
) -> Result<EmbeddingSettings, HfError> {
    let modules = read_modules(dir)?;
    let pooling_dir = match &modules {
        Some(Modules { pooling_path: Some(p), .. }) => Some(dir.join(p)),
        Some(_) => None,
        // A plain transformers checkout may still carry the pooling config.
        None => Some(dir.join("1_Pooling")),
    };
    let from_files = match pooling_dir {
        Some(d) => read_optional::<PoolingConfig>(&d.join("config.json"))?.map(|c| c.pooling()).transpose()?,
        None => None,
    };
    let pooling = match parameters.get("pooling") {
        Some(name) => Pooling::from_name(name)?,
        None => from_files.unwrap_or(Pooling::Mean),
    };
    let normalize = match parameters.get("normalize").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(HfError::Unsupported(format!("parameter normalize is '{other}', expected true or false"))),
        None => modules.is_some_and(|m| m.normalize),
    };
    let max_length = match parameters.get("max_sequence_length") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 2)
            .ok_or_else(|| HfError::Unsupported(format!("parameter max_sequence_length is '{text}', expected an integer >= 2")))?,
        None => file_max_length(dir)?.unwrap_or(max_position_embeddings),
    };
    Ok(EmbeddingSettings { pooling, normalize, max_length: max_length.min(max_position_embeddings) })
}

/// sentence-transformers' `max_seq_length`, else the tokenizer's `model_max_length`.
fn file_max_length(dir: &Path) -> Result<Option<usize>, HfError> {
    #[derive(Deserialize)]
    struct SentenceBert {
        max_seq_length: Option<u64>,
    }
    #[derive(Deserialize)]
    struct TokenizerConfig {
        model_max_length: Option<f64>,
    }
    if let Some(n) = read_optional::<SentenceBert>(&dir.join("sentence_bert_config.json"))?.and_then(|c| c.max_seq_length) {
        return Ok(usize::try_from(n).ok());
    }
    let from_tokenizer = read_optional::<TokenizerConfig>(&dir.join("tokenizer_config.json"))?
        .and_then(|c| c.model_max_length)
        .filter(|&n| n >= 2.0 && n <= SANE_MODEL_MAX_LENGTH as f64)
        .map(|n| n as usize);
    Ok(from_tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("quiver-hf-settings-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn write(&self, name: &str, text: &str) {
            let path = self.0.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const MINILM_MODULES: &str = r#"[
      {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
      {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;

    #[test]
    fn sentence_transformers_layout() {
        let dir = TempDir::new("st");
        dir.write("modules.json", MINILM_MODULES);
        dir.write("1_Pooling/config.json", r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#);
        dir.write("sentence_bert_config.json", r#"{"max_seq_length": 256, "do_lower_case": false}"#);
        dir.write("tokenizer_config.json", r#"{"model_max_length": 512}"#);
        let s = read_settings(&dir.0, 512, &BTreeMap::new()).unwrap();
        assert_eq!(s, EmbeddingSettings { pooling: Pooling::Mean, normalize: true, max_length: 256 });
        // Parameters win; the length never exceeds the position table.
        let params = BTreeMap::from([
            ("pooling".to_string(), "cls".to_string()),
            ("normalize".to_string(), "false".to_string()),
            ("max_sequence_length".to_string(), "4096".to_string()),
        ]);
        let s = read_settings(&dir.0, 512, &params).unwrap();
        assert_eq!(s, EmbeddingSettings { pooling: Pooling::Cls, normalize: false, max_length: 512 });
    }

    #[test]
    fn plain_transformers_directory_defaults() {
        let dir = TempDir::new("plain");
        let s = read_settings(&dir.0, 512, &BTreeMap::new()).unwrap();
        assert_eq!(s, EmbeddingSettings { pooling: Pooling::Mean, normalize: false, max_length: 512 });
        dir.write("tokenizer_config.json", r#"{"model_max_length": 1000000000000000019884624838656}"#);
        assert_eq!(read_settings(&dir.0, 512, &BTreeMap::new()).unwrap().max_length, 512);
        dir.write("tokenizer_config.json", r#"{"model_max_length": 128}"#);
        dir.write("1_Pooling/config.json", r#"{"pooling_mode_cls_token": true}"#);
        let s = read_settings(&dir.0, 512, &BTreeMap::new()).unwrap();
        assert_eq!((s.pooling, s.max_length), (Pooling::Cls, 128));
    }

    #[test]
    fn unsupported_heads_are_load_errors() {
        let dir = TempDir::new("bad");
        dir.write(
            "modules.json",
            r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
        );
        let err = read_settings(&dir.0, 512, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("'Dense'"), "{err}");
        dir.write("modules.json", r#"[{"path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]"#);
        assert!(read_settings(&dir.0, 512, &BTreeMap::new()).is_err());
        dir.write("modules.json", MINILM_MODULES);
        dir.write("1_Pooling/config.json", r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#);
        assert!(read_settings(&dir.0, 512, &BTreeMap::new()).unwrap_err().to_string().contains("several"));
        dir.write("1_Pooling/config.json", r#"{"pooling_mode_lasttoken": true}"#);
        assert!(read_settings(&dir.0, 512, &BTreeMap::new()).is_err());
        dir.write("1_Pooling/config.json", "not json");
        assert!(matches!(read_settings(&dir.0, 512, &BTreeMap::new()), Err(HfError::Invalid { .. })));
        dir.write("1_Pooling/config.json", r#"{"pooling_mode_mean_tokens": true}"#);
        for (key, value) in [("pooling", "median"), ("normalize", "yes"), ("max_sequence_length", "1")] {
            let params = BTreeMap::from([(key.to_string(), value.to_string())]);
            assert!(read_settings(&dir.0, 512, &params).is_err(), "{key}={value}");
        }
    }

    #[test]
    fn module_paths_stay_inside_the_model() {
        let dir = TempDir::new("escape");
        for path in ["../1_Pooling", "/etc", "a/../../b", "a\\..\\b", "./x/../.."] {
            let modules = serde_json::json!([{"path": path, "type": "sentence_transformers.models.Pooling"}]).to_string();
            dir.write("modules.json", &modules);
            let err = read_settings(&dir.0, 512, &BTreeMap::new()).unwrap_err();
            assert!(err.to_string().contains("relative path inside"), "{path}: {err}");
        }
    }
}
