//! Smelt's runtime: the [`Backend`] seam, compiled [`Plan`]s, and [`Session`], which
//! turns a model file into something callers run with named tensors.

pub mod analysis;
mod backend;
pub mod cpu;
mod error;
pub mod gpu;
mod session;

pub use backend::{Backend, MemoryReport, Plan};
pub use cpu::CpuBackend;
pub use error::{Result, RuntimeError};
pub use gpu::GpuBackend;
pub use session::{prepare_graph, Device, IoInfo, Session, SessionOptions};
