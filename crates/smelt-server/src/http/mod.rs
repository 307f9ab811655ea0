//! KServe v2 over HTTP with Triton's extensions: health, metadata, inference (JSON
//! and binary tensors, gzip/deflate bodies), model configuration, repository
//! index/load/unload, statistics, system shared memory and logging settings.
//!
//! - [`body`]: body size limit, compression, JSON helpers.
//! - [`codec`]: tensor data in JSON and binary form.
//! - [`infer`]: the inference endpoint.
//! - [`repository`], [`shared_memory`], [`logging`]: the control extensions.
//!
//! Errors are `{"error": "..."}` with Triton's status for their kind (see
//! [`ErrorKind::http_status`]).

pub mod body;
pub mod codec;
pub mod infer;
pub mod logging;
pub mod repository;
pub mod shared_memory;

use crate::config;
use crate::datatype::WireType;
use crate::error::{ErrorKind, Result, ServerError};
use crate::infer::ServedVersion;
use crate::models::ModelRegistry;
use crate::shm::SharedMemoryRegistry;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The Triton protocol extensions this server implements, as server metadata
/// lists them.
pub const EXTENSIONS: [&str; 7] = [
    "model_repository",
    "model_configuration",
    "system_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "logging",
];

/// What every handler shares.
pub struct HttpState {
    pub registry: Arc<ModelRegistry>,
    /// The server's registered shared-memory regions (shared with gRPC).
    pub shm: Arc<SharedMemoryRegistry>,
    /// `--http-max-input-size`: the largest request body accepted, in bytes,
    /// before and after decompression.
    pub max_input_size: usize,
    /// Set once startup loading is over; cleared when shutdown begins.
    pub ready: AtomicBool,
}

type Shared = State<Arc<HttpState>>;

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, &json!({ "error": self.message }))
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn empty_ok() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], "").into_response()
}

/// The router for every endpoint.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/v2/health/live", get(health_live))
        .route("/v2/health/ready", get(health_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_statistics))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_version))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(model_config_version))
        .route("/v2/models/{model}/stats", get(model_statistics))
        .route("/v2/models/{model}/versions/{version}/stats", get(model_statistics_version))
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer::infer_version))
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route("/v2/repository/models/{model}/unload", post(repository::unload))
        .route("/v2/systemsharedmemory/status", get(shared_memory::status_all))
        .route("/v2/systemsharedmemory/region/{name}/status", get(shared_memory::status_one))
        .route("/v2/systemsharedmemory/region/{name}/register", post(shared_memory::register))
        .route("/v2/systemsharedmemory/unregister", post(shared_memory::unregister_all))
        .route("/v2/systemsharedmemory/region/{name}/unregister", post(shared_memory::unregister_one))
        .route("/v2/logging", get(logging::get_settings).post(logging::update_settings))
        .fallback(|| async { ServerError::not_found("Not Found") })
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Logs each request at verbose level 1, as Triton does.
async fn log_request(request: Request, next: Next) -> Response {
    tracing::debug!("HTTP request: {} {}", request.method(), request.uri().path());
    next.run(request).await
}

// ---- Health and metadata ------------------------------------------------------

async fn health_live() -> Response {
    empty_ok()
}

async fn health_ready(State(state): Shared) -> Response {
    if state.ready.load(Ordering::SeqCst) && !state.registry.any_loading() {
        empty_ok()
    } else {
        ServerError::invalid("Server not ready").into_response()
    }
}

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "name": "smelt", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }),
    )
}

fn metadata_json(state: &HttpState, served: &ServedVersion) -> Value {
    let tensors = |list: Vec<(String, WireType, Vec<i64>)>| -> Vec<Value> {
        list.into_iter()
            .map(|(name, wire, shape)| json!({ "name": name, "datatype": wire.name(), "shape": shape }))
            .collect()
    };
    let versions: Vec<String> = state.registry.ready_versions(&served.model).iter().map(i64::to_string).collect();
    let platform = if served.config.platform.is_empty() { &served.config.backend } else { &served.config.platform };
    json!({
        "name": served.model,
        "versions": versions,
        "platform": platform,
        "inputs": tensors(served.input_metadata()),
        "outputs": tensors(served.output_metadata()),
    })
}

async fn model_metadata(State(state): Shared, Path(model): Path<String>) -> Result<Response> {
    let served = state.registry.ready_version(&model, "")?;
    Ok(json_response(StatusCode::OK, &metadata_json(&state, &served)))
}

async fn model_metadata_version(
    State(state): Shared,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    let served = state.registry.ready_version(&model, &version)?;
    Ok(json_response(StatusCode::OK, &metadata_json(&state, &served)))
}

/// Ready: 200 with an empty body. Not ready (for any reason): 400, with
/// Triton's body and its text/plain content type.
fn readiness(state: &HttpState, model: &str, version: &str) -> Response {
    match state.registry.ready_version(model, version) {
        Ok(_) => empty_ok(),
        Err(_) => {
            let body = serde_json::to_vec(&json!({ "error": "Model version not ready" })).unwrap_or_default();
            let status = StatusCode::from_u16(ErrorKind::InvalidArg.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))], body).into_response()
        }
    }
}

async fn model_ready(State(state): Shared, Path(model): Path<String>) -> Response {
    readiness(&state, &model, "")
}

async fn model_ready_version(State(state): Shared, Path((model, version)): Path<(String, String)>) -> Response {
    readiness(&state, &model, &version)
}

async fn model_config(State(state): Shared, Path(model): Path<String>) -> Result<Response> {
    let served = state.registry.ready_version(&model, "")?;
    Ok(json_response(StatusCode::OK, &config::to_json(&served.config)))
}

async fn model_config_version(
    State(state): Shared,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    let served = state.registry.ready_version(&model, &version)?;
    Ok(json_response(StatusCode::OK, &config::to_json(&served.config)))
}

fn statistics(state: &HttpState, model: Option<&str>, version: Option<&str>) -> Result<Response> {
    let stats = state.registry.statistics(model, version)?;
    Ok(json_response(StatusCode::OK, &json!({ "model_stats": stats })))
}

async fn all_statistics(State(state): Shared) -> Result<Response> {
    statistics(&state, None, None)
}

async fn model_statistics(State(state): Shared, Path(model): Path<String>) -> Result<Response> {
    statistics(&state, Some(&model), None)
}

async fn model_statistics_version(
    State(state): Shared,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    statistics(&state, Some(&model), Some(&version))
}
