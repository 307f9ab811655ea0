//! ONNX import: protobuf model files → Smelt's typed graph IR.
//!
//! - [`load_model`] / [`load_model_from_bytes`] decode a model, read its tensors
//!   (inline or from external data files next to it), and lower every node into a
//!   [`smelt_ir::Op`] in canonical form, whatever opset (7 to 28) it was written for.
//!   Shape inference is left to the caller (`Graph::infer_facts`).
//! - [`summarize`] outlines a model without importing it, including the nodes
//!   Smelt cannot run.
//! - [`read_tensor_proto`] reads a standalone serialized tensor (the ONNX test
//!   suite's `input_0.pb` files).
//!
//! Adding an op to the importer (after its definition in `smelt_ir::op`):
//! 1. list its ONNX name and first opset in [`SUPPORTED_OPS`];
//! 2. write its lowering in the `ops` module of its family, reading every
//!    attribute each opset defines (unread attributes are refused) and turning
//!    attributes that later opsets made inputs into constant inputs;
//! 3. give it a minimal node in `every_supported_op_imports` and, when old opsets
//!    differ, a test that old and new forms import alike (`ops/canonical_tests.rs`).

mod attrs;
mod dtype;
mod error;
mod external;
mod import;
mod ops;
pub mod proto;
mod summary;
mod tensor;
#[cfg(test)]
mod testing;

pub use error::{OnnxError, UnsupportedNode};
pub use import::{load_model, load_model_from_bytes, Model, MAX_OPSET, MIN_OPSET};
pub use ops::SUPPORTED_OPS;
pub use summary::{summarize, IoSummary, ModelSummary, OpCount};
pub use tensor::read_tensor_proto;
