//! The prost types of Triton's schemas and the descriptor pool behind them.

use prost_reflect::DescriptorPool;
use std::sync::OnceLock;

/// Messages of package `inference` (model_config.proto and grpc_service.proto).
#[allow(clippy::all, missing_docs)]
pub mod inference {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin"));

/// The descriptors of both schemas, for text-format and JSON conversion by reflection.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("the build script wrote a valid descriptor set"))
}
