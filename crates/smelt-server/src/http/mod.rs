//! KServe v2 over HTTP with Triton's extensions: health, metadata, inference (JSON
//! and binary tensors, gzip/deflate bodies), model configuration, repository
//! index/load/unload, statistics.

pub mod codec;

use crate::config;
use crate::datatype::WireType;
use crate::error::{ErrorKind, Result, ServerError};
use crate::infer::{InferRequest, InferResponse, InputTensor, ServedVersion};
use crate::models::{IndexEntry, LoadOverride, ModelRegistry};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The Triton protocol extensions this server implements, as server metadata
/// lists them.
pub const EXTENSIONS: [&str; 5] =
    ["model_repository", "model_configuration", "binary_tensor_data", "parameters", "statistics"];

const INFER_HEADER_LENGTH: &str = "inference-header-content-length";

/// What every handler shares.
pub struct HttpState {
    pub registry: Arc<ModelRegistry>,
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
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_version))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route("/v2/repository/models/{model}/unload", post(repository_unload))
        .fallback(|| async { ServerError::not_found("Not Found") })
        .with_state(state)
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

fn readiness(state: &HttpState, model: &str, version: &str) -> Response {
    match state.registry.ready_version(model, version) {
        Ok(_) => empty_ok(),
        Err(_) => ServerError::invalid("Model version not ready").into_response(),
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

// ---- Request bodies -------------------------------------------------------------

fn too_large(size: usize, limit: usize) -> ServerError {
    ServerError::invalid(format!(
        "request body of {size} bytes or more exceeds the server's --http-max-input-size of {limit} bytes"
    ))
}

/// Reads (and discards) what is left of a body, up to a bound, so that the client
/// finishes sending and reads the error rather than a reset connection.
async fn drain(mut body: Body, limit: usize) {
    let bound = limit.saturating_mul(4).max(256 << 20);
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, Bytes::len);
        if seen > bound {
            break;
        }
    }
}

/// The request body, size-limited and decompressed per Content-Encoding.
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(size) = declared.filter(|&s| s > limit) {
        drain(body, limit).await;
        return Err(too_large(size, limit));
    }
    let mut collected = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ServerError::invalid(format!("failed to read the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if collected.len() + data.len() > limit {
                let size = collected.len() + data.len();
                drain(body, limit).await;
                return Err(too_large(size, limit));
            }
            collected.extend_from_slice(data);
        }
    }
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let decoded = match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => return Ok(Bytes::from(collected)),
        "gzip" | "x-gzip" => inflate(flate2::read::GzDecoder::new(&collected[..]), "gzip", limit)?,
        "deflate" => inflate(flate2::read::ZlibDecoder::new(&collected[..]), "deflate", limit)?,
        other => {
            return Err(ServerError::invalid(format!(
                "unsupported Content-Encoding '{other}' (supported: gzip, deflate, identity)"
            )))
        }
    };
    Ok(Bytes::from(decoded))
}

fn inflate(reader: impl Read, encoding: &str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ServerError::invalid(format!("the request body is not valid {encoding} data: {e}")))?;
    if out.len() > limit {
        return Err(too_large(out.len(), limit));
    }
    Ok(out)
}

/// The compression a client accepts for the response, gzip preferred.
fn response_encoding(headers: &HeaderMap) -> Option<&'static str> {
    let accepted = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let mut offered = accepted.split(',').filter_map(|part| {
        let mut pieces = part.split(';');
        let name = pieces.next()?.trim().to_ascii_lowercase();
        let refused = pieces.any(|p| p.trim().replace(' ', "").starts_with("q=0") && !p.contains("q=0."));
        (!refused).then_some(name)
    });
    let offered: Vec<String> = offered.by_ref().collect();
    if offered.iter().any(|e| e == "gzip") {
        Some("gzip")
    } else if offered.iter().any(|e| e == "deflate") {
        Some("deflate")
    } else {
        None
    }
}

fn compress(data: &[u8], encoding: &str) -> Result<Vec<u8>> {
    let failed = |e: std::io::Error| ServerError::internal(format!("compressing the response: {e}"));
    match encoding {
        "gzip" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
        _ => {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
    }
}

fn parse_json_body(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ServerError::new(ErrorKind::InvalidArg, format!("failed to parse the request JSON buffer: {e}")))
}

// ---- Inference ------------------------------------------------------------------

async fn infer(State(state): Shared, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Response {
    run_infer(&state, &model, "", &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn infer_version(
    State(state): Shared,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(&state, &model, &version, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// How the response carries each output.
struct OutputChoice {
    /// Per requested output name: binary or not (`None`: the request default).
    binary: Vec<(String, Option<bool>)>,
    binary_default: bool,
}

async fn run_infer(state: &HttpState, model: &str, version: &str, headers: &HeaderMap, body: Body) -> Result<Response> {
    let served = match state.registry.ready_version(model, version) {
        Ok(v) => v,
        Err(e) => {
            drain(body, state.max_input_size).await;
            return Err(e);
        }
    };
    let bytes = read_body(headers, body, state.max_input_size).await?;
    let header_length = match headers.get(INFER_HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).ok_or_else(|| {
            ServerError::invalid("the Inference-Header-Content-Length header is not a number of bytes")
        })?),
    };
    let (request, choice) = match header_length {
        Some(0) => raw_binary_request(&served, &bytes)?,
        Some(n) if n > bytes.len() => {
            return Err(ServerError::invalid(format!(
                "Inference-Header-Content-Length is {n} but the request body holds only {} bytes",
                bytes.len()
            )))
        }
        Some(n) => {
            let header = serde_json::from_slice::<Value>(&bytes[..n])
                .map_err(|e| ServerError::internal(format!("failed to parse the request JSON buffer: {e}")))?;
            json_request(&header, &bytes[n..])?
        }
        None => {
            let header = serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| ServerError::internal(format!("failed to parse the request JSON buffer: {e}")))?;
            json_request(&header, &[])?
        }
    };
    let response = served.infer(request).await?;
    build_response(&response, &choice, response_encoding(headers))
}

/// A body of nothing but one input's raw bytes (header length 0): the model's
/// only input, with its configured datatype and a shape worked out from the size.
fn raw_binary_request(served: &ServedVersion, bytes: &[u8]) -> Result<(InferRequest, OutputChoice)> {
    let (name, wire, dims) = served.only_input().ok_or_else(|| {
        ServerError::invalid(format!(
            "a request without an inference header (Inference-Header-Content-Length: 0) needs a model with exactly \
             one input; model '{}' has {}",
            served.model,
            served.input_metadata().len()
        ))
    })?;
    let size = wire.element_size().ok_or_else(|| {
        ServerError::invalid(format!("input '{name}' is BYTES; its shape cannot be worked out from raw bytes"))
    })?;
    if bytes.len() % size != 0 {
        return Err(ServerError::invalid(format!(
            "raw input '{name}' of {wire} holds {} bytes, not a whole number of {size}-byte elements",
            bytes.len()
        )));
    }
    let mut dims = dims;
    if served.config.max_batch_size > 0 {
        // A raw request is one batch element.
        dims[0] = 1;
    }
    let shape = crate::infer::solve_shape(&dims, bytes.len() / size).ok_or_else(|| {
        ServerError::invalid(format!(
            "raw input '{name}' of {} elements does not fit the configured shape {dims:?} (at most one \
             variable dimension can be worked out)",
            bytes.len() / size
        ))
    })?;
    let data = codec::tensor_from_binary(&name, wire, &shape, bytes)?;
    let request = InferRequest { inputs: vec![InputTensor { name, wire, shape, data }], ..Default::default() };
    Ok((request, OutputChoice { binary: Vec::new(), binary_default: true }))
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| ServerError::invalid(format!("{what} must be a JSON object")))
}

fn parameter_bool(params: Option<&Map<String, Value>>, key: &str, what: &str) -> Result<Option<bool>> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ServerError::invalid(format!("parameter '{key}' of {what} must be a boolean, not {other}"))),
    }
}

fn parameters<'a>(value: &'a Map<String, Value>, what: &str) -> Result<Option<&'a Map<String, Value>>> {
    match value.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(p) => object(p, &format!("'parameters' of {what}")).map(Some),
    }
}

/// Parses the JSON inference request; binary data for inputs with a
/// `binary_data_size` parameter is taken from `binary`, in order.
fn json_request(header: &Value, mut binary: &[u8]) -> Result<(InferRequest, OutputChoice)> {
    let root = object(header, "the inference request")?;
    let id = match root.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(ServerError::invalid(format!("'id' must be a string, not {other}"))),
    };
    let params = parameters(root, "the request")?;
    let binary_default = parameter_bool(params, "binary_data_output", "the request")?.unwrap_or(false);
    let timeout = match params.and_then(|p| p.get("timeout")) {
        None => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(us) => Some(Duration::from_micros(us)),
            None => return Err(ServerError::invalid(format!("parameter 'timeout' must be microseconds, not {v}"))),
        },
    };
    let priority = match params.and_then(|p| p.get("priority")) {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ServerError::invalid(format!("parameter 'priority' must be a non-negative integer, not {v}"))
        })?,
    };
    let inputs_json = root
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ServerError::invalid("the inference request must have an 'inputs' array"))?;
    let mut inputs = Vec::with_capacity(inputs_json.len());
    for (i, input) in inputs_json.iter().enumerate() {
        let input = object(input, &format!("inputs[{i}]"))?;
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ServerError::invalid(format!("inputs[{i}] has no 'name' string")))?
            .to_string();
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| ServerError::invalid(format!("input '{name}' has no 'datatype' string")))?;
        let wire = WireType::parse(datatype)
            .ok_or_else(|| ServerError::invalid(format!("input '{name}' has unknown datatype '{datatype}'")))?;
        let shape: Vec<usize> = input
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| {
                ServerError::invalid(format!("input '{name}' needs a 'shape' array of non-negative integers"))
            })?;
        let input_params = parameters(input, &format!("input '{name}'"))?;
        if input_params.is_some_and(|p| p.contains_key("shared_memory_region")) {
            return Err(ServerError::unsupported(format!(
                "input '{name}': shared memory is not supported by this server yet"
            )));
        }
        let binary_size = match input_params.and_then(|p| p.get("binary_data_size")) {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ServerError::invalid(format!("input '{name}': 'binary_data_size' must be a number of bytes, not {v}"))
            })? as usize),
        };
        let data = match (binary_size, input.get("data")) {
            (Some(_), Some(_)) => {
                return Err(ServerError::invalid(format!(
                    "input '{name}' has both 'data' and a 'binary_data_size' parameter"
                )))
            }
            (Some(size), None) => {
                if size > binary.len() {
                    return Err(ServerError::invalid(format!(
                        "input '{name}': binary_data_size is {size} but only {} bytes of binary data remain in the \
                         request body",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                codec::tensor_from_binary(&name, wire, &shape, mine)?
            }
            (None, Some(data)) => codec::tensor_from_json(&name, wire, &shape, data)?,
            (None, None) => {
                return Err(ServerError::invalid(format!(
                    "input '{name}' has neither 'data' nor a 'binary_data_size' parameter"
                )))
            }
        };
        inputs.push(InputTensor { name, wire, shape, data });
    }
    if !binary.is_empty() {
        return Err(ServerError::invalid(format!(
            "the request body has {} bytes of binary data that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    let mut choice = OutputChoice { binary: Vec::new(), binary_default };
    let outputs = match root.get("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut names = Vec::with_capacity(list.len());
            for (i, output) in list.iter().enumerate() {
                let output = object(output, &format!("outputs[{i}]"))?;
                let name = output
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ServerError::invalid(format!("outputs[{i}] has no 'name' string")))?
                    .to_string();
                let what = format!("output '{name}'");
                let output_params = parameters(output, &what)?;
                if output_params.is_some_and(|p| p.contains_key("shared_memory_region")) {
                    return Err(ServerError::unsupported(format!(
                        "output '{name}': shared memory is not supported by this server yet"
                    )));
                }
                if output_params.and_then(|p| p.get("classification")).is_some_and(|c| c.as_u64() != Some(0)) {
                    return Err(ServerError::unsupported(format!(
                        "output '{name}': the classification extension is not supported by this server"
                    )));
                }
                choice.binary.push((name.clone(), parameter_bool(output_params, "binary_data", &what)?));
                names.push(name);
            }
            Some(names)
        }
        Some(other) => return Err(ServerError::invalid(format!("'outputs' must be an array, not {other}"))),
    };
    Ok((InferRequest { id, inputs, outputs, timeout, priority }, choice))
}

fn build_response(response: &InferResponse, choice: &OutputChoice, encoding: Option<&str>) -> Result<Response> {
    let mut binary_tail: Vec<u8> = Vec::new();
    let mut has_binary = false;
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        let binary = choice
            .binary
            .iter()
            .find(|(n, _)| *n == output.name)
            .and_then(|(_, b)| *b)
            .unwrap_or(choice.binary_default);
        let mut entry = Map::new();
        entry.insert("name".into(), Value::String(output.name.clone()));
        entry.insert("datatype".into(), Value::String(output.wire.name().to_string()));
        entry.insert("shape".into(), json!(output.tensor.shape()));
        if binary {
            has_binary = true;
            let bytes = output.tensor.bytes();
            entry.insert("parameters".into(), json!({ "binary_data_size": bytes.len() }));
            binary_tail.extend_from_slice(bytes);
        } else {
            entry.insert("data".into(), codec::tensor_to_json(&output.tensor));
        }
        outputs.push(Value::Object(entry));
    }
    let mut root = Map::new();
    if let Some(id) = &response.id {
        root.insert("id".into(), Value::String(id.clone()));
    }
    root.insert("model_name".into(), Value::String(response.model_name.clone()));
    root.insert("model_version".into(), Value::String(response.model_version.clone()));
    root.insert("outputs".into(), Value::Array(outputs));
    let mut body = serde_json::to_vec(&Value::Object(root))
        .map_err(|e| ServerError::internal(format!("writing the response: {e}")))?;
    let header_length = body.len();
    body.extend_from_slice(&binary_tail);
    let mut builder = Response::builder().status(StatusCode::OK);
    if has_binary {
        builder = builder
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(INFER_HEADER_LENGTH, header_length.to_string());
    } else {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(encoding) = encoding {
        body = compress(&body, encoding)?;
        builder = builder.header(header::CONTENT_ENCODING, encoding);
    }
    builder.body(Body::from(body)).map_err(|e| ServerError::internal(format!("building the response: {e}")))
}

// ---- Model repository -----------------------------------------------------------

async fn repository_index(State(state): Shared, headers: HeaderMap, body: Body) -> Result<Response> {
    let bytes = read_body(&headers, body, state.max_input_size).await?;
    let request = parse_json_body(&bytes)?;
    let ready = parameter_bool(Some(object(&request, "the index request")?), "ready", "the index request")?;
    let rows: Vec<Value> = state.registry.index(ready.unwrap_or(false))?.into_iter().map(index_json).collect();
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

fn index_json(row: IndexEntry) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(row.name));
    for (key, value) in [("version", row.version), ("state", row.state), ("reason", row.reason)] {
        if let Some(value) = value {
            entry.insert(key.into(), Value::String(value));
        }
    }
    Value::Object(entry)
}

async fn repository_load(
    State(state): Shared,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = read_body(&headers, body, state.max_input_size).await?;
    state.registry.check_explicit()?;
    let request = parse_json_body(&bytes)?;
    let params = parameters(object(&request, "the load request")?, "the load request")?;
    let mut overrides = LoadOverride::default();
    for (key, value) in params.into_iter().flatten() {
        if key == "config" {
            let text = value
                .as_str()
                .ok_or_else(|| ServerError::invalid("load parameter 'config' must be a string holding JSON"))?;
            overrides.config_json = Some(text.to_string());
        } else if let Some(path) = key.strip_prefix("file:") {
            let text = value
                .as_str()
                .ok_or_else(|| ServerError::invalid(format!("load parameter '{key}' must be a base64 string")))?;
            let contents = codec::base64_decode(text)
                .map_err(|e| ServerError::invalid(format!("load parameter '{key}' is not valid base64: {e}")))?;
            overrides.files.push((path.to_string(), contents));
        }
    }
    let registry = state.registry.clone();
    let name = model.clone();
    tokio::task::spawn_blocking(move || registry.load_blocking(&name, overrides))
        .await
        .map_err(|e| ServerError::internal(format!("loading '{model}' failed: {e}")))??;
    Ok(empty_ok())
}

async fn repository_unload(
    State(state): Shared,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = read_body(&headers, body, state.max_input_size).await?;
    state.registry.check_explicit()?;
    let request = parse_json_body(&bytes)?;
    // `unload_dependents` concerns ensembles, which Smelt does not have: accepted.
    parameters(object(&request, "the unload request")?, "the unload request")?;
    state.registry.unload(&model)?;
    Ok(empty_ok())
}
