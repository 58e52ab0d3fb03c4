//! A V2 (Open Inference Protocol) REST inference body in JSON: decoded to the neutral request
//! and checked against the fixed models.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_runtime::fuzzing::v2_infer(bytes::Bytes::copy_from_slice(data), None, None);
});
