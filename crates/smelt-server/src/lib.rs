//! Smelt's Triton-compatible server: model repositories and config.pbtxt,
//! loaded model versions, and the KServe v2 HTTP protocol with Triton's
//! extensions.
//!
//! - [`proto`]: Smelt's copies of Triton's schemas (`proto/*.proto`).
//! - [`config`]: config.pbtxt (text format) and Triton's JSON for a ModelConfig.
//! - [`repository`]: repositories on disk, version policies, completing and
//!   checking a configuration against its model.
//! - [`models`]: which versions are ready, loading and unloading.
//! - [`poll`]: `--model-control-mode=poll`, following the repositories on disk.
//! - [`infer`]: one inference, protocol-neutral.
//! - [`scheduler`]: queues, dynamic batching and instances of a model version.
//! - [`warmup`]: model_warmup samples run before a version is READY.
//! - [`http`]: the HTTP endpoints.
//! - [`grpc`]: the gRPC endpoint (Triton's inference service, health).
//! - [`wire`]: protocol pieces both endpoints share (parameters, shapes).
//! - [`metrics`]: the Prometheus endpoint.
//! - [`logging`]: log output and its run-time settings.
//! - [`server`]: startup and graceful shutdown.
//! - [`shm`]: registered system shared-memory regions.

pub mod config;
pub mod datatype;
pub mod error;
pub mod gpu;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod poll;
pub mod proto;
pub mod repository;
pub mod scheduler;
pub mod server;
pub mod shm;
pub mod stats;
pub mod warmup;
pub mod wire;

pub use error::{ErrorKind, ServerError};
pub use models::ModelControlMode;
pub use server::{init_logging, run, ServerOptions};
