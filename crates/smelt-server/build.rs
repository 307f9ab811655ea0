//! Compiles Smelt's Triton schemas (`proto/model_config.proto`,
//! `proto/grpc_service.proto`) and the standard gRPC health schema
//! (`proto/health.proto`) into Rust types with prost, plus the tonic server
//! traits of their services (`inference.GRPCInferenceService`,
//! `grpc.health.v1.Health`). The file descriptor set is written next to them so
//! config.pbtxt (text format) and Triton's JSON can be read and written by
//! reflection. protox parses the schemas in pure Rust: no system `protoc`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    println!("cargo:rerun-if-changed=proto/health.proto");
    let descriptors = protox::compile(["grpc_service.proto", "health.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("inference_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        // Smelt serves these services; it is never their client.
        .build_client(false)
        .build_server(true)
        // Tensor payloads decode as slices of the request buffer rather than copies.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .compile_fds(descriptors)?;
    Ok(())
}
