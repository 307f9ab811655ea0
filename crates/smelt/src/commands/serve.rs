//! `smelt serve`: a Triton-compatible inference server over a model repository.
//! Flag names and defaults are Triton's (`tritonserver --help`), so scripts and
//! deployments written for Triton work unchanged.

use anyhow::{anyhow, bail, Result};
use clap::ArgAction;
use smelt_server::{ModelControlMode, ServerOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ControlMode {
    /// Load every model at startup; refuse load/unload requests.
    None,
    /// Load every model at startup, then rescan the repositories every
    /// --repository-poll-secs: load added models, reload changed ones, unload
    /// removed ones; refuse load/unload requests.
    Poll,
    /// Load only the --load-model models at startup; allow load/unload requests.
    Explicit,
}

#[derive(clap::Args)]
pub struct Args {
    /// A model repository folder (<repo>/<model>/config.pbtxt and
    /// <repo>/<model>/<version>/model.onnx). Repeat for several; model names must
    /// be unique across them. Default: the bundled examples/model_repository.
    #[arg(long = "model-repository", value_name = "PATH")]
    model_repository: Vec<PathBuf>,
    /// Port of the HTTP (KServe v2) endpoint.
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// Port of the gRPC endpoint (Triton's inference service and grpc.health.v1).
    #[arg(long, default_value_t = 8001)]
    grpc_port: u16,
    /// Port of the Prometheus metrics endpoint (GET /metrics).
    #[arg(long, default_value_t = 8002)]
    metrics_port: u16,
    /// Address the metrics endpoint binds to (default: --http-address).
    #[arg(long)]
    metrics_address: Option<String>,
    /// A metrics setting <setting>=<value>: counter_latencies=true|false,
    /// summary_latencies=true|false, summary_quantiles=<q>:<error>,... Repeat
    /// for several.
    #[arg(long = "metrics-config", value_name = "SETTING")]
    metrics_config: Vec<String>,
    /// Milliseconds between two samples of the CPU metrics.
    #[arg(long, default_value_t = 2000)]
    metrics_interval_ms: u64,
    /// Report CPU utilization and memory (nv_cpu_*; Linux only).
    #[arg(long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    allow_cpu_metrics: bool,
    /// Address the HTTP endpoint binds to.
    #[arg(long, default_value = "0.0.0.0")]
    http_address: String,
    /// Address the gRPC endpoint binds to.
    #[arg(long, default_value = "0.0.0.0")]
    grpc_address: String,
    /// How models are loaded: none (all at startup), poll (all at startup, then
    /// follow the repositories on disk) or explicit (only --load-model at
    /// startup, then load/unload requests).
    #[arg(long, value_enum, default_value = "none")]
    model_control_mode: ControlMode,
    /// Seconds between two scans of the repositories with
    /// --model-control-mode=poll (at least 1).
    #[arg(long, default_value_t = 15)]
    repository_poll_secs: u64,
    /// With --model-control-mode=explicit: a model to load at startup. Repeat for
    /// several; '*' loads every model.
    #[arg(long = "load-model", value_name = "NAME")]
    load_model: Vec<String>,
    /// Serve only models whose config.pbtxt is complete: never fill inputs,
    /// outputs, max_batch_size or a missing config.pbtxt from the model.
    #[arg(long, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    strict_model_config: bool,
    /// Seconds to wait for requests in flight after SIGINT/SIGTERM before exiting.
    #[arg(long, default_value_t = 30)]
    exit_timeout_secs: u64,
    /// Verbose logging: 0 (info), 1 or more (debug). RUST_LOG overrides.
    #[arg(long, default_value_t = 0)]
    log_verbose: u32,
    /// Largest HTTP request body accepted, in bytes (also after decompression);
    /// larger requests get a 400 error.
    #[arg(long, default_value_t = 64 << 20)]
    http_max_input_size: usize,
    /// Serve HTTP.
    #[arg(long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    allow_http: bool,
    /// Serve gRPC on --grpc-address:--grpc-port.
    #[arg(long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    allow_grpc: bool,
    /// Serve Prometheus metrics on --metrics-port.
    #[arg(long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = ArgAction::Set)]
    allow_metrics: bool,
    /// CPU threads per model run (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The bundled example repository: beside the working directory when run from a
/// checkout, else where this binary was built from.
fn default_repository() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("examples/model_repository"),
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/model_repository")),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| anyhow!("no --model-repository given and the bundled examples/model_repository is not found"))
}

pub fn main(args: Args) -> Result<()> {
    smelt_server::init_logging(args.log_verbose);
    let repositories =
        if args.model_repository.is_empty() { vec![default_repository()?] } else { args.model_repository };
    if matches!(args.model_control_mode, ControlMode::Poll) && args.repository_poll_secs == 0 {
        bail!("--repository-poll-secs must be at least 1 with --model-control-mode=poll");
    }
    if args.http_max_input_size == 0 {
        bail!("--http-max-input-size must be at least 1 byte");
    }
    if args.metrics_interval_ms == 0 {
        bail!("--metrics-interval-ms must be at least 1");
    }
    let mut metrics = smelt_server::metrics::MetricsOptions {
        interval: Duration::from_millis(args.metrics_interval_ms),
        cpu_metrics: args.allow_cpu_metrics,
        address: args.metrics_address,
        ..Default::default()
    };
    for setting in &args.metrics_config {
        metrics.apply_setting(setting).map_err(|e| anyhow!(e))?;
    }
    let options = ServerOptions {
        repositories,
        http_address: args.http_address,
        http_port: args.http_port,
        grpc_address: args.grpc_address,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        allow_http: args.allow_http,
        allow_grpc: args.allow_grpc,
        allow_metrics: args.allow_metrics,
        metrics,
        control_mode: match args.model_control_mode {
            ControlMode::None => ModelControlMode::None,
            ControlMode::Poll => ModelControlMode::Poll,
            ControlMode::Explicit => ModelControlMode::Explicit,
        },
        repository_poll_secs: args.repository_poll_secs,
        load_models: args.load_model,
        strict_model_config: args.strict_model_config,
        exit_timeout: Duration::from_secs(args.exit_timeout_secs),
        http_max_input_size: args.http_max_input_size,
        threads: args.threads,
    };
    smelt_server::run(options).map_err(|e| anyhow!(e))
}
