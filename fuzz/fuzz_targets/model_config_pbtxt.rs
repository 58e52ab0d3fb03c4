//! A `config.pbtxt`: parsed and put through what a model load does with a configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The repository reads config.pbtxt as UTF-8 text; other bytes are refused before parsing.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = quiver_runtime::fuzzing::model_config(text, false);
    }
});
