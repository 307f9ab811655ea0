//! The gRPC endpoint: Triton's `inference.GRPCInferenceService` (KServe v2 with
//! Triton's extensions) and the standard `grpc.health.v1.Health`, served by
//! tonic on `--grpc-address:--grpc-port` beside the HTTP endpoint.
//!
//! - [`service`]: every RPC of the inference service.
//! - [`infer`]: inference requests and responses (raw and typed tensors, shared
//!   memory, streaming answers).
//! - [`contents`]: typed tensor contents.
//! - [`health`]: the health service.
//! - [`status`]: errors as gRPC status codes.
//!
//! Messages may be up to 2 GiB each way (tonic's default is 4 MiB), and gzip or
//! deflate compressed.

pub mod contents;
pub mod health;
pub mod infer;
pub mod service;
pub mod status;

use crate::models::ModelRegistry;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::shm::SharedMemoryRegistry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

/// The largest message accepted or sent: 2 GiB, as Triton allows.
pub const MAX_MESSAGE_SIZE: usize = 1 << 31;

/// What every RPC shares.
pub struct GrpcState {
    pub registry: Arc<ModelRegistry>,
    /// The server's registered shared-memory regions (shared with HTTP).
    pub shm: Arc<SharedMemoryRegistry>,
    /// Set once startup loading is over; cleared when shutdown begins.
    pub ready: AtomicBool,
    /// Turns true when the server shuts down: open streams stop taking requests.
    pub stop: watch::Receiver<bool>,
}

impl GrpcState {
    /// Ready for inference: started up, not shutting down, no model loading.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.registry.any_loading()
    }
}

/// The running gRPC server.
pub struct GrpcServer {
    pub address: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Binds `address:port` and starts serving; the server stops taking new
/// connections when `state.stop` turns true, and lets requests in flight finish.
pub async fn start(address: &str, port: u16, state: Arc<GrpcState>) -> Result<GrpcServer, String> {
    let address: SocketAddr = format!("{address}:{port}")
        .parse()
        .map_err(|e| format!("bad --grpc-address/--grpc-port '{address}:{port}': {e}"))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen for gRPC on {address}: {e}"))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let inference = GrpcInferenceServiceServer::new(service::InferenceService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Deflate);
    let health = health::proto::health_server::HealthServer::new(health::HealthService::new(state.clone()));
    let mut stop = state.stop.clone();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            // Large tensors: let HTTP/2 flow control grow its windows with the
            // connection's bandwidth rather than stall at 64 KiB.
            .http2_adaptive_window(Some(true))
            .add_service(inference)
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            }),
    );
    tracing::info!("gRPC endpoint listening on {address}");
    Ok(GrpcServer { address, task })
}

impl GrpcServer {
    /// Waits for the server to finish its requests in flight after the stop
    /// signal, until `deadline`.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        match tokio::time::timeout_at(deadline, self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("gRPC endpoint closed"),
            Ok(Ok(Err(e))) => tracing::error!("gRPC server failed: {e}"),
            Ok(Err(e)) => tracing::error!("gRPC server task failed: {e}"),
            Err(_) => tracing::warn!("--exit-timeout-secs reached with gRPC requests still in flight"),
        }
    }
}
