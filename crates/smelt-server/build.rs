//! Compiles Smelt's Triton schemas (`proto/model_config.proto`,
//! `proto/grpc_service.proto`) into Rust types with prost, and writes their file
//! descriptor set next to them so config.pbtxt (text format) and Triton's JSON can
//! be read and written by reflection. protox parses the schemas in pure Rust: no
//! system `protoc`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    let descriptors = protox::compile(["grpc_service.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("inference_descriptor.bin"), descriptors.encode_to_vec())?;
    prost_build::Config::new()
        // Tensor payloads decode as slices of the request buffer rather than copies.
        .bytes([".inference.ModelInferRequest.raw_input_contents"])
        .compile_fds(descriptors)?;
    Ok(())
}
