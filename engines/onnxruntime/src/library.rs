//! Finding and loading the ONNX Runtime shared library, once per process, without panicking.
//!
//! Lookup, first match wins:
//! 1. the path given to [`crate::OrtBackend::new`] (`quiver serve --onnxruntime-library PATH`);
//! 2. `ORT_DYLIB_PATH`;
//! 3. `libonnxruntime.so` / `libonnxruntime.so.1` through the dynamic loader (`LD_LIBRARY_PATH`,
//!    the ldconfig cache);
//! 4. the `onnxruntime` wheel of the active virtual environment (`$VIRTUAL_ENV`), then of the user
//!    site-packages (`~/.local/lib/python3*/site-packages`): `onnxruntime/capi/libonnxruntime.so.*`.
//!
//! A path named in 1 or 2 that fails to load is final (the user asked for that file): the engine
//! is then unavailable with the loader's reason, and nothing else is tried. Nothing is downloaded.

use std::{
    env,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use ort::environment::Environment;

/// The loaded library: its environment and the file it came from, or why there is none.
pub(crate) type Loaded = Result<(Environment, PathBuf), String>;

static LIBRARY: OnceLock<Loaded> = OnceLock::new();

/// Loads the library (the first call decides, for the whole process: ONNX Runtime's API table
/// is global) and returns it.
pub(crate) fn load(explicit: Option<&Path>) -> &'static Loaded {
    LIBRARY.get_or_init(|| {
        // ort panics rather than erring on a few malformed libraries (a null API table, say);
        // a bad file must cost the engine, never the process.
        std::panic::catch_unwind(|| init(explicit)).unwrap_or_else(|_| Err("loading the library panicked".to_string()))
    })
}

fn init(explicit: Option<&Path>) -> Loaded {
    let named = explicit.map(Path::to_path_buf).or_else(|| env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(PathBuf::from));
    let candidates = match named {
        Some(path) => vec![path],
        None => discover(),
    };
    let mut errors = Vec::new();
    for path in &candidates {
        match ort::init_from(path) {
            Ok(builder) => {
                let environment = builder.with_name("quiver").build().map_err(|e| format!("{}: {e}", path.display()))?;
                return Ok((environment, path.clone()));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if candidates.len() == 1 {
        return Err(errors.pop().unwrap_or_default());
    }
    Err(format!(
        "no ONNX Runtime library found (install it with `pip install onnxruntime` and set ORT_DYLIB_PATH to its \
         onnxruntime/capi/libonnxruntime.so.*, or pass --onnxruntime-library); tried: {}",
        errors.join("; ")
    ))
}

/// The places to look when no path is named, in order (see the module documentation).
fn discover() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = vec!["libonnxruntime.so".into(), "libonnxruntime.so.1".into()];
    let mut prefixes = Vec::new();
    if let Some(venv) = env::var_os("VIRTUAL_ENV") {
        prefixes.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = env::var_os("HOME") {
        prefixes.push(PathBuf::from(home).join(".local/lib"));
    }
    for lib in prefixes {
        let Ok(entries) = std::fs::read_dir(&lib) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python3")))
            .collect();
        pythons.sort();
        for python in pythons.iter().rev() {
            let capi = python.join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else { continue };
            let mut libraries: Vec<PathBuf> = files
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
                .collect();
            libraries.sort();
            found.extend(libraries.into_iter().rev());
        }
    }
    found
}
