//! Errors of the GPU layer. Each variant says what failed and, where it can, on
//! which adapter, kernel or tensor.

/// Something the GPU layer could not do.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter matched the request (none at all, or not the one asked for).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU adapter '{adapter}' refused to open a device: {message}")]
    RequestDevice { adapter: String, message: String },
    /// The device was lost (driver reset, removal, out of memory); the model must be
    /// loaded again.
    #[error("the GPU device '{adapter}' was lost ({reason}); load the model again to use a new device")]
    DeviceLost { adapter: String, reason: String },
    /// wgpu reported validation or out-of-memory errors while recording or running.
    #[error("the GPU reported errors: {0}")]
    Device(String),
    /// A kernel cannot run these inputs (dtype, rank, attribute).
    #[error("GPU kernel {kernel}: {message}")]
    Kernel { kernel: &'static str, message: String },
    /// A buffer larger than the device allows.
    #[error("{what} needs {bytes} bytes, more than this GPU allows in one buffer ({limit} bytes)")]
    TooLarge { what: String, bytes: u64, limit: u64 },
    /// A kernel's check on the data failed (an index out of range, an integer
    /// division by zero): the inputs are wrong, not the GPU.
    #[error("{op}: {message}")]
    InvalidData { op: &'static str, message: String },
    #[error("reading back from the GPU: {0}")]
    Readback(String),
    #[error("GPU configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, GpuError>;

impl GpuError {
    pub fn kernel(kernel: &'static str, message: impl Into<String>) -> GpuError {
        GpuError::Kernel { kernel, message: message.into() }
    }
}
