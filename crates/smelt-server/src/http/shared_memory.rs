//! The system shared memory extension's control endpoints under
//! `/v2/systemsharedmemory`: register a window of a POSIX shared-memory object
//! under a name, report the registered regions, and unregister them. Requests
//! then name the regions in their inputs' and outputs' parameters (see
//! [`super::infer`]).
//!
//! As Triton does, every failure here is answered with 400 whatever its kind.

use super::body::{object, parse_json_body, read_body};
use super::{json_response, Shared};
use crate::error::{ErrorKind, Result, ServerError};
use crate::shm::RegionStatus;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Triton answers every shared-memory control error with 400.
fn as_bad_request(e: ServerError) -> ServerError {
    ServerError::new(ErrorKind::InvalidArg, e.message)
}

fn done() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], "").into_response()
}

fn status_json(regions: Vec<RegionStatus>) -> Response {
    let rows: Vec<Value> = regions
        .into_iter()
        .map(|r| json!({ "name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size }))
        .collect();
    json_response(StatusCode::OK, &Value::Array(rows))
}

pub async fn status_all(State(state): Shared) -> Result<Response> {
    state.shm.status(None).map(status_json).map_err(as_bad_request)
}

pub async fn status_one(State(state): Shared, Path(name): Path<String>) -> Result<Response> {
    state.shm.status(Some(&name)).map(status_json).map_err(as_bad_request)
}

pub async fn register(
    State(state): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = read_body(&headers, body, state.max_input_size).await?;
    let request = parse_json_body(&bytes)?;
    let request = object(&request, "the register request")?;
    let key = match request.get("key") {
        Some(Value::String(key)) => key,
        Some(other) => return Err(ServerError::invalid(format!("'key' must be a string, not {other}"))),
        None => return Err(ServerError::invalid("Shared memory register request has no 'key' field")),
    };
    let number = |field: &str| -> Result<Option<u64>> {
        match request.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| ServerError::invalid(format!("'{field}' must be a non-negative integer, not {v}"))),
        }
    };
    let offset = number("offset")?.unwrap_or(0);
    let byte_size = number("byte_size")?
        .ok_or_else(|| ServerError::invalid("Shared memory register request has no 'byte_size' field"))?;
    state.shm.register(&name, key, offset, byte_size).map_err(as_bad_request)?;
    Ok(done())
}

pub async fn unregister_all(State(state): Shared) -> Response {
    state.shm.unregister(None);
    done()
}

pub async fn unregister_one(State(state): Shared, Path(name): Path<String>) -> Response {
    state.shm.unregister(Some(&name));
    done()
}
