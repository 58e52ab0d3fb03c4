//! What fetched content is, and how the runtime serves it: one ONNX file, a Triton model
//! directory (`config.pbtxt` and/or integer version directories, as the runtime's repository
//! reader expects), or a Hugging Face directory.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::StorageError;

/// How the runtime can serve fetched content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLayout {
    /// One ONNX file (placed as `<model>/1/model.onnx`).
    OnnxFile(PathBuf),
    /// A directory in Triton layout for one model: `config.pbtxt` and/or integer version
    /// directories, each holding the model file.
    TritonModel(PathBuf),
    /// A Hugging Face directory: `config.json`, `tokenizer.json`, `model.safetensors`.
    HuggingFace(PathBuf),
}

/// The families `inspect` knows: the ONNX ones are served through their ONNX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Onnx,
    Triton,
    HuggingFace,
    /// sklearn, xgboost, lightgbm: (name, native file extensions, converter).
    Converted(&'static str, &'static [&'static str], &'static str),
}

const HF_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

fn parse_format(format: &str) -> Result<Format, StorageError> {
    Ok(match format.to_ascii_lowercase().as_str() {
        "onnx" => Format::Onnx,
        "triton" => Format::Triton,
        "huggingface" | "hf" => Format::HuggingFace,
        "sklearn" => Format::Converted("sklearn", &["joblib", "pkl", "pickle"], "skl2onnx (`skl2onnx.to_onnx`)"),
        "xgboost" => Format::Converted("xgboost", &["bst", "json", "ubj", "model"], "onnxmltools (`onnxmltools.convert_xgboost`)"),
        "lightgbm" => Format::Converted("lightgbm", &["txt", "bst", "model"], "onnxmltools (`onnxmltools.convert_lightgbm`)"),
        _ => return Err(StorageError::UnsupportedFormat { format: format.to_string() }),
    })
}

/// Whether a file without an extension (a cache entry is named by its digest) starts like an
/// ONNX `ModelProto`: field 1 (`ir_version`, a varint), which exporters write first.
fn looks_like_onnx(path: &Path) -> bool {
    use std::io::Read;
    let mut first = [0u8; 1];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut first)).is_ok() && first[0] == 0x08
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The regular files directly in `dir`, sorted.
fn files_in(dir: &Path, format: &str) -> Result<Vec<PathBuf>, StorageError> {
    let unreadable =
        |e: std::io::Error| StorageError::NoModel { path: dir.to_path_buf(), format: format.to_string(), reason: e.to_string() };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Subdirectories of `dir` named as Triton versions, ascending.
fn version_dirs(dir: &Path, format: &str) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let unreadable =
        |e: std::io::Error| StorageError::NoModel { path: dir.to_path_buf(), format: format.to_string(), reason: e.to_string() };
    let mut versions = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if let Some(v) = entry.file_name().to_str().and_then(quiver_runtime::repository::version_number) {
            if entry.path().is_dir() {
                versions.push((v, entry.path()));
            }
        }
    }
    versions.sort();
    Ok(versions)
}

fn missing_hf_files(dir: &Path) -> Vec<&'static str> {
    HF_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect()
}

/// What `path` (a fetched file or directory) is, checked against `format` (`onnx`,
/// `huggingface`, `triton`, `sklearn`, `xgboost`, `lightgbm`). sklearn, xgboost and lightgbm
/// models are served as their ONNX conversion: a native model file alone is an error naming the
/// converter.
pub fn inspect(path: &Path, format: &str) -> Result<ModelLayout, StorageError> {
    let kind = parse_format(format)?;
    let format = format.to_ascii_lowercase();
    let mismatch = |reason: String| StorageError::FormatMismatch { path: path.to_path_buf(), format: format.clone(), reason };
    let no_model = |reason: String| StorageError::NoModel { path: path.to_path_buf(), format: format.clone(), reason };
    let conversion = |name: &str, found: &Path, converter: &str| StorageError::ConversionNeeded {
        path: path.to_path_buf(),
        format: name.to_string(),
        found: found.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        converter: converter.to_string(),
    };
    if path.is_file() {
        return match kind {
            Format::HuggingFace if has_extension(path, "onnx") => Err(mismatch(
                "an .onnx file was given; a Hugging Face model is a directory with config.json, tokenizer.json and model.safetensors"
                    .into(),
            )),
            Format::HuggingFace | Format::Triton => Err(mismatch(format!("a single file was given; {format} needs a directory"))),
            _ if has_extension(path, "onnx") || (path.extension().is_none() && looks_like_onnx(path)) => {
                Ok(ModelLayout::OnnxFile(path.to_path_buf()))
            }
            Format::Converted(name, native, converter) if native.iter().any(|ext| has_extension(path, ext)) => {
                Err(conversion(name, path, converter))
            }
            _ => Err(no_model("the file is not an .onnx model".into())),
        };
    }
    if !path.is_dir() {
        return Err(no_model("no such file or directory".into()));
    }
    let versions = version_dirs(path, &format)?;
    if path.join("config.pbtxt").is_file() || !versions.is_empty() || kind == Format::Triton {
        return inspect_triton(path, &format, kind, &versions);
    }
    let files = files_in(path, &format)?;
    let onnx: Vec<&PathBuf> = files.iter().filter(|f| has_extension(f, "onnx")).collect();
    if kind == Format::HuggingFace {
        let missing = missing_hf_files(path);
        if missing.is_empty() {
            return Ok(ModelLayout::HuggingFace(path.to_path_buf()));
        }
        if !onnx.is_empty() {
            return Err(mismatch("the directory holds an ONNX model, not config.json + tokenizer.json + model.safetensors".into()));
        }
        return Err(no_model(format!("missing {}", missing.join(", "))));
    }
    if path.join("model.onnx").is_file() {
        return Ok(ModelLayout::OnnxFile(path.join("model.onnx")));
    }
    match onnx.as_slice() {
        [one] => return Ok(ModelLayout::OnnxFile(one.to_path_buf())),
        [] => {}
        many => {
            let names: Vec<String> = many.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
            return Err(no_model(format!("several .onnx files ({}) and none is model.onnx: say which one in the URI", names.join(", "))));
        }
    }
    if let Format::Converted(name, native, converter) = kind {
        if let Some(found) = files.iter().find(|f| native.iter().any(|ext| has_extension(f, ext))) {
            return Err(conversion(name, found, converter));
        }
    }
    if missing_hf_files(path).is_empty() {
        return Err(mismatch(
            "the directory holds a Hugging Face model (config.json, tokenizer.json, model.safetensors); use format huggingface".into(),
        ));
    }
    Err(no_model("no .onnx file in the directory".into()))
}

/// A Triton model directory: every version the runtime could pick must hold a model file of
/// the format (the runtime loads `<version>/model.onnx` or `<version>/model.safetensors` unless
/// `config.pbtxt` names another `default_model_filename`).
fn inspect_triton(path: &Path, format: &str, kind: Format, versions: &[(u64, PathBuf)]) -> Result<ModelLayout, StorageError> {
    let no_model = |reason: String| StorageError::NoModel { path: path.to_path_buf(), format: format.to_string(), reason };
    let Some((latest, dir)) = versions.last() else {
        return Err(no_model("a Triton model directory needs an integer version directory (<model>/1/) holding the model file".into()));
    };
    let custom_name = path.join("config.pbtxt").is_file()
        && fs::read_to_string(path.join("config.pbtxt")).is_ok_and(|text| text.contains("default_model_filename"));
    let files = files_in(dir, format)?;
    let has = |ext: &str| files.iter().any(|f| has_extension(f, ext));
    let ok = match kind {
        Format::HuggingFace => missing_hf_files(dir).is_empty() || (custom_name && has("safetensors")),
        Format::Onnx | Format::Converted(..) => dir.join("model.onnx").is_file() || (custom_name && has("onnx")),
        Format::Triton => {
            dir.join("model.onnx").is_file() || missing_hf_files(dir).is_empty() || (custom_name && (has("onnx") || has("safetensors")))
        }
    };
    if ok {
        return Ok(ModelLayout::TritonModel(path.to_path_buf()));
    }
    let wanted = match kind {
        Format::HuggingFace => "config.json, tokenizer.json and model.safetensors",
        Format::Triton => "model.onnx, or config.json + tokenizer.json + model.safetensors",
        _ => "model.onnx",
    };
    if let Format::Converted(name, native, converter) = kind {
        if let Some(found) = files.iter().find(|f| native.iter().any(|ext| has_extension(f, ext))) {
            return Err(StorageError::ConversionNeeded {
                path: dir.clone(),
                format: name.to_string(),
                found: found.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                converter: converter.to_string(),
            });
        }
    }
    Err(no_model(format!("version directory {latest}/ has no {wanted}")))
}
