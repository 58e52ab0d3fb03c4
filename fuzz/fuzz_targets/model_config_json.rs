//! A model configuration in Triton's JSON form (the model-control load API's `config`
//! parameter): parsed and put through what a model load does with a configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The load API's parameter is a JSON string, so always UTF-8.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = quiver_runtime::fuzzing::model_config(text, true);
    }
});
