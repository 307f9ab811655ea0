//! Compiles Smelt's ONNX schema (`proto/onnx.proto`) into Rust types with prost.
//! protox parses the schema in pure Rust, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        // Tensor payloads decode as slices of the file buffer rather than copies.
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_fds(descriptors)?;
    Ok(())
}
