//! `POST /v2/models/{model}[/versions/{version}]/infer`: the JSON request with
//! tensors in `data`, after the JSON header as binary data
//! (Inference-Header-Content-Length, `binary_data_size`), or in registered
//! system shared memory (`shared_memory_region`, `shared_memory_offset`,
//! `shared_memory_byte_size`); outputs come back as JSON, as binary data
//! (`binary_data`, `binary_data_output`) or written to shared memory.

use super::body::{compress, response_encoding};
use super::body::{drain, object, parameter_bool, parameter_str, parameter_u64, parameters, read_body};
use super::{codec, HttpState, Shared};
use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::infer::{InferRequest, InferResponse, InputTensor, ServedVersion};
use crate::shm::SharedMemoryRegistry;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::time::Duration;

pub const INFER_HEADER_LENGTH: &str = "inference-header-content-length";

pub async fn infer(State(state): Shared, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Response {
    run_infer(&state, &model, "", &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn infer_version(
    State(state): Shared,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(&state, &model, &version, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// Where one output goes.
#[derive(Clone, Debug, PartialEq)]
enum Placement {
    /// As the request's `binary_data_output` says (JSON unless it is true).
    Default,
    Json,
    Binary,
    SharedMemory {
        region: String,
        offset: u64,
        byte_size: u64,
    },
}

/// How the response carries each output the request names.
#[derive(Debug, Default)]
struct OutputChoice {
    placements: Vec<(String, Placement)>,
    binary_default: bool,
}

impl OutputChoice {
    fn placement(&self, name: &str) -> &Placement {
        self.placements.iter().find(|(n, _)| n == name).map_or(&Placement::Default, |(_, p)| p)
    }
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
        Some(n) => json_request(&parse_header(&bytes[..n])?, &bytes[n..], &state.shm)?,
        None => json_request(&parse_header(&bytes)?, &[], &state.shm)?,
    };
    let response = served.infer(request).await?;
    build_response(&response, &choice, response_encoding(headers), &state.shm)
}

/// The JSON request header; Triton answers a parse failure with 500.
fn parse_header(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Value>(bytes)
        .map_err(|e| ServerError::internal(format!("failed to parse the request JSON buffer: {e}")))
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
    if !bytes.len().is_multiple_of(size) {
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
    Ok((request, OutputChoice { placements: Vec::new(), binary_default: true }))
}

/// A shared-memory window named by an input's or output's parameters, if any.
fn shared_memory_window(params: Option<&Map<String, Value>>, what: &str) -> Result<Option<(String, u64, u64)>> {
    let Some(region) = parameter_str(params, "shared_memory_region", what)? else {
        return Ok(None);
    };
    let byte_size = parameter_u64(params, "shared_memory_byte_size", what)?.ok_or_else(|| {
        ServerError::invalid(format!("{what} names shared_memory_region '{region}' without shared_memory_byte_size"))
    })?;
    let offset = parameter_u64(params, "shared_memory_offset", what)?.unwrap_or(0);
    Ok(Some((region.to_string(), offset, byte_size)))
}

/// Parses the JSON inference request; binary data for inputs with a
/// `binary_data_size` parameter is taken from `binary`, in order, and inputs in
/// shared memory are copied out of `shm`.
fn json_request(header: &Value, mut binary: &[u8], shm: &SharedMemoryRegistry) -> Result<(InferRequest, OutputChoice)> {
    let root = object(header, "the inference request")?;
    let id = match root.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(ServerError::invalid(format!("'id' must be a string, not {other}"))),
    };
    let params = parameters(root, "the request")?;
    let binary_default = parameter_bool(params, "binary_data_output", "the request")?.unwrap_or(false);
    let timeout = match parameter_u64(params, "timeout", "the request")? {
        None | Some(0) => None,
        Some(us) => Some(Duration::from_micros(us)),
    };
    let priority = parameter_u64(params, "priority", "the request")?.unwrap_or(0);
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
        let what = format!("input '{name}'");
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| ServerError::invalid(format!("{what} has no 'datatype' string")))?;
        let wire = WireType::parse(datatype)
            .ok_or_else(|| ServerError::invalid(format!("{what} has unknown datatype '{datatype}'")))?;
        let shape: Vec<usize> = input
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| ServerError::invalid(format!("{what} needs a 'shape' array of non-negative integers")))?;
        let input_params = parameters(input, &what)?;
        let binary_size = parameter_u64(input_params, "binary_data_size", &what)?;
        let window = shared_memory_window(input_params, &what)?;
        let data = input.get("data");
        let sources = usize::from(data.is_some()) + usize::from(binary_size.is_some()) + usize::from(window.is_some());
        if sources != 1 {
            let mut given = String::new();
            for (set, field) in [
                (data.is_some(), " 'data'"),
                (binary_size.is_some(), " 'binary_data_size'"),
                (window.is_some(), " 'shared_memory_region'"),
            ] {
                if set {
                    given.push_str(field);
                }
            }
            return Err(ServerError::invalid(format!(
                "{what}: input must set only one of the following fields: 'data', 'binary_data_size' in \
                 'parameters', 'shared_memory_region' in 'parameters'. But {}",
                if sources == 0 { "no field is set".to_string() } else { format!("set{given}") }
            )));
        }
        let data = if let Some(size) = binary_size {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(ServerError::invalid(format!(
                    "{what}: binary_data_size is {size} but only {} bytes of binary data remain in the request body",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            binary = rest;
            codec::tensor_from_binary(&name, wire, &shape, mine)?
        } else if let Some((region, offset, byte_size)) = window {
            let bytes = shm.read(&region, offset, byte_size)?;
            codec::tensor_from_binary(&name, wire, &shape, &bytes)?
        } else {
            codec::tensor_from_json(&name, wire, &shape, data.expect("one source is set"))?
        };
        inputs.push(InputTensor { name, wire, shape, data });
    }
    if !binary.is_empty() {
        return Err(ServerError::invalid(format!(
            "the request body has {} bytes of binary data that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    let mut choice = OutputChoice { placements: Vec::new(), binary_default };
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
                if parameter_u64(output_params, "classification", &what)?.is_some_and(|c| c != 0) {
                    return Err(ServerError::unsupported(format!(
                        "{what}: the classification extension is not supported by this server"
                    )));
                }
                let binary = parameter_bool(output_params, "binary_data", &what)?;
                let placement = match (shared_memory_window(output_params, &what)?, binary) {
                    (Some(_), Some(true)) => {
                        return Err(ServerError::invalid(format!(
                            "{what}: Output can't set both 'shared_memory_region' and 'binary_data'"
                        )))
                    }
                    (Some((region, offset, byte_size)), _) => {
                        // Refuse an unknown region or a window outside it before
                        // the model runs, not after.
                        shm.check_window(&region, offset, byte_size)?;
                        Placement::SharedMemory { region, offset, byte_size }
                    }
                    (None, Some(true)) => Placement::Binary,
                    (None, Some(false)) => Placement::Json,
                    (None, None) => Placement::Default,
                };
                choice.placements.push((name.clone(), placement));
                names.push(name);
            }
            Some(names)
        }
        Some(other) => return Err(ServerError::invalid(format!("'outputs' must be an array, not {other}"))),
    };
    Ok((InferRequest { id, inputs, outputs, timeout, priority }, choice))
}

fn build_response(
    response: &InferResponse,
    choice: &OutputChoice,
    encoding: Option<&str>,
    shm: &SharedMemoryRegistry,
) -> Result<Response> {
    let mut binary_tail: Vec<u8> = Vec::new();
    let mut has_binary = false;
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        let mut entry = Map::new();
        entry.insert("name".into(), Value::String(output.name.clone()));
        entry.insert("datatype".into(), Value::String(output.wire.name().to_string()));
        entry.insert("shape".into(), json!(output.tensor.shape()));
        let bytes = output.tensor.bytes();
        let binary = match choice.placement(&output.name) {
            Placement::SharedMemory { region, offset, byte_size } => {
                shm.write(region, *offset, *byte_size, bytes)
                    .map_err(|e| ServerError::new(e.kind, format!("output '{}': {}", output.name, e.message)))?;
                let mut params = Map::new();
                params.insert("shared_memory_region".into(), Value::String(region.clone()));
                params.insert("shared_memory_byte_size".into(), json!(bytes.len()));
                if *offset != 0 {
                    params.insert("shared_memory_offset".into(), json!(offset));
                }
                entry.insert("parameters".into(), Value::Object(params));
                outputs.push(Value::Object(entry));
                continue;
            }
            Placement::Binary => true,
            Placement::Json => false,
            Placement::Default => choice.binary_default,
        };
        if binary {
            has_binary = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{OutputTensor, TensorData};
    use smelt_ir::Tensor;

    fn parse(header: Value, binary: &[u8]) -> Result<(InferRequest, OutputChoice)> {
        json_request(&header, binary, &SharedMemoryRegistry::new())
    }

    #[test]
    fn binary_inputs_are_cut_from_the_tail_in_order() {
        let mut tail = Vec::new();
        tail.extend(1.0f32.to_le_bytes());
        tail.extend(2.0f32.to_le_bytes());
        tail.extend([7u8, 8]);
        let header = json!({
            "id": "r",
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
                {"name": "b", "datatype": "UINT8", "shape": [1, 2], "parameters": {"binary_data_size": 2}},
                {"name": "c", "datatype": "INT64", "shape": [2], "data": [[3], [4]]},
            ],
            "outputs": [{"name": "x", "parameters": {"binary_data": true}}, {"name": "y"}],
            "parameters": {"binary_data_output": false, "priority": 2, "timeout": 500},
        });
        let (request, choice) = parse(header, &tail).unwrap();
        assert_eq!(request.id.as_deref(), Some("r"));
        assert_eq!(request.priority, 2);
        assert_eq!(request.timeout, Some(Duration::from_micros(500)));
        let a = match &request.inputs[0].data {
            TensorData::Tensor(t) => t.as_slice::<f32>().unwrap().to_vec(),
            TensorData::Bytes(_) => panic!(),
        };
        assert_eq!(a, vec![1.0, 2.0]);
        assert_eq!(request.inputs[1].shape, vec![1, 2]);
        assert_eq!(request.outputs, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(choice.placement("x"), &Placement::Binary);
        assert_eq!(choice.placement("y"), &Placement::Default);
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        let cases = [
            (json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]}), "no field is set"),
            (
                json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1],
                    "parameters": {"binary_data_size": 4}}]}),
                "set 'data' 'binary_data_size'",
            ),
            (json!({"inputs": [{"name": "a", "datatype": "FLOAT", "shape": [1], "data": [1]}]}), "'FLOAT'"),
            (json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [-1], "data": [1]}]}), "'shape'"),
            (json!({"outputs": []}), "'inputs' array"),
            (json!([1]), "JSON object"),
            (json!({"inputs": [], "parameters": {"timeout": "soon"}}), "'timeout'"),
            (
                json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1],
                    "parameters": {"shared_memory_region": "r"}}]}),
                "without shared_memory_byte_size",
            ),
            (
                json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1],
                    "parameters": {"shared_memory_region": "nowhere", "shared_memory_byte_size": 4}}]}),
                "Unable to find shared memory region: 'nowhere'",
            ),
            (
                json!({"inputs": [], "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r",
                    "shared_memory_byte_size": 4, "binary_data": true}}]}),
                "can't set both",
            ),
            (
                json!({"inputs": [], "outputs": [{"name": "y", "parameters": {"shared_memory_region": "gone",
                    "shared_memory_byte_size": 4}}]}),
                "'gone'",
            ),
        ];
        for (header, mention) in cases {
            let e = parse(header.clone(), &[]).unwrap_err();
            assert!(e.message.contains(mention), "{header}: {e}");
        }
        let e = parse(
            json!({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 8}}]}),
            &[0; 4],
        )
        .unwrap_err();
        assert!(e.message.contains("binary_data_size is 8"), "{e}");
        let e = parse(json!({"inputs": []}), &[0; 3]).unwrap_err();
        assert!(e.message.contains("3 bytes of binary data"), "{e}");
    }

    #[test]
    fn responses_mix_json_and_binary_outputs() {
        let tensor = |v: Vec<f32>| Tensor::from_vec(&[v.len()], v).unwrap();
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs: vec![
                OutputTensor { name: "j".into(), wire: WireType::F32, tensor: tensor(vec![0.5]) },
                OutputTensor { name: "b".into(), wire: WireType::F32, tensor: tensor(vec![1.0, 2.0]) },
            ],
        };
        let choice = OutputChoice {
            placements: vec![("b".into(), Placement::Binary), ("j".into(), Placement::Default)],
            binary_default: false,
        };
        let reply = build_response(&response, &choice, None, &SharedMemoryRegistry::new()).unwrap();
        let length: usize = reply.headers()[INFER_HEADER_LENGTH].to_str().unwrap().parse().unwrap();
        assert_eq!(reply.headers()[header::CONTENT_TYPE], "application/octet-stream");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let body = runtime.block_on(http_body_util::BodyExt::collect(reply.into_body())).unwrap().to_bytes();
        let head: Value = serde_json::from_slice(&body[..length]).unwrap();
        assert_eq!(head["outputs"][0], json!({"name": "j", "datatype": "FP32", "shape": [1], "data": [0.5]}));
        assert_eq!(head["outputs"][1]["parameters"], json!({"binary_data_size": 8}));
        assert_eq!(&body[length..], [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
    }
}
