use crate::DType;

/// Errors raised by the IR: tensor construction, graph validation and shape inference.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("tensor holds {found}, not {expected}")]
    DTypeMismatch { expected: DType, found: DType },
    #[error("shape {shape:?} needs a different number of elements than the {count} given")]
    ElementCount { shape: Vec<usize>, count: usize },
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {found}")]
    ByteCount { dtype: DType, shape: Vec<usize>, expected: usize, found: usize },
    /// Shape inference or validation failed at a node.
    #[error("node '{node}' ({op}): {message}")]
    Node { node: String, op: String, message: String },
    #[error("graph: {0}")]
    Graph(String),
}
