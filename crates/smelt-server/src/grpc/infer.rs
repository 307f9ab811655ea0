//! `ModelInfer` and `ModelStreamInfer`: a protobuf request becomes a
//! protocol-neutral [`InferRequest`], and its [`InferResponse`] goes back with
//! every output in `raw_output_contents`, as Triton sends them.
//!
//! An input's data comes from exactly one place: a shared-memory window named
//! in its parameters, its typed `contents`, or the next entry of
//! `raw_input_contents` (entries are taken in input order, skipping inputs with
//! another source, and every entry must be used). Outputs asked to go to shared
//! memory are written there; their `raw_output_contents` entry stays empty so the
//! entries still line up with `outputs`.

use super::contents::tensor_from_contents;
use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::http::codec::tensor_from_binary;
use crate::infer::{InferRequest, InferResponse, InputTensor, OutputTensor};
use crate::models::ModelRegistry;
use crate::proto::inference::infer_parameter::ParameterChoice;
use crate::proto::inference::model_infer_response::InferOutputTensor;
use crate::proto::inference::{InferParameter, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use crate::shm::SharedMemoryRegistry;
use crate::wire::{self, ParamValue, SharedMemoryWindow};
use std::collections::HashMap;

/// Parameter a stream request sets to have each response marked final.
const ENABLE_FINAL_RESPONSE: &str = "triton_enable_empty_final_response";
/// Marks a streamed response as the last one for its request.
const FINAL_RESPONSE: &str = "triton_final_response";

/// A protobuf parameter as a protocol-neutral value (`None`: no value set).
pub fn param_value(param: &InferParameter) -> Option<ParamValue> {
    Some(match param.parameter_choice.as_ref()? {
        ParameterChoice::BoolParam(v) => ParamValue::Bool(*v),
        ParameterChoice::Int64Param(v) => ParamValue::Int(*v),
        ParameterChoice::Uint64Param(v) => ParamValue::Uint(*v),
        ParameterChoice::DoubleParam(v) => ParamValue::Double(*v),
        ParameterChoice::StringParam(v) => ParamValue::Str(v.clone()),
    })
}

fn lookup(params: &HashMap<String, InferParameter>) -> impl Fn(&str) -> Option<ParamValue> + '_ {
    move |key| params.get(key).and_then(param_value)
}

/// Where an output the request asked for goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placement {
    Raw,
    SharedMemory(SharedMemoryWindow),
}

/// How the response to a decoded request is built: where each requested output
/// goes (by output name), and whether to mark it final.
#[derive(Clone, Debug, Default)]
pub struct ResponsePlan {
    placements: Vec<(String, Placement)>,
    /// A stream client asked for responses marked final.
    mark_final: bool,
}

/// Checks and decodes a ModelInferRequest; input bytes in shared memory are
/// copied out of `shm` now.
pub fn decode_request(request: ModelInferRequest, shm: &SharedMemoryRegistry) -> Result<(InferRequest, ResponsePlan)> {
    let model = &request.model_name;
    let raw = &request.raw_input_contents;
    let mut raw_used = 0usize;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let name = &input.name;
        let wire = WireType::parse(&input.datatype).ok_or_else(|| {
            ServerError::invalid(format!("input '{name}' has unknown datatype '{}'", input.datatype.escape_debug()))
        })?;
        let shape = wire::shape_from_dims(name, &input.shape)?;
        let window = wire::shared_memory_window(lookup(&input.parameters), &format!("input '{name}'"))?;
        let data = match (window, &input.contents) {
            (Some(_), Some(_)) => {
                return Err(ServerError::invalid(format!(
                    "input '{name}' has both contents and a shared_memory_region; give its data one way"
                )))
            }
            (Some(w), None) => tensor_from_binary(name, wire, &shape, &shm.read(&w.region, w.offset, w.byte_size)?)?,
            (None, Some(_)) if !raw.is_empty() => {
                return Err(ServerError::invalid(format!(
                    "input '{name}' has contents, but the request also has raw_input_contents; contents must not \
                     be given when raw_input_contents is used (model '{model}')"
                )))
            }
            (None, Some(contents)) => tensor_from_contents(name, wire, &shape, contents)?,
            (None, None) => {
                let bytes = raw.get(raw_used).ok_or_else(|| {
                    ServerError::invalid(format!(
                        "input '{name}' has no data: no contents, no shared_memory_region, and raw_input_contents \
                         has no entry left for it ({} entries for {} inputs)",
                        raw.len(),
                        request.inputs.len()
                    ))
                })?;
                raw_used += 1;
                tensor_from_binary(name, wire, &shape, bytes)?
            }
        };
        inputs.push(InputTensor { name: name.clone(), wire, shape, data });
    }
    if raw_used != raw.len() {
        return Err(ServerError::invalid(format!(
            "raw_input_contents has {} entries but only {raw_used} inputs take their data from it (model '{model}')",
            raw.len()
        )));
    }

    let mut placements = Vec::with_capacity(request.outputs.len());
    for output in &request.outputs {
        let name = &output.name;
        let what = format!("output '{name}'");
        let params = lookup(&output.parameters);
        if params("classification").is_some_and(|c| c.as_u64() != Some(0)) {
            return Err(ServerError::unsupported(format!(
                "{what}: the classification extension is not supported by this server"
            )));
        }
        let placement = match wire::shared_memory_window(&params, &what)? {
            Some(w) => {
                // Checked now, so a bad window fails before the model runs.
                shm.check_window(&w.region, w.offset, w.byte_size)?;
                Placement::SharedMemory(w)
            }
            None => Placement::Raw,
        };
        placements.push((name.clone(), placement));
    }
    let outputs = (!request.outputs.is_empty()).then(|| request.outputs.iter().map(|o| o.name.clone()).collect());
    let params = lookup(&request.parameters);
    let timeout = wire::request_timeout(params("timeout").as_ref())?;
    let priority = wire::request_priority(params("priority").as_ref())?;
    let mark_final = params(ENABLE_FINAL_RESPONSE).and_then(|v| v.as_bool()).unwrap_or(false);
    let id = (!request.id.is_empty()).then(|| request.id.clone());
    let request = InferRequest { id, inputs, outputs, timeout, priority };
    Ok((request, ResponsePlan { placements, mark_final }))
}

fn string_param(value: &str) -> InferParameter {
    InferParameter { parameter_choice: Some(ParameterChoice::StringParam(value.to_string())) }
}

fn int_param(value: u64) -> InferParameter {
    InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(value as i64)) }
}

/// The protobuf response: outputs in the order given, each one's bytes in
/// `raw_output_contents` or written to its shared-memory window.
pub fn encode_response(
    response: InferResponse,
    plan: &ResponsePlan,
    shm: &SharedMemoryRegistry,
) -> Result<ModelInferResponse> {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    let mut raw = Vec::with_capacity(response.outputs.len());
    for OutputTensor { name, wire, tensor } in response.outputs {
        let placement = plan.placements.iter().find(|(n, _)| *n == name).map(|(_, p)| p);
        let mut parameters = HashMap::new();
        match placement {
            Some(Placement::SharedMemory(w)) => {
                shm.write(&w.region, w.offset, w.byte_size, tensor.bytes())?;
                parameters.insert("shared_memory_region".to_string(), string_param(&w.region));
                parameters.insert("shared_memory_byte_size".to_string(), int_param(tensor.bytes().len() as u64));
                if w.offset != 0 {
                    parameters.insert("shared_memory_offset".to_string(), int_param(w.offset));
                }
                raw.push(Vec::new());
            }
            Some(Placement::Raw) | None => raw.push(tensor.bytes().to_vec()),
        }
        outputs.push(InferOutputTensor {
            name,
            datatype: wire.name().to_string(),
            shape: tensor.shape().iter().map(|&d| d as i64).collect(),
            parameters,
            contents: None,
        });
    }
    let mut parameters = HashMap::new();
    if plan.mark_final {
        parameters.insert(
            FINAL_RESPONSE.to_string(),
            InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(true)) },
        );
    }
    Ok(ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters,
        outputs,
        raw_output_contents: raw,
    })
}

/// Runs one request end to end: find the version, decode, infer, encode.
pub async fn infer(
    registry: &ModelRegistry,
    shm: &SharedMemoryRegistry,
    request: ModelInferRequest,
) -> Result<ModelInferResponse> {
    let served = registry.ready_version(&request.model_name, &request.model_version)?;
    let (request, plan) = decode_request(request, shm)?;
    let response = served.infer(request).await?;
    encode_response(response, &plan, shm)
}

/// One answer on the stream: the response, or the request's error in
/// `error_message` (the stream itself stays open).
pub fn stream_answer(outcome: Result<ModelInferResponse>, id: &str) -> ModelStreamInferResponse {
    match outcome {
        Ok(response) => ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) },
        Err(e) => ModelStreamInferResponse {
            error_message: e.message,
            // The id lets a client tell which of its requests failed.
            infer_response: Some(ModelInferResponse { id: id.to_string(), ..Default::default() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::TensorData;
    use crate::proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    use crate::proto::inference::InferTensorContents;
    use prost::bytes::Bytes;
    use smelt_ir::Tensor;

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: datatype.into(), shape: shape.to_vec(), ..Default::default() }
    }

    fn f32_bytes(values: &[f32]) -> Bytes {
        Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    }

    fn tensor(data: &TensorData) -> &Tensor {
        match data {
            TensorData::Tensor(t) => t,
            TensorData::Bytes(_) => panic!("expected a tensor"),
        }
    }

    #[test]
    fn raw_and_typed_inputs_decode_in_order() {
        let shm = SharedMemoryRegistry::new();
        let mut bytes_raw = Vec::new();
        for s in [&b"hi"[..], b"there"] {
            bytes_raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            bytes_raw.extend_from_slice(s);
        }
        let request = ModelInferRequest {
            model_name: "m".into(),
            id: "42".into(),
            inputs: vec![input("a", "FP32", &[1, 2]), input("s", "BYTES", &[2])],
            raw_input_contents: vec![f32_bytes(&[1.5, -2.0]), Bytes::from(bytes_raw)],
            outputs: vec![InferRequestedOutputTensor { name: "y".into(), ..Default::default() }],
            parameters: HashMap::from([(
                "timeout".to_string(),
                InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(2500)) },
            )]),
            ..Default::default()
        };
        let (r, _) = decode_request(request, &shm).unwrap();
        assert_eq!(r.id.as_deref(), Some("42"));
        assert_eq!(r.outputs.as_deref(), Some(&["y".to_string()][..]));
        assert_eq!(r.timeout, Some(std::time::Duration::from_micros(2500)));
        assert_eq!(r.inputs[0].shape, vec![1, 2]);
        assert_eq!(tensor(&r.inputs[0].data).as_slice::<f32>().unwrap(), &[1.5, -2.0]);
        assert_eq!(r.inputs[1].data, TensorData::Bytes(vec![b"hi".to_vec(), b"there".to_vec()]));

        let mut typed = input("a", "INT32", &[3]);
        typed.contents = Some(InferTensorContents { int_contents: vec![1, 2, 3], ..Default::default() });
        let request = ModelInferRequest { inputs: vec![typed], ..Default::default() };
        let (r, _) = decode_request(request, &shm).unwrap();
        assert_eq!(tensor(&r.inputs[0].data).as_slice::<i32>().unwrap(), &[1, 2, 3]);
        assert_eq!(r.outputs, None);
        assert_eq!(r.id, None);
    }

    #[test]
    fn malformed_requests_name_what_is_wrong() {
        let shm = SharedMemoryRegistry::new();
        let check = |request: ModelInferRequest, expected: &str| {
            let e = decode_request(request, &shm).expect_err("the request should be refused");
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidArg, "{e}");
            assert!(e.message.contains(expected), "'{e}' should mention '{expected}'");
        };
        check(
            ModelInferRequest {
                inputs: vec![input("a", "FP32", &[1, 4])],
                raw_input_contents: vec![f32_bytes(&[1.0, 2.0, 3.0])],
                ..Default::default()
            },
            "needs 16 bytes",
        );
        check(
            ModelInferRequest {
                inputs: vec![input("a", "FLOAT", &[1])],
                raw_input_contents: vec![f32_bytes(&[1.0])],
                ..Default::default()
            },
            "unknown datatype 'FLOAT'",
        );
        check(
            ModelInferRequest {
                inputs: vec![input("a", "FP32", &[-1])],
                raw_input_contents: vec![f32_bytes(&[1.0])],
                ..Default::default()
            },
            "every dimension must be >= 0",
        );
        check(ModelInferRequest { inputs: vec![input("a", "FP32", &[1])], ..Default::default() }, "has no data");
        check(
            ModelInferRequest {
                inputs: vec![input("a", "FP32", &[1])],
                raw_input_contents: vec![f32_bytes(&[1.0]), f32_bytes(&[2.0])],
                ..Default::default()
            },
            "raw_input_contents has 2 entries but only 1",
        );
        let mut typed = input("a", "FP32", &[1]);
        typed.contents = Some(InferTensorContents { fp32_contents: vec![1.0], ..Default::default() });
        check(
            ModelInferRequest {
                inputs: vec![typed, input("b", "FP32", &[1])],
                raw_input_contents: vec![f32_bytes(&[1.0])],
                ..Default::default()
            },
            "contents must not be given",
        );
        let mut in_shm = input("a", "FP32", &[1]);
        in_shm.parameters.insert("shared_memory_region".into(), string_param("r"));
        check(ModelInferRequest { inputs: vec![in_shm], ..Default::default() }, "without shared_memory_byte_size");
    }

    #[test]
    fn unknown_shared_memory_regions_are_not_found() {
        let shm = SharedMemoryRegistry::new();
        let mut in_shm = input("a", "FP32", &[1]);
        in_shm.parameters.insert("shared_memory_region".into(), string_param("nowhere"));
        in_shm.parameters.insert("shared_memory_byte_size".into(), int_param(4));
        let e = decode_request(ModelInferRequest { inputs: vec![in_shm], ..Default::default() }, &shm)
            .expect_err("refused");
        assert_eq!(e.kind, crate::error::ErrorKind::NotFound, "{e}");
        assert!(e.message.contains("nowhere"), "{e}");
    }

    #[test]
    fn responses_carry_raw_outputs_in_order() {
        let shm = SharedMemoryRegistry::new();
        let (_, plan) = decode_request(ModelInferRequest::default(), &shm).unwrap();
        let y = Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let z = Tensor::from_vec(&[3], vec![7i64, 8, 9]).unwrap();
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "3".into(),
            id: Some("abc".into()),
            outputs: vec![
                OutputTensor { name: "y".into(), wire: WireType::F32, tensor: y.clone() },
                OutputTensor { name: "z".into(), wire: WireType::I64, tensor: z.clone() },
            ],
        };
        let encoded = encode_response(response, &plan, &shm).unwrap();
        assert_eq!(
            (encoded.model_name.as_str(), encoded.model_version.as_str(), encoded.id.as_str()),
            ("m", "3", "abc")
        );
        assert_eq!(encoded.outputs.len(), 2);
        assert_eq!(encoded.outputs[0].datatype, "FP32");
        assert_eq!(encoded.outputs[0].shape, vec![2, 2]);
        assert_eq!(encoded.outputs[1].datatype, "INT64");
        assert_eq!(encoded.raw_output_contents, vec![y.bytes().to_vec(), z.bytes().to_vec()]);
        assert!(encoded.parameters.is_empty());
    }

    #[test]
    fn stream_errors_keep_the_request_id() {
        let answer = stream_answer(Err(ServerError::invalid("bad input")), "r7");
        assert_eq!(answer.error_message, "bad input");
        assert_eq!(answer.infer_response.unwrap().id, "r7");
        let answer = stream_answer(Ok(ModelInferResponse { id: "r8".into(), ..Default::default() }), "r8");
        assert!(answer.error_message.is_empty());
    }
}
