//! The standard gRPC health service (`grpc.health.v1.Health`), for load
//! balancers and orchestrators: the server, or the inference service, is
//! SERVING while it is ready for inference and NOT_SERVING otherwise (starting
//! up, or shutting down).

use super::GrpcState;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Types and server trait generated from `proto/health.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
}

use proto::health_check_response::ServingStatus;
use proto::health_server::Health;
use proto::{HealthCheckRequest, HealthCheckResponse};

/// The services a health request may name ("" is the server as a whole).
const KNOWN_SERVICES: [&str; 3] = ["", "inference.GRPCInferenceService", "grpc.health.v1.Health"];

/// How often a Watch looks for a change of status.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

pub struct HealthService {
    state: Arc<GrpcState>,
}

impl HealthService {
    pub fn new(state: Arc<GrpcState>) -> HealthService {
        HealthService { state }
    }
}

/// The status of `service`; `None` for a service this server does not have.
fn serving_status(state: &GrpcState, service: &str) -> Option<ServingStatus> {
    if !KNOWN_SERVICES.contains(&service) {
        return None;
    }
    Some(if state.is_ready() { ServingStatus::Serving } else { ServingStatus::NotServing })
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        let status = serving_status(&self.state, service)
            .ok_or_else(|| Status::not_found(format!("unknown service '{service}'")))?;
        Ok(Response::new(answer(status)))
    }

    type WatchStream = WatchStream;

    /// Sends the current status, then each change, until the client leaves or
    /// the server shuts down.
    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut stop = state.stop.clone();
            let mut last = None;
            loop {
                let now = serving_status(&state, &service).unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(now) {
                    if tx.send(Ok(answer(now))).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_PERIOD) => {}
                    changed = stop.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
