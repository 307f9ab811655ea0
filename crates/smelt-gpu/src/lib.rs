//! Smelt's GPU layer, through wgpu: opening adapters ([`GpuContext`]), the buffer
//! pool, the pipeline cache, and the WGSL kernels with their Rust launchers.
//!
//! The graph-level backend (placement, per-shape plans, transfers) lives in
//! `smelt-runtime`'s `gpu` module; this crate knows ops and tensors, not graphs.
//! How to add a kernel: RECIPE.md.

pub mod adapters;
mod config;
mod context;
mod error;
pub mod exec;
pub mod kernel;
pub mod ops;
pub mod pipelines;
pub mod pool;

pub use adapters::{list_adapters, AdapterSummary};
pub use config::{GpuConfig, TransferMode};
pub use context::GpuContext;
pub use error::{GpuError, Result};
pub use kernel::{GpuKernel, GpuTensor, InputInfo, KernelFailure, KernelRequest, NodeIo, Program, Recorder};
pub use pool::PoolStats;
pub use wgpu;
