//! The model repository extension: `POST /v2/repository/index`, and
//! `.../models/{model}/load` (with an optional `config` override and `file:`
//! contents) and `.../unload`, the latter two in explicit model-control mode.

use super::body::{object, parameter_bool, parameters, parse_json_body, read_body};
use super::{codec, empty_ok, json_response, Shared};
use crate::error::{Result, ServerError};
use crate::models::{IndexEntry, LoadOverride};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

pub async fn index(State(state): Shared, headers: HeaderMap, body: Body) -> Result<Response> {
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

pub async fn load(State(state): Shared, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Result<Response> {
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

pub async fn unload(
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
