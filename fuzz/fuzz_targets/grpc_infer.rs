//! A gRPC `ModelInferRequest` message's protobuf bytes: decoded (prost, as tonic does),
//! converted to the neutral request and checked against the fixed models.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_runtime::fuzzing::grpc_infer(data);
});
