//! Models on a GPU: which device a model's `instance_group`s name, the GPU
//! settings its config.pbtxt `parameters` give, the GPU contexts the server has
//! open (one per adapter, shared by every model on it), and their metrics.
//!
//! Decisions, as the README states them for users:
//! - `KIND_GPU` with `gpus: [N]` runs on adapter `gpu:N` as `smelt devices`
//!   numbers them; without `gpus`, on the most capable adapter (a real GPU before
//!   a CPU-type one such as lavapipe).
//! - A model runs on one device: every instance group must name the same one
//!   (`count`s add up). Groups on different devices (`KIND_CPU` beside
//!   `KIND_GPU`, or `gpus: [0, 1]`) are refused, naming the field.
//! - `KIND_AUTO` is a GPU only when an adapter that is not a CPU-type adapter
//!   exists (a CPU Vulkan driver is slower than Smelt's CPU backend); otherwise
//!   the CPU. The completed configuration reports the kind chosen.
//! - One context per adapter, so models share its buffer pool. The first model
//!   that opens an adapter's context sets its pool settings; a later model asking
//!   for others is served with the existing ones and a warning is logged. A
//!   context whose device was lost is never handed out again: the next load of a
//!   model on that adapter opens a fresh one.

use crate::config::ConfigError;
use crate::metrics::{Family, MetricKind, MetricSource};
use crate::proto::inference::{model_instance_group::Kind, ModelConfig};
use smelt_runtime::gpu::{GpuConfig, GpuContext, PoolStats};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where a model's instances run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    /// Adapter `gpu:N`, or the most capable one when `None`. `field` names the
    /// configuration field that chose it, for error messages.
    Gpu {
        ordinal: Option<usize>,
        field: String,
    },
}

/// What one instance group asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    Cpu,
    Gpu(Option<usize>),
    Auto,
}

/// The device the instance groups of a completed configuration name. `KIND_AUTO`
/// becomes a GPU when `usable_gpu` gives one (called only then); the groups'
/// kinds are rewritten to the device chosen, as Triton reports them.
pub fn placement(
    config: &mut ModelConfig,
    model: &str,
    file: &str,
    usable_gpu: impl FnOnce() -> Option<usize>,
) -> Result<Placement, ConfigError> {
    let err = |field: String, message: String| ConfigError::new(model, file, Some(field), message);
    let mut wanted = Vec::new();
    for (i, group) in config.instance_group.iter().enumerate() {
        let w = match Kind::try_from(group.kind) {
            Ok(Kind::Cpu | Kind::Model) => {
                if !group.gpus.is_empty() {
                    return Err(err(
                        format!("instance_group[{i}].gpus"),
                        "is given for a group that is not KIND_GPU; remove it or use kind: KIND_GPU".into(),
                    ));
                }
                Wanted::Cpu
            }
            Ok(Kind::Auto) if group.gpus.is_empty() => Wanted::Auto,
            Ok(Kind::Gpu | Kind::Auto) => match group.gpus.as_slice() {
                [] => Wanted::Gpu(None),
                [n] if *n >= 0 => Wanted::Gpu(Some(*n as usize)),
                [n] => {
                    return Err(err(
                        format!("instance_group[{i}].gpus"),
                        format!("holds {n}; a GPU is numbered from 0 as `smelt devices` lists them"),
                    ))
                }
                many => {
                    return Err(err(
                        format!("instance_group[{i}].gpus"),
                        format!(
                            "lists {} GPUs {many:?}; Smelt runs a model on one device: list one GPU, or serve a copy \
                             of the model per GPU",
                            many.len()
                        ),
                    ))
                }
            },
            Err(_) => return Err(err(format!("instance_group[{i}].kind"), format!("unknown kind {}", group.kind))),
        };
        wanted.push((i, w));
    }
    // Every explicit group must agree; KIND_AUTO groups follow them.
    let explicit: Vec<&(usize, Wanted)> = wanted.iter().filter(|(_, w)| *w != Wanted::Auto).collect();
    if let Some((first_index, first)) = explicit.first() {
        if let Some((i, other)) = explicit.iter().find(|(_, w)| w != first) {
            let describe = |w: &Wanted| match w {
                Wanted::Cpu => "KIND_CPU".to_string(),
                Wanted::Gpu(None) => "KIND_GPU".to_string(),
                Wanted::Gpu(Some(n)) => format!("KIND_GPU on gpu {n}"),
                Wanted::Auto => "KIND_AUTO".to_string(),
            };
            let field = match (first, other) {
                (Wanted::Gpu(_), Wanted::Gpu(_)) => format!("instance_group[{i}].gpus"),
                _ => format!("instance_group[{i}].kind"),
            };
            return Err(err(
                field,
                format!(
                    "is {} but instance_group[{first_index}] is {}; Smelt runs all of a model's instances on one \
                     device, so every instance group must name the same one",
                    describe(other),
                    describe(first)
                ),
            ));
        }
    }
    let (chosen, field) = match explicit.first() {
        Some((i, Wanted::Gpu(n))) => {
            let field = if config.instance_group[*i].gpus.is_empty() { "kind" } else { "gpus" };
            (Wanted::Gpu(*n), format!("instance_group[{i}].{field}"))
        }
        Some((i, _)) => (Wanted::Cpu, format!("instance_group[{i}].kind")),
        None => match usable_gpu() {
            Some(n) => (Wanted::Gpu(Some(n)), "instance_group[0].kind".to_string()),
            None => (Wanted::Cpu, "instance_group[0].kind".to_string()),
        },
    };
    let kind = if matches!(chosen, Wanted::Gpu(_)) { Kind::Gpu } else { Kind::Cpu };
    for group in &mut config.instance_group {
        if Kind::try_from(group.kind) != Ok(Kind::Model) {
            group.kind = kind as i32;
        }
    }
    Ok(match chosen {
        Wanted::Gpu(ordinal) => Placement::Gpu { ordinal, field },
        _ => Placement::Cpu,
    })
}

/// The first adapter that is a real GPU (not a CPU-type one such as lavapipe or
/// llvmpipe): where `KIND_AUTO` models go.
pub fn usable_gpu() -> Option<usize> {
    let adapters = smelt_runtime::gpu::list_adapters().ok()?;
    adapters.iter().find(|a| a.device_type != "Cpu").map(|a| a.ordinal)
}

/// config.pbtxt `parameters` that set the GPU context: (Smelt's name, the
/// reference Metal backend's name if it has one, the [`GpuConfig::set`] key).
pub const GPU_PARAMETERS: [(&str, Option<&str>, &str); 5] = [
    ("gpu_pool_max_bytes", Some("MPS_MAX_POOL_SIZE"), "pool_max_bytes"),
    ("gpu_buffer_max_age_secs", Some("MPS_MAX_BUFFER_AGE"), "buffer_max_age_secs"),
    ("gpu_verbose", Some("MPS_VERBOSE"), "verbose"),
    ("gpu_transfer", None, "transfer"),
    ("gpu_cpu_ops", None, "cpu_ops"),
];

/// The GPU settings a model asks for: the environment's (`SMELT_GPU_*`, `MPS_*`),
/// overridden by the configuration's `parameters` (Smelt's name wins over its
/// alias). A malformed value is an error naming the parameter; so is an unknown
/// `gpu_*` parameter. Other parameters are left to whoever reads them.
pub fn gpu_config(
    config: &ModelConfig,
    model: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<GpuConfig, ConfigError> {
    let mut gpu = GpuConfig::from_lookup(env).map_err(|e| ConfigError::new(model, file, None, e.to_string()))?;
    for key in config.parameters.keys() {
        let known = GPU_PARAMETERS.iter().any(|(name, alias, _)| key == name || Some(key.as_str()) == *alias);
        if key.starts_with("gpu_") && !known {
            let names: Vec<&str> = GPU_PARAMETERS.iter().flat_map(|(n, a, _)| std::iter::once(*n).chain(*a)).collect();
            return Err(ConfigError::new(
                model,
                file,
                Some(format!("parameters.{key}")),
                format!("is not a GPU setting Smelt knows (known: {})", names.join(", ")),
            ));
        }
    }
    for (name, alias, setting) in GPU_PARAMETERS {
        let given =
            std::iter::once(name).chain(alias).find_map(|k| config.parameters.get(k).map(|p| (k, &p.string_value)));
        if let Some((key, value)) = given {
            gpu.set(setting, value)
                .map_err(|message| ConfigError::new(model, file, Some(format!("parameters.{key}")), message))?;
        }
    }
    Ok(gpu)
}

/// A label value that names one adapter across restarts (as long as the
/// adapters enumerate in the same order): `gpu<N>-<backend>-<name>`.
pub fn gpu_uuid(ctx: &GpuContext) -> String {
    let name: String = ctx
        .summary
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let name = name.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    format!("gpu{}-{}-{name}", ctx.summary.ordinal, ctx.summary.backend)
}

/// The GPU contexts the server has open, one per adapter.
#[derive(Default)]
pub struct GpuDevices {
    state: Mutex<DevicesState>,
}

#[derive(Default)]
struct DevicesState {
    by_ordinal: BTreeMap<usize, Arc<GpuContext>>,
    /// The adapter `KIND_GPU` without `gpus` resolved to.
    best: Option<usize>,
}

impl GpuDevices {
    /// The open, not lost context of adapter `ordinal` (the best one when `None`),
    /// opened with `config` if there is none. The error is the adapter layer's
    /// (no adapter, no such number, device refused).
    pub fn context(&self, ordinal: Option<usize>, config: GpuConfig, model: &str) -> Result<Arc<GpuContext>, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = ordinal.or(state.best);
        if let Some(n) = key {
            if let Some(ctx) = state.by_ordinal.get(&n) {
                if !ctx.is_lost() {
                    if ctx.config != config {
                        tracing::warn!(
                            "model '{model}' asks for GPU settings {config:?} but gpu:{n} was opened by an earlier \
                             model with {:?}; an adapter has one buffer pool, which keeps the first settings",
                            ctx.config
                        );
                    }
                    return Ok(ctx.clone());
                }
                tracing::warn!("gpu:{n} was lost; opening a fresh device for model '{model}'");
                state.by_ordinal.remove(&n);
            }
        }
        let ctx = GpuContext::new(key, config).map_err(|e| e.to_string())?;
        let n = ctx.summary.ordinal;
        if ordinal.is_none() {
            state.best = Some(n);
        }
        state.by_ordinal.insert(n, ctx.clone());
        tracing::info!("opened gpu:{n} '{}' ({}) for model '{model}'", ctx.name(), ctx.summary.backend);
        Ok(ctx)
    }

    /// Every open context that is not lost.
    pub fn open(&self) -> Vec<Arc<GpuContext>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.by_ordinal.values().filter(|c| !c.is_lost()).cloned().collect()
    }
}

/// The GPU families of `/metrics`: Triton's `nv_gpu_memory_*` and Smelt's pool
/// gauges and counters, one series per open adapter, labelled `gpu_uuid`.
///
/// `nv_gpu_utilization` is left out: wgpu offers no way to read how busy an
/// adapter is, and a figure made up from Smelt's own dispatch times would not
/// be what Triton's (NVML's) means.
pub struct GpuMetrics {
    pub devices: Arc<GpuDevices>,
}

impl MetricSource for GpuMetrics {
    fn families(&self) -> Vec<Family> {
        let open = self.devices.open();
        if open.is_empty() {
            return Vec::new();
        }
        type Labels = Vec<(String, String)>;
        let rows: Vec<(Labels, &GpuContext, PoolStats)> =
            open.iter().map(|c| (vec![("gpu_uuid".to_string(), gpu_uuid(c))], c.as_ref(), c.pool_stats())).collect();
        type Value = fn(&GpuContext, &PoolStats) -> f64;
        let families: [(&str, &str, MetricKind, Value); 10] = [
            (
                "nv_gpu_memory_total_bytes",
                "GPU total memory, in bytes (0: wgpu does not report an adapter's memory size)",
                MetricKind::Gauge,
                |_, _| 0.0,
            ),
            (
                "nv_gpu_memory_used_bytes",
                "GPU used memory, in bytes: what Smelt holds on the adapter (weights and every pool buffer)",
                MetricKind::Gauge,
                |c, _| c.memory_in_use() as f64,
            ),
            ("smelt_gpu_weight_bytes", "Bytes of model weights uploaded to the GPU", MetricKind::Gauge, |c, _| {
                c.weight_bytes() as f64
            }),
            (
                "smelt_gpu_pool_allocated_bytes",
                "Bytes of GPU buffers the pool has made and not freed (in use and idle)",
                MetricKind::Gauge,
                |_, s| s.allocated_bytes as f64,
            ),
            (
                "smelt_gpu_pool_pooled_bytes",
                "Bytes of idle GPU buffers the pool keeps for reuse",
                MetricKind::Gauge,
                |_, s| s.pooled_bytes as f64,
            ),
            (
                "smelt_gpu_pool_peak_bytes",
                "Highest smelt_gpu_pool_allocated_bytes since the adapter was opened",
                MetricKind::Gauge,
                |_, s| s.peak_bytes as f64,
            ),
            (
                "smelt_gpu_pool_hits_total",
                "GPU buffer requests served by an idle pooled buffer",
                MetricKind::Counter,
                |_, s| s.hits as f64,
            ),
            (
                "smelt_gpu_pool_misses_total",
                "GPU buffer requests that made a new buffer",
                MetricKind::Counter,
                |_, s| s.misses as f64,
            ),
            (
                "smelt_gpu_pool_evictions_total",
                "Idle pooled GPU buffers freed (older than the maximum age, or over the pool's cap)",
                MetricKind::Counter,
                |_, s| s.evictions as f64,
            ),
            ("smelt_gpu_pipelines", "Compute pipelines compiled on the GPU", MetricKind::Gauge, |c, _| {
                c.pipelines().len() as f64
            }),
        ];
        families
            .iter()
            .map(|(name, help, kind, value)| Family {
                name: name.to_string(),
                help: help.to_string(),
                kind: *kind,
                samples: rows.iter().map(|(labels, c, s)| (labels.clone(), value(c, s))).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
