//! Generates the `ModelConfig` types from `proto/model_config.proto` with protox (no system
//! protoc) and keeps the encoded descriptor set so the crate can parse `config.pbtxt` text
//! format and print Triton's JSON form through prost-reflect.
use std::{env, error::Error, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    let fds = protox::compile(["model_config.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("model_config.bin"), fds.encode_to_vec())?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
