//! Smelt's runtime: the [`Backend`] seam, compiled [`Plan`]s, and [`Session`], which
//! turns a model file into something callers run with named tensors.

pub mod analysis;
mod backend;
pub mod cpu;
pub mod gpu;
mod error;
mod session;

pub use backend::{Backend, MemoryReport, Plan};
pub use cpu::CpuBackend;
pub use gpu::GpuBackend;
pub use error::{Result, RuntimeError};
pub use session::{prepare_graph, Device, IoInfo, Session, SessionOptions};
