//! Generates the protocol types with protox (no system protoc): Triton's `ModelConfig` from
//! `proto/model_config.proto`, keeping its encoded descriptor set so the crate can parse
//! `config.pbtxt` text format and print Triton's JSON form through prost-reflect; and, with the
//! `grpc` feature, the `inference.GRPCInferenceService` messages, server and client from
//! `proto/grpc_service.proto` (the same `inference` package, so one generated module).
use std::{env, error::Error, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let config = protox::compile(["model_config.proto"], ["proto"])?;
    fs::write(out.join("model_config.bin"), config.encode_to_vec())?;
    if env::var_os("CARGO_FEATURE_GRPC").is_some() {
        generate_grpc()
    } else {
        prost_build::Config::new().compile_fds(config)?;
        Ok(())
    }
}

#[cfg(feature = "grpc")]
fn generate_grpc() -> Result<(), Box<dyn Error>> {
    let fds = protox::compile(["grpc_service.proto", "model_config.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(fds)?;
    Ok(())
}

#[cfg(not(feature = "grpc"))]
fn generate_grpc() -> Result<(), Box<dyn Error>> {
    Err("the grpc feature is set but tonic-prost-build is not a build dependency".into())
}
