//! The importer's error type.

use smelt_ir::IrError;
use std::fmt;
use std::path::PathBuf;

/// A node Smelt cannot run, as reported when a model is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    /// The operator's domain; `ai.onnx` for the default domain.
    pub domain: String,
    pub op_type: String,
    /// The node's name, or `{op_type}_{index}` when the model gives none.
    pub node: String,
}

impl fmt::Display for UnsupportedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{} (node '{}')", self.domain, self.op_type, self.node)
    }
}

fn list_nodes(nodes: &[UnsupportedNode]) -> String {
    nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Everything that can go wrong while reading an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the file is not a valid ONNX model: protobuf decoding failed ({0})")]
    Decode(#[from] prost::DecodeError),

    #[error("the file is not a valid ONNX tensor: protobuf decoding failed ({0})")]
    DecodeTensor(#[source] prost::DecodeError),

    #[error("the model has no graph")]
    MissingGraph,

    #[error("the file is empty: it is not an ONNX model")]
    EmptyFile,

    #[error("the model imports no opset for the default ONNX domain; Smelt supports opsets {min} to {max}")]
    NoDefaultOpset { min: i64, max: i64 },

    #[error("the model uses ONNX opset {found}; Smelt supports opsets {min} to {max}")]
    UnsupportedOpset { found: i64, min: i64, max: i64 },

    #[error("the model uses {} node(s) Smelt cannot run: {}", .0.len(), list_nodes(.0))]
    UnsupportedOps(Vec<UnsupportedNode>),

    #[error("node '{node}' ({op}): attribute '{attribute}': {message}")]
    BadAttribute { node: String, op: String, attribute: String, message: String },

    #[error("node '{node}' ({op}): {message}")]
    BadNode { node: String, op: String, message: String },

    #[error("tensor '{name}': {message}")]
    BadTensor { name: String, message: String },

    #[error("tensor '{name}': external data: {message}")]
    ExternalData { name: String, message: String },

    #[error("value '{name}': {message}")]
    BadValue { name: String, message: String },

    #[error("invalid graph: {0}")]
    Graph(#[from] IrError),
}

impl OnnxError {
    pub(crate) fn tensor(name: &str, message: impl Into<String>) -> OnnxError {
        OnnxError::BadTensor { name: name.to_string(), message: message.into() }
    }

    pub(crate) fn external(name: &str, message: impl Into<String>) -> OnnxError {
        OnnxError::ExternalData { name: name.to_string(), message: message.into() }
    }

    pub(crate) fn value(name: &str, message: impl Into<String>) -> OnnxError {
        OnnxError::BadValue { name: name.to_string(), message: message.into() }
    }
}
