//! Starting and stopping the server: the model registry, the HTTP listener, and a
//! graceful shutdown on SIGINT/SIGTERM.

use crate::http::{self, HttpState};
use crate::models::{ModelControlMode, ModelRegistry, RegistryOptions};
use crate::poll::RepositoryPoller;
use smelt_runtime::SessionOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Everything `smelt serve` configures, with Triton's defaults.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub repositories: Vec<PathBuf>,
    pub http_address: String,
    pub http_port: u16,
    pub grpc_address: String,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub allow_http: bool,
    pub allow_grpc: bool,
    pub allow_metrics: bool,
    /// What the metrics endpoint reports (`--metrics-config` and friends).
    pub metrics: crate::metrics::MetricsOptions,
    pub control_mode: ModelControlMode,
    pub repository_poll_secs: u64,
    pub load_models: Vec<String>,
    pub strict_model_config: bool,
    pub exit_timeout: Duration,
    pub http_max_input_size: usize,
    /// CPU threads per model run; `None`: one per core.
    pub threads: Option<usize>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            repositories: Vec::new(),
            http_address: "0.0.0.0".into(),
            http_port: 8000,
            grpc_address: "0.0.0.0".into(),
            grpc_port: 8001,
            metrics_port: 8002,
            allow_http: true,
            allow_grpc: true,
            allow_metrics: true,
            metrics: crate::metrics::MetricsOptions::default(),
            control_mode: ModelControlMode::None,
            repository_poll_secs: 15,
            load_models: Vec::new(),
            strict_model_config: false,
            exit_timeout: Duration::from_secs(30),
            http_max_input_size: 64 << 20,
            threads: None,
        }
    }
}

/// Installs the log output with `verbose` as the starting log_verbose_level
/// (see [`crate::logging`]). Idempotent.
pub fn init_logging(verbose: u32) {
    crate::logging::init(verbose);
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub fn run(options: ServerOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("smelt-serve")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(serve(options));
    // Blocking model runs still going after the exit timeout are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn announce_missing_subsystems(options: &ServerOptions) {
    if options.control_mode != ModelControlMode::Explicit && !options.load_models.is_empty() {
        tracing::warn!("--load-model is ignored unless --model-control-mode=explicit (every model is loaded)");
    }
}

async fn serve(options: ServerOptions) -> Result<(), String> {
    if options.repositories.is_empty() {
        return Err("no model repository given (--model-repository)".into());
    }
    announce_missing_subsystems(&options);
    let registry = Arc::new(ModelRegistry::new(RegistryOptions {
        repositories: options.repositories.clone(),
        strict_config: options.strict_model_config,
        control_mode: options.control_mode,
        session: SessionOptions { threads: options.threads, ..SessionOptions::default() },
    }));
    let state = Arc::new(HttpState {
        registry: registry.clone(),
        shm: Arc::new(crate::shm::SharedMemoryRegistry::new()),
        max_input_size: options.http_max_input_size,
        ready: false.into(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = match options.allow_http {
        true => Some(start_http(&options, state.clone(), stop_rx).await?),
        false => {
            tracing::info!("HTTP endpoint disabled (--allow-http=false)");
            None
        }
    };
    if options.allow_metrics {
        let metrics = crate::metrics::Metrics::new(registry.clone(), options.metrics.clone());
        metrics.add_source(Arc::new(crate::gpu::GpuMetrics { devices: registry.gpu_devices() }));
        let at = options.metrics.address.clone().unwrap_or_else(|| options.http_address.clone());
        crate::metrics::listen(metrics, &at, options.metrics_port, stop_tx.subscribe()).await?;
    }

    let grpc_state = Arc::new(crate::grpc::GrpcState {
        registry: registry.clone(),
        shm: state.shm.clone(),
        ready: false.into(),
        stop: stop_tx.subscribe(),
    });
    let grpc = match options.allow_grpc {
        true => Some(crate::grpc::start(&options.grpc_address, options.grpc_port, grpc_state.clone()).await?),
        false => None,
    };

    let loader = registry.clone();
    let load_models = options.load_models.clone();
    let poll = options.control_mode == ModelControlMode::Poll;
    let (poll_repositories, poll_stop) = (options.repositories.clone(), stop_tx.subscribe());
    let startup = tokio::task::spawn_blocking(move || {
        // Poll mode: what is on disk is recorded before loading, so a change made
        // during the load is seen by the first poll.
        let poller = poll.then(|| RepositoryPoller::new(loader.clone(), poll_repositories));
        loader.load_at_startup(&load_models).map(|()| poller)
    });
    tokio::select! {
        loaded = startup => {
            let poller = loaded.map_err(|e| format!("loading models failed: {e}"))??;
            if let Some(poller) = poller {
                let every = Duration::from_secs(options.repository_poll_secs.max(1));
                tracing::info!("polling the model repositories for changes every {} s", every.as_secs());
                tokio::spawn(poller.run(every, poll_stop));
            }
            state.ready.store(true, Ordering::SeqCst);
            grpc_state.ready.store(true, Ordering::SeqCst);
            tracing::info!("server is ready");
            wait_for_signal().await;
        }
        () = wait_for_signal() => {}
    }
    tracing::info!(
        "shutting down: no new connections; waiting up to {} s for requests in flight",
        options.exit_timeout.as_secs()
    );
    state.ready.store(false, Ordering::SeqCst);
    grpc_state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + options.exit_timeout;
    if let Some(server) = server {
        match tokio::time::timeout_at(deadline, server).await {
            Ok(Ok(Ok(()))) => tracing::info!("all requests finished; exiting"),
            Ok(Ok(Err(e))) => return Err(format!("HTTP server failed: {e}")),
            Ok(Err(e)) => return Err(format!("HTTP server task failed: {e}")),
            Err(_) => tracing::warn!("--exit-timeout-secs reached with requests still in flight; exiting anyway"),
        }
    }
    if let Some(grpc) = grpc {
        grpc.finish(deadline).await;
    }
    Ok(())
}

/// Binds the HTTP listener and serves until `stop` turns true; the handle
/// resolves once the connections in flight have finished.
async fn start_http(
    options: &ServerOptions,
    state: Arc<HttpState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, String> {
    let address: SocketAddr = format!("{}:{}", options.http_address, options.http_port)
        .parse()
        .map_err(|e| format!("bad --http-address/--http-port '{}:{}': {e}", options.http_address, options.http_port))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen for HTTP on {address}: {e}"))?;
    let app = http::router(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!("HTTP endpoint listening on {address}");
    Ok(server)
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
