//! Generates the registrar.v1 gRPC code and the descriptor set served by
//! reflection. protox compiles the protos in-process, so no system protoc is
//! needed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");

    let file_descriptors = protox::compile(["registrar/v1/registrar.proto"], ["proto"])?;
    std::fs::write(
        out_dir.join("registrar_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
