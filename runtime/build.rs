//! Generates the `inference.GRPCInferenceService` server and client from
//! `proto/grpc_service.proto` with protox (no system protoc). `ModelConfig` is not generated
//! again: it refers to the type model-formats generates from the same package.
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    println!("cargo:rerun-if-changed=../model-formats/proto/model_config.proto");
    let fds = protox::compile(["grpc_service.proto"], ["proto", "../model-formats/proto"])?;
    let mut builder = tonic_prost_build::configure()
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents");
    // Every type of model_config.proto is model-formats' own; refer to it instead of
    // generating a second copy.
    for file in fds.file.iter().filter(|f| f.name() == "model_config.proto") {
        let names = file.message_type.iter().map(|m| m.name()).chain(file.enum_type.iter().map(|e| e.name()));
        for name in names {
            builder = builder.extern_path(format!(".inference.{name}"), format!("::quiver_model_formats::proto::{name}"));
        }
    }
    builder.compile_fds(fds)?;
    Ok(())
}
