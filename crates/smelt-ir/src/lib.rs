//! Smelt's intermediate representation: element types, symbolic shapes, host
//! tensors, the typed op enum, the graph, shape inference, and the op semantics
//! on concrete values that more than one backend computes.
//!
//! The IR knows nothing of devices or file formats: importers build it, passes
//! rewrite it, backends compile it.

pub mod cost;
mod dtype;
mod error;
mod graph;
pub mod infer;
mod op;
pub mod semantics;
mod shape;
mod tensor;

pub use dtype::{DType, Element};
pub use error::IrError;
pub use graph::{Fact, Graph, Node, Value, ValueId};
pub use op::*;
pub use shape::{Dim, Shape};
pub use tensor::{num_elements, strides_of, write_strides, AlignedBytes, Tensor, TensorView, TensorViewMut};

/// Re-exported so `dispatch_dtype!` works in dependent crates without naming `half`.
pub use half;
