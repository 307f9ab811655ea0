//! `inference.GRPCInferenceService`: every RPC of Triton's gRPC protocol, each a
//! thin translation between protobuf messages and the server's model registry,
//! shared-memory registry and log settings.

use super::infer::{self, stream_answer};
use super::GrpcState;
use crate::error::{Result, ServerError};
use crate::logging::{self, LogFormat, LogSettings, LogSettingsUpdate};
use crate::models::LoadOverride;
use crate::proto::descriptor_pool;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::inference::model_metadata_response::TensorMetadata;
use crate::proto::inference::model_repository_parameter::ParameterChoice as RepositoryParam;
use crate::proto::inference::repository_index_response::ModelIndex;
use crate::proto::inference::*;
use crate::wire;
use prost_reflect::{DeserializeOptions, DynamicMessage};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub struct InferenceService {
    state: Arc<GrpcState>,
}

impl InferenceService {
    pub fn new(state: Arc<GrpcState>) -> InferenceService {
        InferenceService { state }
    }
}

type Answer<T> = std::result::Result<Response<T>, Status>;
type StreamInferStream = Pin<Box<dyn Stream<Item = std::result::Result<ModelStreamInferResponse, Status>> + Send>>;

/// How many responses of one stream may wait to be sent before the stream's
/// running requests pause.
const STREAM_BACKLOG: usize = 16;

fn tensor_metadata(list: Vec<(String, crate::datatype::WireType, Vec<i64>)>) -> Vec<TensorMetadata> {
    list.into_iter()
        .map(|(name, wire, shape)| TensorMetadata { name, datatype: wire.name().to_string(), shape })
        .collect()
}

/// One `model_stats` entry of Triton's statistics JSON as its protobuf message:
/// the JSON is the protobuf JSON mapping of ModelStatistics, so the schema reads it.
pub fn statistics_message(json: &serde_json::Value) -> Result<ModelStatistics> {
    let descriptor = descriptor_pool()
        .get_message_by_name("inference.ModelStatistics")
        .ok_or_else(|| ServerError::internal("the schema has no inference.ModelStatistics"))?;
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    DynamicMessage::deserialize_with_options(descriptor, json, &options)
        .map_err(|e| ServerError::internal(format!("statistics do not fit inference.ModelStatistics: {e}")))?
        .transcode_to::<ModelStatistics>()
        .map_err(|e| ServerError::internal(format!("statistics do not fit inference.ModelStatistics: {e}")))
}

/// A load request's parameters: `config` (a JSON ModelConfig) and `file:<path>`
/// (model file contents).
fn load_override(parameters: HashMap<String, ModelRepositoryParameter>) -> Result<LoadOverride> {
    let mut overrides = LoadOverride::default();
    for (key, value) in parameters {
        if key == "config" {
            match value.parameter_choice {
                Some(RepositoryParam::StringParam(json)) => overrides.config_json = Some(json),
                _ => return Err(ServerError::invalid("load parameter 'config' must be a string_param holding JSON")),
            }
        } else if let Some(path) = key.strip_prefix("file:") {
            match value.parameter_choice {
                Some(RepositoryParam::BytesParam(contents)) => overrides.files.push((path.to_string(), contents)),
                _ => return Err(ServerError::invalid(format!("load parameter '{key}' must be a bytes_param"))),
            }
        }
    }
    Ok(overrides)
}

/// Smelt serves one set of repositories as one; naming one is not supported.
fn check_repository_name(name: &str) -> Result<()> {
    if name.is_empty() {
        Ok(())
    } else {
        Err(ServerError::unsupported(format!(
            "'repository_name' ('{name}') is not supported: Smelt treats its model repositories as one"
        )))
    }
}

fn no_cuda() -> Status {
    Status::unimplemented("CUDA shared memory is not supported: Smelt does not use CUDA; use system shared memory")
}

/// Trace settings as a server that does not trace requests reports them.
fn trace_settings() -> TraceSettingResponse {
    let values = [
        ("trace_level", "OFF"),
        ("trace_rate", "1000"),
        ("trace_count", "-1"),
        ("log_frequency", "0"),
        ("trace_file", ""),
        ("trace_mode", "triton"),
    ];
    let settings = values
        .into_iter()
        .map(|(k, v)| (k.to_string(), trace_setting_response::SettingValue { value: vec![v.to_string()] }))
        .collect();
    TraceSettingResponse { settings }
}

fn log_settings_message(settings: LogSettings) -> LogSettingsResponse {
    use log_settings_response::setting_value::ParameterChoice as Value;
    use log_settings_response::SettingValue;
    let entries = [
        ("log_file", Value::StringParam(settings.log_file)),
        ("log_info", Value::BoolParam(settings.log_info)),
        ("log_warning", Value::BoolParam(settings.log_warning)),
        ("log_error", Value::BoolParam(settings.log_error)),
        ("log_verbose_level", Value::Uint32Param(settings.log_verbose_level)),
        ("log_format", Value::StringParam(settings.log_format.name().to_string())),
    ];
    let settings =
        entries.into_iter().map(|(k, v)| (k.to_string(), SettingValue { parameter_choice: Some(v) })).collect();
    LogSettingsResponse { settings }
}

/// The changes a LogSettings request asks for; unknown keys are ignored, as
/// over HTTP.
fn log_update(request: LogSettingsRequest) -> Result<LogSettingsUpdate> {
    use log_settings_request::setting_value::ParameterChoice as Value;
    let mut update = LogSettingsUpdate::default();
    for (key, setting) in request.settings {
        let Some(value) = setting.parameter_choice else { continue };
        let wrong = |expected: &str| ServerError::invalid(format!("log setting '{key}' must be {expected}"));
        match key.as_str() {
            "log_info" | "log_warning" | "log_error" => {
                let Value::BoolParam(on) = value else { return Err(wrong("a bool_param")) };
                match key.as_str() {
                    "log_info" => update.log_info = Some(on),
                    "log_warning" => update.log_warning = Some(on),
                    _ => update.log_error = Some(on),
                }
            }
            "log_verbose_level" => {
                let Value::Uint32Param(level) = value else { return Err(wrong("a uint32_param")) };
                update.log_verbose_level = Some(level);
            }
            "log_format" => {
                let Value::StringParam(format) = value else { return Err(wrong("a string_param")) };
                update.log_format = Some(LogFormat::parse(&format).ok_or_else(|| {
                    ServerError::invalid(format!("invalid log_format '{format}' (expected \"default\" or \"ISO8601\")"))
                })?);
            }
            "log_file" => {
                let Value::StringParam(file) = value else { return Err(wrong("a string_param")) };
                update.log_file = Some(file);
            }
            _ => {}
        }
    }
    Ok(update)
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Answer<ServerLiveResponse> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Answer<ServerReadyResponse> {
        Ok(Response::new(ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Answer<ModelReadyResponse> {
        let request = request.get_ref();
        let ready = self.state.registry.ready_version(&request.name, &request.version).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, _: Request<ServerMetadataRequest>) -> Answer<ServerMetadataResponse> {
        Ok(Response::new(ServerMetadataResponse {
            name: "smelt".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: crate::http::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, request: Request<ModelMetadataRequest>) -> Answer<ModelMetadataResponse> {
        let request = request.get_ref();
        let served = self.state.registry.ready_version(&request.name, &request.version)?;
        let versions = self.state.registry.ready_versions(&served.model).iter().map(i64::to_string).collect();
        Ok(Response::new(ModelMetadataResponse {
            name: served.model.clone(),
            versions,
            platform: wire::platform(&served.config).to_string(),
            inputs: tensor_metadata(served.input_metadata()),
            outputs: tensor_metadata(served.output_metadata()),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Answer<ModelInferResponse> {
        let response = infer::infer(&self.state.registry, &self.state.shm, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    type ModelStreamInferStream = StreamInferStream;

    /// Runs each request of the stream as it arrives (several at once) and
    /// answers each in turn as it finishes; a failed request is answered with
    /// its error and the stream goes on. When the client ends its side, the
    /// stream ends once every request is answered; at server shutdown it stops
    /// taking requests and ends likewise.
    async fn model_stream_infer(&self, request: Request<Streaming<ModelInferRequest>>) -> Answer<StreamInferStream> {
        let mut incoming = request.into_inner();
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
        tokio::spawn(async move {
            let mut stop = state.stop.clone();
            loop {
                let next = tokio::select! {
                    next = incoming.next() => next,
                    _ = stop.wait_for(|stopping| *stopping) => None,
                };
                let request = match next {
                    None => break,
                    Some(Ok(request)) => request,
                    Some(Err(status)) => {
                        // The stream itself broke (a message too large or not
                        // protobuf): end it with that status.
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let (state, tx) = (state.clone(), tx.clone());
                tokio::spawn(async move {
                    let id = request.id.clone();
                    let outcome = infer::infer(&state.registry, &state.shm, request).await;
                    // The client may have gone; nothing is left to tell it.
                    let _ = tx.send(Ok(stream_answer(outcome, &id))).await;
                });
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn model_config(&self, request: Request<ModelConfigRequest>) -> Answer<ModelConfigResponse> {
        let request = request.get_ref();
        let served = self.state.registry.ready_version(&request.name, &request.version)?;
        Ok(Response::new(ModelConfigResponse { config: Some((*served.config).clone()) }))
    }

    async fn model_statistics(&self, request: Request<ModelStatisticsRequest>) -> Answer<ModelStatisticsResponse> {
        let request = request.get_ref();
        let name = (!request.name.is_empty()).then_some(request.name.as_str());
        let version = (!request.version.is_empty()).then_some(request.version.as_str());
        if name.is_none() && version.is_some() {
            return Err(ServerError::invalid("a statistics request with a version must name the model too").into());
        }
        let entries = self.state.registry.statistics(name, version)?;
        let model_stats = entries.iter().map(statistics_message).collect::<Result<Vec<_>>>()?;
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(&self, request: Request<RepositoryIndexRequest>) -> Answer<RepositoryIndexResponse> {
        let request = request.get_ref();
        check_repository_name(&request.repository_name)?;
        let models = self
            .state
            .registry
            .index(request.ready)?
            .into_iter()
            .map(|row| ModelIndex {
                name: row.name,
                version: row.version.unwrap_or_default(),
                state: row.state.unwrap_or_default(),
                reason: row.reason.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Answer<RepositoryModelLoadResponse> {
        let request = request.into_inner();
        check_repository_name(&request.repository_name)?;
        self.state.registry.check_explicit()?;
        let overrides = load_override(request.parameters)?;
        let registry = self.state.registry.clone();
        let name = request.model_name.clone();
        tokio::task::spawn_blocking(move || registry.load_blocking(&name, overrides))
            .await
            .map_err(|e| ServerError::internal(format!("loading '{}' failed: {e}", request.model_name)))??;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Answer<RepositoryModelUnloadResponse> {
        let request = request.get_ref();
        check_repository_name(&request.repository_name)?;
        self.state.registry.check_explicit()?;
        // `unload_dependents` concerns ensembles, which Smelt does not have.
        self.state.registry.unload(&request.model_name)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Answer<SystemSharedMemoryStatusResponse> {
        let name = &request.get_ref().name;
        let regions = self
            .state
            .shm
            .status((!name.is_empty()).then_some(name.as_str()))?
            .into_iter()
            .map(|r| {
                let status = system_shared_memory_status_response::RegionStatus {
                    name: r.name.clone(),
                    key: r.key,
                    offset: r.offset,
                    byte_size: r.byte_size,
                };
                (r.name, status)
            })
            .collect();
        Ok(Response::new(SystemSharedMemoryStatusResponse { regions }))
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Answer<SystemSharedMemoryRegisterResponse> {
        let r = request.get_ref();
        self.state.shm.register(&r.name, &r.key, r.offset, r.byte_size)?;
        Ok(Response::new(SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<SystemSharedMemoryUnregisterResponse> {
        let name = &request.get_ref().name;
        self.state.shm.unregister((!name.is_empty()).then_some(name.as_str()));
        Ok(Response::new(SystemSharedMemoryUnregisterResponse {}))
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<CudaSharedMemoryStatusRequest>,
    ) -> Answer<CudaSharedMemoryStatusResponse> {
        Err(no_cuda())
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Answer<CudaSharedMemoryRegisterResponse> {
        Err(no_cuda())
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<CudaSharedMemoryUnregisterResponse> {
        Err(no_cuda())
    }

    /// Smelt does not trace requests: the settings say so, and cannot change.
    async fn trace_setting(&self, request: Request<TraceSettingRequest>) -> Answer<TraceSettingResponse> {
        let request = request.get_ref();
        if !request.model_name.is_empty() {
            self.state.registry.ready_version(&request.model_name, "")?;
        }
        if !request.settings.is_empty() {
            return Err(Status::unimplemented("request tracing is not supported by Smelt; trace settings stay OFF"));
        }
        Ok(Response::new(trace_settings()))
    }

    async fn log_settings(&self, request: Request<LogSettingsRequest>) -> Answer<LogSettingsResponse> {
        let request = request.into_inner();
        let settings = if request.settings.is_empty() {
            logging::settings()
        } else {
            let settings = logging::update(&log_update(request)?)?;
            tracing::info!("log settings now: {settings:?}");
            settings
        };
        Ok(Response::new(log_settings_message(settings)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::VersionStats;

    #[test]
    fn statistics_json_becomes_the_message() {
        let json = serde_json::json!({
            "name": "m",
            "version": "2",
            "last_inference": 1700000000000u64,
            "inference_count": 5,
            "execution_count": 2,
            "inference_stats": {
                "success": {"count": 2, "ns": 20000},
                "fail": {"count": 1, "ns": 5},
                "queue": {"count": 2, "ns": 100},
                "compute_input": {"count": 2, "ns": 1},
                "compute_infer": {"count": 2, "ns": 2},
                "compute_output": {"count": 2, "ns": 3},
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0}
            },
            "response_stats": {},
            "batch_stats": [{"batch_size": 4, "compute_infer": {"count": 1, "ns": 9}}],
            "memory_usage": [],
            "a_field_smelt_adds_later": 1
        });
        let m = statistics_message(&json).unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("m", "2"));
        assert_eq!((m.inference_count, m.execution_count, m.last_inference), (5, 2, 1700000000000));
        let stats = m.inference_stats.unwrap();
        assert_eq!(stats.success.unwrap(), StatisticDuration { count: 2, ns: 20000 });
        assert_eq!(stats.fail.unwrap().count, 1);
        assert_eq!(m.batch_stats[0].batch_size, 4);
        assert_eq!(m.batch_stats[0].compute_infer.unwrap().ns, 9);
    }

    #[test]
    fn the_registrys_statistics_convert() {
        // Whatever the statistics module writes must read back as the message.
        let stats = VersionStats::default();
        let json = stats.snapshot().json("m", "1");
        let m = statistics_message(&json).unwrap();
        assert_eq!(m.name, "m");
        assert_eq!(m.inference_count, 0);
    }

    #[test]
    fn load_parameters_are_read() {
        let params = HashMap::from([
            (
                "config".to_string(),
                ModelRepositoryParameter { parameter_choice: Some(RepositoryParam::StringParam("{}".into())) },
            ),
            (
                "file:1/model.onnx".to_string(),
                ModelRepositoryParameter { parameter_choice: Some(RepositoryParam::BytesParam(vec![1, 2])) },
            ),
        ]);
        let o = load_override(params).unwrap();
        assert_eq!(o.config_json.as_deref(), Some("{}"));
        assert_eq!(o.files, vec![("1/model.onnx".to_string(), vec![1, 2])]);
        let bad = HashMap::from([(
            "config".to_string(),
            ModelRepositoryParameter { parameter_choice: Some(RepositoryParam::BoolParam(true)) },
        )]);
        assert!(load_override(bad).unwrap_err().message.contains("'config'"));
        assert!(check_repository_name("other").is_err());
        assert!(check_repository_name("").is_ok());
    }
}
