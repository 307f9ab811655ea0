use smelt_ir::{DType, IrError};

/// Errors from CPU kernels. The executor adds the node name.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The op has no CPU kernel for this element type.
    #[error("{op} has no CPU kernel for {dtype}")]
    UnsupportedDType { op: &'static str, dtype: DType },
    /// Inputs the kernel cannot work with (out-of-range index, bad equation, ...).
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
    #[error(transparent)]
    Ir(#[from] IrError),
}

impl CpuError {
    pub fn invalid(op: &'static str, message: impl Into<String>) -> CpuError {
        CpuError::Invalid { op, message: message.into() }
    }
}

pub type Result<T> = std::result::Result<T, CpuError>;
