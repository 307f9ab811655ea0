//! The live state of every model: which versions are loaded and ready, which
//! failed and why; loading, reloading and unloading them.

use crate::config::{self, ConfigError};
use crate::error::{Result, ServerError};
use crate::gpu::{GpuDevices, Placement};
use crate::infer::ServedVersion;
use crate::proto::inference::model_instance_group::Kind;
use crate::proto::inference::ModelConfig;
use crate::repository::{self, ModelIo, ModelSource};
use serde_json::Value;
use smelt_runtime::gpu::GpuContext;
use smelt_runtime::{GpuBackend, Session, SessionOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// How models get loaded (`--model-control-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelControlMode {
    /// Every model at startup; no load/unload requests.
    None,
    /// Every model at startup, then the repositories are rescanned every
    /// `--repository-poll-secs` and models follow them (see [`crate::poll`]); no
    /// load/unload requests.
    Poll,
    /// Only `--load-model` models at startup; load/unload requests allowed.
    Explicit,
}

/// The device a model's versions are loaded on.
enum Device {
    Cpu,
    /// `auto`: chosen for KIND_AUTO, so a model the GPU backend cannot compile
    /// falls back to the CPU.
    Gpu {
        ctx: Arc<GpuContext>,
        auto: bool,
    },
}

/// One version to load: the model, its configuration file, the device, and
/// the version's model file.
struct VersionTarget<'a> {
    name: &'a str,
    file: &'a str,
    device: &'a Device,
    version: i64,
    path: &'a Path,
}

/// The state of one version, as the repository index reports it.
#[derive(Clone)]
pub enum VersionState {
    Ready(Arc<ServedVersion>),
    Loading,
    Unavailable(String),
}

impl VersionState {
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Ready(_) => "READY",
            VersionState::Loading => "LOADING",
            VersionState::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

#[derive(Clone, Default)]
struct ModelEntry {
    versions: BTreeMap<i64, VersionState>,
    /// Why the model as a whole is not served (bad configuration, no version).
    failure: Option<String>,
    /// A load is in progress.
    loading: bool,
}

/// One row of the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<String>,
    pub state: Option<String>,
    pub reason: Option<String>,
}

/// What a load request may replace: the configuration, and model files.
#[derive(Clone, Debug, Default)]
pub struct LoadOverride {
    /// Triton's JSON for a ModelConfig, used instead of config.pbtxt.
    pub config_json: Option<String>,
    /// (path inside the model folder such as "1/model.onnx", contents).
    pub files: Vec<(String, Vec<u8>)>,
}

pub struct RegistryOptions {
    pub repositories: Vec<PathBuf>,
    pub strict_config: bool,
    pub control_mode: ModelControlMode,
    pub session: SessionOptions,
}

/// Every model the server knows, by name.
pub struct ModelRegistry {
    options: RegistryOptions,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    /// Serialises loads and unloads; requests keep being served meanwhile.
    changes: std::sync::Mutex<()>,
    /// Where load requests with file contents write their model folders.
    scratch: PathBuf,
    scratch_counter: AtomicU64,
    /// The GPU contexts of KIND_GPU models, one per adapter.
    gpus: Arc<GpuDevices>,
}

impl Drop for ModelRegistry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn lock_error<T>(_: T) -> ServerError {
    ServerError::internal("the model table's lock was poisoned by a panic")
}

impl ModelRegistry {
    pub fn new(options: RegistryOptions) -> ModelRegistry {
        let scratch = std::env::temp_dir().join(format!("smelt-serve-{}", std::process::id()));
        ModelRegistry {
            options,
            models: RwLock::new(BTreeMap::new()),
            changes: std::sync::Mutex::new(()),
            scratch,
            scratch_counter: AtomicU64::new(0),
            gpus: Arc::new(GpuDevices::default()),
        }
    }

    /// The GPU contexts models run on (for the metrics).
    pub fn gpu_devices(&self) -> Arc<GpuDevices> {
        self.gpus.clone()
    }

    pub fn control_mode(&self) -> ModelControlMode {
        self.options.control_mode
    }

    /// Loads what the control mode loads at startup. A model that fails is logged
    /// and left UNAVAILABLE; only an unreadable repository is an error.
    pub fn load_at_startup(&self, load_models: &[String]) -> std::result::Result<(), String> {
        let scan = repository::scan(&self.options.repositories)?;
        let names: Vec<String> = match self.options.control_mode {
            ModelControlMode::None | ModelControlMode::Poll => {
                scan.models.keys().chain(scan.duplicates.keys()).cloned().collect()
            }
            ModelControlMode::Explicit => {
                if load_models.iter().any(|m| m == "*") {
                    scan.models.keys().chain(scan.duplicates.keys()).cloned().collect()
                } else {
                    load_models.to_vec()
                }
            }
        };
        for name in names {
            if let Err(e) = self.load_blocking(&name, LoadOverride::default()) {
                tracing::error!("{e}");
            }
        }
        Ok(())
    }

    /// Whether loading may be requested over the protocol.
    pub fn check_explicit(&self) -> Result<()> {
        if self.options.control_mode == ModelControlMode::Explicit {
            Ok(())
        } else {
            Err(ServerError::unavailable(
                "explicit model load / unload is not allowed unless the server runs with --model-control-mode=explicit",
            ))
        }
    }

    /// Loads (or reloads) every version the model's policy selects. Blocking: call
    /// it off the async threads. Versions already serving keep serving until the
    /// new ones are ready; a failed reload leaves them in place.
    pub fn load_blocking(&self, name: &str, overrides: LoadOverride) -> Result<()> {
        let _change = self.changes.lock().map_err(lock_error)?;
        let start = Instant::now();
        let source = if overrides.files.is_empty() {
            self.find_source(name)?
        } else if overrides.config_json.is_none() {
            return Err(ServerError::invalid(format!(
                "failed to load '{name}': model files in a load request need the 'config' parameter too"
            )));
        } else {
            self.write_override_files(name, &overrides.files)?
        };
        self.set_loading(name, true)?;
        let outcome = self.load_versions(&source, overrides.config_json.as_deref());
        let mut models = self.models.write().map_err(lock_error)?;
        let entry = models.entry(name.to_string()).or_default();
        entry.loading = false;
        match outcome {
            Ok(versions) => {
                let ready: Vec<i64> =
                    versions.iter().filter(|(_, s)| matches!(s, VersionState::Ready(_))).map(|(v, _)| *v).collect();
                if ready.is_empty() {
                    let reasons: Vec<String> = versions
                        .iter()
                        .filter_map(|(v, s)| match s {
                            VersionState::Unavailable(r) => Some(format!("version {v}: {r}")),
                            _ => None,
                        })
                        .collect();
                    let reason = format!("failed to load '{name}': {}", reasons.join("; "));
                    if !entry.versions.values().any(|s| matches!(s, VersionState::Ready(_))) {
                        entry.versions = versions;
                        entry.failure = None;
                    }
                    return Err(ServerError::invalid(reason));
                }
                for (v, state) in &versions {
                    if let VersionState::Unavailable(reason) = state {
                        tracing::error!("model '{name}' version {v} is unavailable: {reason}");
                    }
                }
                entry.versions = versions;
                entry.failure = None;
                tracing::info!(
                    "model '{name}' is ready (versions {ready:?}) after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                if !entry.versions.values().any(|s| matches!(s, VersionState::Ready(_))) {
                    entry.versions.clear();
                    entry.failure = Some(reason.clone());
                }
                Err(ServerError::invalid(format!("failed to load '{name}': {reason}")))
            }
        }
    }

    /// Unloads every version. Requests already running finish on the versions they
    /// hold; new requests see the model as unavailable.
    pub fn unload(&self, name: &str) -> Result<()> {
        let _change = self.changes.lock().map_err(lock_error)?;
        let mut models = self.models.write().map_err(lock_error)?;
        let known = models.contains_key(name)
            || repository::scan(&self.options.repositories).is_ok_and(|s| s.models.contains_key(name));
        if !known {
            return Err(ServerError::invalid(format!(
                "failed to unload '{name}': no model of that name is loaded or in the model repositories"
            )));
        }
        let entry = models.entry(name.to_string()).or_default();
        for state in entry.versions.values_mut() {
            *state = VersionState::Unavailable("unloaded".to_string());
        }
        entry.failure = None;
        tracing::info!("model '{name}' unloaded");
        Ok(())
    }

    /// Forgets a model whose folder left the repositories: requests already running
    /// finish on the versions they hold; new requests find no such model.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _change = self.changes.lock().map_err(lock_error)?;
        let mut models = self.models.write().map_err(lock_error)?;
        if models.remove(name).is_some() {
            tracing::info!("model '{name}' unloaded and removed");
        }
        Ok(())
    }

    fn set_loading(&self, name: &str, loading: bool) -> Result<()> {
        let mut models = self.models.write().map_err(lock_error)?;
        models.entry(name.to_string()).or_default().loading = loading;
        Ok(())
    }

    fn find_source(&self, name: &str) -> Result<ModelSource> {
        let scan = repository::scan(&self.options.repositories).map_err(ServerError::internal)?;
        if let Some(dirs) = scan.duplicates.get(name) {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            let reason = format!("the model name '{name}' is in more than one repository: {}", dirs.join(", "));
            let mut models = self.models.write().map_err(lock_error)?;
            let entry = models.entry(name.to_string()).or_default();
            entry.versions.clear();
            entry.failure = Some(reason.clone());
            return Err(ServerError::invalid(format!("failed to load '{name}': {reason}")));
        }
        scan.models.get(name).cloned().ok_or_else(|| {
            let repos: Vec<String> = self.options.repositories.iter().map(|r| r.display().to_string()).collect();
            ServerError::invalid(format!(
                "failed to load '{name}': no model folder named '{name}' in the model repositories ({})",
                repos.join(", ")
            ))
        })
    }

    /// Writes a load request's files into a fresh model folder of their own.
    fn write_override_files(&self, name: &str, files: &[(String, Vec<u8>)]) -> Result<ModelSource> {
        let n = self.scratch_counter.fetch_add(1, Ordering::Relaxed);
        let repository = self.scratch.join(format!("load-{n}"));
        let dir = repository.join(name);
        for (path, contents) in files {
            let relative = Path::new(path);
            let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
            if !plain || path.is_empty() {
                return Err(ServerError::invalid(format!(
                    "failed to load '{name}': file parameter 'file:{path}' must be a relative path inside the model \
                     folder"
                )));
            }
            let target = dir.join(relative);
            let written = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&target, contents));
            written.map_err(|e| {
                ServerError::internal(format!("failed to load '{name}': cannot write {}: {e}", target.display()))
            })?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServerError::internal(format!("cannot create {}: {e}", dir.display())))?;
        Ok(ModelSource { name: name.to_string(), dir, repository })
    }

    /// Reads, completes and checks the configuration, then loads each selected
    /// version. The error is for the model as a whole; per-version failures are
    /// UNAVAILABLE entries of the map.
    fn load_versions(
        &self,
        source: &ModelSource,
        config_json: Option<&str>,
    ) -> std::result::Result<BTreeMap<i64, VersionState>, ConfigError> {
        let name = &source.name;
        let strict = self.options.strict_config;
        let (mut config, file) = match config_json {
            Some(json) => (
                config::parse_json(name, "the load request's 'config' parameter", json)?,
                "the load request's 'config' parameter".to_string(),
            ),
            None => (repository::read_config(source, strict)?, source.config_path().display().to_string()),
        };
        repository::complete_static(&mut config, name, &file, strict)?;
        let device = self.open_device(&mut config, name, &file)?;
        let on_disk = repository::version_dirs(&source.dir).map_err(|e| ConfigError::new(name, &file, None, e))?;
        let available: BTreeSet<i64> = on_disk.keys().copied().collect();
        let (selected, missing) = repository::select_versions(config.version_policy.as_ref(), &available);
        let mut versions = BTreeMap::new();
        for v in missing {
            versions.insert(
                v,
                VersionState::Unavailable(format!("version folder {v}/ not found in {}", source.dir.display())),
            );
        }
        if selected.is_empty() {
            return Err(ConfigError::new(
                name,
                &file,
                Some("version_policy".into()),
                format!("selects no version: {} has no version folder such as 1/ that it names", source.dir.display()),
            ));
        }
        // The highest version completes the configuration; every version is then
        // checked against the completed one.
        let mut completed: Option<Arc<ModelConfig>> = None;
        for v in selected {
            let path = on_disk[&v].join(&config.default_model_filename);
            let target = VersionTarget { name, file: &file, device: &device, version: v, path: &path };
            let state = match self.load_version(&target, &mut config, &mut completed) {
                Ok(served) => VersionState::Ready(Arc::new(served)),
                Err(reason) => VersionState::Unavailable(reason),
            };
            versions.insert(v, state);
        }
        Ok(versions)
    }

    fn load_version(
        &self,
        target: &VersionTarget,
        config: &mut ModelConfig,
        completed: &mut Option<Arc<ModelConfig>>,
    ) -> std::result::Result<ServedVersion, String> {
        let VersionTarget { name, file, device, version, path } = *target;
        if !path.is_file() {
            return Err(format!("model file {} not found", path.display()));
        }
        let start = Instant::now();
        let options = &self.options.session;
        let cpu = || Session::load(path, options).map_err(|e| format!("{}: {e}", path.display()));
        let (session, gpu) = match device {
            Device::Cpu => (cpu()?, None),
            Device::Gpu { ctx, auto } => match Session::load_on(path, &GpuBackend::on_context(ctx.clone()), options) {
                Ok(session) => (session, Some(ctx.clone())),
                Err(e) if *auto => {
                    tracing::warn!(
                        "model '{name}' (KIND_AUTO) cannot run on gpu:{} ({e}); running it on the CPU",
                        ctx.summary.ordinal
                    );
                    config.instance_group.iter_mut().for_each(|g| {
                        g.kind = Kind::Cpu as i32;
                        g.gpus.clear();
                    });
                    (cpu()?, None)
                }
                Err(e) => {
                    return Err(format!("{} on gpu:{} ({}): {e}", path.display(), ctx.summary.ordinal, ctx.name()))
                }
            },
        };
        let io = ModelIo::from_session(&session);
        let config = match completed {
            Some(done) => {
                let mut check = (**done).clone();
                repository::complete_from_model(&mut check, &io, name, file, true).map_err(|e| e.to_string())?;
                done.clone()
            }
            None => {
                repository::complete_from_model(config, &io, name, file, self.options.strict_config)
                    .map_err(|e| e.to_string())?;
                tracing::debug!("model '{name}' configuration:\n{}", config::to_text(config));
                let done = Arc::new(config.clone());
                *completed = Some(done.clone());
                done
            }
        };
        let mut served = ServedVersion::new(name, version, config, session, gpu)?;
        // Warmup runs before the version is READY; a failing sample fails the load.
        let model_dir = path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        crate::warmup::run(&served, model_dir)?;
        served.load_duration = start.elapsed();
        tracing::info!(
            "loaded model '{name}' version {version} from {} in {:.1} s",
            path.display(),
            start.elapsed().as_secs_f64()
        );
        Ok(served)
    }

    /// The device the instance groups name, opened (a shared context per GPU
    /// adapter). A GPU that cannot be opened fails the model, naming the field
    /// that chose it.
    fn open_device(
        &self,
        config: &mut ModelConfig,
        name: &str,
        file: &str,
    ) -> std::result::Result<Device, ConfigError> {
        let auto = config.instance_group.iter().all(|g| g.kind == Kind::Auto as i32);
        match crate::gpu::placement(config, name, file, crate::gpu::usable_gpu)? {
            Placement::Cpu => Ok(Device::Cpu),
            Placement::Gpu { ordinal, field } => {
                let settings = crate::gpu::gpu_config(config, name, file, |k| std::env::var(k).ok())?;
                let ctx = self.gpus.context(ordinal, settings, name).map_err(|e| {
                    ConfigError::new(name, file, Some(field), format!("cannot run the model on a GPU: {e}"))
                })?;
                for group in config.instance_group.iter_mut().filter(|g| g.kind == Kind::Gpu as i32) {
                    group.gpus = vec![ctx.summary.ordinal as i32];
                }
                Ok(Device::Gpu { ctx, auto })
            }
        }
    }

    /// The ready version a request names (`version` empty: the highest ready one).
    pub fn ready_version(&self, name: &str, version: &str) -> Result<Arc<ServedVersion>> {
        let models = self.models.read().map_err(lock_error)?;
        let entry = models
            .get(name)
            .filter(|e| !e.versions.is_empty() || e.failure.is_some())
            .ok_or_else(|| ServerError::not_found(format!("Request for unknown model: '{name}' is not found")))?;
        if version.is_empty() {
            return entry
                .versions
                .values()
                .rev()
                .find_map(|s| match s {
                    VersionState::Ready(v) => Some(v.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    let why = entry.failure.clone().or_else(|| {
                        entry.versions.values().rev().find_map(|s| match s {
                            VersionState::Unavailable(r) => Some(r.clone()),
                            _ => None,
                        })
                    });
                    ServerError::unavailable(format!(
                        "Request for unknown model: '{name}' has no available versions{}",
                        why.map(|w| format!(" ({w})")).unwrap_or_default()
                    ))
                });
        }
        let number: i64 = version
            .parse()
            .map_err(|_| ServerError::invalid(format!("'{version}' is not a model version number (model '{name}')")))?;
        match entry.versions.get(&number) {
            Some(VersionState::Ready(v)) => Ok(v.clone()),
            Some(state) => Err(ServerError::unavailable(format!(
                "Request for unknown model: '{name}' version {number} is not at ready state ({})",
                match state {
                    VersionState::Unavailable(r) => r.as_str(),
                    _ => "loading",
                }
            ))),
            None => Err(ServerError::not_found(format!(
                "Request for unknown model: '{name}' version {number} is not found"
            ))),
        }
    }

    /// The ready version numbers of a model, in ascending order.
    pub fn ready_versions(&self, name: &str) -> Vec<i64> {
        let Ok(models) = self.models.read() else { return Vec::new() };
        models.get(name).map_or_else(Vec::new, |e| {
            e.versions.iter().filter(|(_, s)| matches!(s, VersionState::Ready(_))).map(|(v, _)| *v).collect()
        })
    }

    /// Every ready version of every model (or of one), for statistics.
    pub fn ready_set(&self, name: Option<&str>) -> Vec<Arc<ServedVersion>> {
        let Ok(models) = self.models.read() else { return Vec::new() };
        models
            .iter()
            .filter(|(n, _)| name.is_none_or(|want| want == n.as_str()))
            .flat_map(|(_, e)| e.versions.values())
            .filter_map(|s| match s {
                VersionState::Ready(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// Statistics entries (Triton's `model_stats`), for one model and version or all.
    pub fn statistics(&self, name: Option<&str>, version: Option<&str>) -> Result<Vec<Value>> {
        let versions = match (name, version) {
            (Some(n), Some(v)) => vec![self.ready_version(n, v)?],
            (Some(n), None) => {
                let found = self.ready_set(Some(n));
                if found.is_empty() {
                    self.ready_version(n, "")?;
                }
                found
            }
            (None, _) => self.ready_set(None),
        };
        Ok(versions.iter().map(|v| v.stats.snapshot().json(&v.model, &v.version.to_string())).collect())
    }

    /// The repository index: every model in the repositories or known to the
    /// server, with one row per version it has a state for.
    pub fn index(&self, ready_only: bool) -> Result<Vec<IndexEntry>> {
        let scan = repository::scan(&self.options.repositories).map_err(ServerError::internal)?;
        let models = self.models.read().map_err(lock_error)?;
        let mut names: BTreeSet<&str> = scan.models.keys().map(String::as_str).collect();
        names.extend(scan.duplicates.keys().map(String::as_str));
        names.extend(models.keys().map(String::as_str));
        let mut rows = Vec::new();
        for name in names {
            let entry = models.get(name);
            let row = |version: Option<String>, state: Option<&str>, reason: Option<String>| IndexEntry {
                name: name.to_string(),
                version,
                state: state.map(str::to_string),
                reason,
            };
            match entry {
                Some(e) if e.loading && e.versions.is_empty() => rows.push(row(None, Some("LOADING"), None)),
                Some(e) if !e.versions.is_empty() => {
                    for (v, state) in &e.versions {
                        let reason = match state {
                            VersionState::Unavailable(r) => Some(r.clone()),
                            _ => None,
                        };
                        rows.push(row(Some(v.to_string()), Some(state.name()), reason));
                    }
                }
                Some(e) if e.failure.is_some() => rows.push(row(None, Some("UNAVAILABLE"), e.failure.clone())),
                _ => rows.push(row(None, None, None)),
            }
        }
        if ready_only {
            rows.retain(|r| r.state.as_deref() == Some("READY"));
        }
        Ok(rows)
    }

    /// Whether every model loaded at startup or since is in a settled state, for
    /// the readiness probe.
    pub fn any_loading(&self) -> bool {
        self.models.read().map(|m| m.values().any(|e| e.loading)).unwrap_or(false)
    }
}
