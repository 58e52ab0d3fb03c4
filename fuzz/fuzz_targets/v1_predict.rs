//! A KServe V1 `:predict` body (`instances` or `inputs`), decoded for each fixed model and
//! checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_runtime::fuzzing::v1_predict(data);
});
