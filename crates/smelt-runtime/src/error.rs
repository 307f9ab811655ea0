use smelt_ir::{DType, IrError};

/// Errors from loading, compiling and running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Onnx(#[from] smelt_onnx::OnnxError),
    #[error("model graph: {0}")]
    Ir(#[from] IrError),
    #[error("optimising the graph: {0}")]
    Passes(String),
    /// The caller's inputs do not fit the model.
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    #[error("the model has no input named '{name}' (its inputs: {expected})")]
    UnknownInput { name: String, expected: String },
    #[error("missing input '{name}' ({dtype}, shape {shape})")]
    MissingInput { name: String, dtype: DType, shape: String },
    /// A kernel failed at a node.
    #[error("node '{node}' ({op}): {message}")]
    Node { node: String, op: &'static str, message: String },
    #[error("device '{0}' is not available (this build has: cpu, gpu, gpu:N)")]
    UnknownDevice(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
