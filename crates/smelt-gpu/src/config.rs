//! The GPU layer's settings: one typed struct with defaults, filled from the
//! environment and, by the server, from a model's config.pbtxt parameters.

use crate::{GpuError, Result};
use std::time::Duration;

/// Settings of one GPU context.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuConfig {
    /// Most bytes the buffer pool keeps *idle* for reuse; buffers given back beyond
    /// this are freed at once. Buffers in use are never counted against it, so a
    /// model larger than the cap still runs.
    pub pool_max_bytes: u64,
    /// Idle pooled buffers older than this are freed, so a burst of large batches
    /// does not pin its memory for ever.
    pub buffer_max_age: Duration,
    /// Log every adapter choice, pipeline compile, pool decision and plan (at info
    /// level instead of debug).
    pub verbose: bool,
    /// How inputs and outputs cross between host and device.
    pub transfer: TransferMode,
    /// ONNX op types (e.g. `Resize`) run on the CPU even though a GPU kernel
    /// exists: to work around, or find, a kernel that misbehaves on some driver.
    pub cpu_ops: Vec<String>,
}

/// How a run's inputs reach the device and its outputs come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// Mapped where memory is unified (integrated GPUs, CPU adapters), staging
    /// elsewhere.
    Auto,
    /// The host maps the inputs' and outputs' own device buffers: no staging copy.
    /// Needs `MAPPABLE_PRIMARY_BUFFERS`.
    Mapped,
    /// Through a reused ring of host-visible staging buffers, so one request's
    /// transfers overlap another's GPU work.
    Staging,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            pool_max_bytes: 2 << 30,
            buffer_max_age: Duration::from_secs(60),
            verbose: false,
            transfer: TransferMode::Auto,
            cpu_ops: Vec::new(),
        }
    }
}

/// Environment variables read by [`GpuConfig::from_env`], each with its alias from
/// the Metal backend's documentation (first name wins when both are set).
pub const ENV_POOL_MAX_BYTES: [&str; 2] = ["SMELT_GPU_POOL_MAX_BYTES", "MPS_MAX_POOL_SIZE"];
pub const ENV_BUFFER_MAX_AGE: [&str; 2] = ["SMELT_GPU_BUFFER_MAX_AGE_SECS", "MPS_MAX_BUFFER_AGE"];
pub const ENV_VERBOSE: [&str; 2] = ["MPS_VERBOSE", "TRITON_METAL_DEBUG"];
pub const ENV_TRANSFER: &str = "SMELT_GPU_TRANSFER";
pub const ENV_CPU_OPS: &str = "SMELT_GPU_CPU_OPS";

impl GpuConfig {
    /// Defaults overridden by the environment. A malformed value is an error naming
    /// the variable, not a silent default.
    pub fn from_env() -> Result<GpuConfig> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup` (testable).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<GpuConfig> {
        let mut config = GpuConfig::default();
        let first = |names: &[&str]| names.iter().find_map(|n| lookup(n).map(|v| (n.to_string(), v)));
        if let Some((name, value)) = first(&ENV_POOL_MAX_BYTES) {
            config.set("pool_max_bytes", &value).map_err(|e| GpuError::Config(format!("{name}: {e}")))?;
        }
        if let Some((name, value)) = first(&ENV_BUFFER_MAX_AGE) {
            config.set("buffer_max_age_secs", &value).map_err(|e| GpuError::Config(format!("{name}: {e}")))?;
        }
        if let Some((name, value)) = first(&ENV_VERBOSE) {
            config.set("verbose", &value).map_err(|e| GpuError::Config(format!("{name}: {e}")))?;
        }
        if let Some(value) = lookup(ENV_TRANSFER) {
            config.set("transfer", &value).map_err(|e| GpuError::Config(format!("{ENV_TRANSFER}: {e}")))?;
        }
        if let Some(value) = lookup(ENV_CPU_OPS) {
            config.set("cpu_ops", &value).map_err(|e| GpuError::Config(format!("{ENV_CPU_OPS}: {e}")))?;
        }
        Ok(config)
    }

    /// Sets one setting by name, as config.pbtxt `parameters` give them:
    /// `pool_max_bytes` (bytes, or with a K/M/G suffix), `buffer_max_age_secs`
    /// (seconds, fractions allowed), `verbose` (1/0/true/false), `transfer`
    /// (auto/mapped/staging), `cpu_ops` (comma-separated ONNX op types).
    pub fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let value = value.trim();
        match key {
            "pool_max_bytes" | "max_pool_size" => self.pool_max_bytes = parse_bytes(value)?,
            "buffer_max_age_secs" | "max_buffer_age" => {
                let secs: f64 = value.parse().map_err(|_| format!("'{value}' is not a number of seconds"))?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(format!("'{value}' is not a number of seconds >= 0"));
                }
                self.buffer_max_age = Duration::from_secs_f64(secs);
            }
            "verbose" => {
                self.verbose = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => return Err(format!("'{value}' is not 0/1/true/false")),
                }
            }
            "transfer" => {
                self.transfer = match value.to_ascii_lowercase().as_str() {
                    "auto" | "" => TransferMode::Auto,
                    "mapped" => TransferMode::Mapped,
                    "staging" => TransferMode::Staging,
                    _ => return Err(format!("'{value}' is not auto, mapped or staging")),
                }
            }
            "cpu_ops" => {
                let ops: Vec<String> =
                    value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(String::from).collect();
                if let Some(bad) = ops.iter().find(|o| !o.chars().all(|c| c.is_ascii_alphanumeric())) {
                    return Err(format!("'{bad}' is not an ONNX op type (e.g. Resize,TopK)"));
                }
                self.cpu_ops = ops;
            }
            other => {
                return Err(format!(
                    "unknown GPU setting '{other}' (known: pool_max_bytes, buffer_max_age_secs, verbose, transfer, cpu_ops)"
                ))
            }
        }
        Ok(())
    }
}

/// `123`, `64K`, `512M`, `2G` (powers of 1024).
fn parse_bytes(value: &str) -> std::result::Result<u64, String> {
    let (digits, scale) = match value.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&value[..value.len() - 1], 1u64 << 10),
        Some('M') => (&value[..value.len() - 1], 1 << 20),
        Some('G') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("'{value}' is not a byte count (e.g. 1073741824 or 1G)"))?;
    n.checked_mul(scale).ok_or_else(|| format!("'{value}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_and_aliases() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let c = GpuConfig::from_lookup(env(&[("MPS_MAX_POOL_SIZE", "64M"), ("MPS_MAX_BUFFER_AGE", "2.5")])).unwrap();
        assert_eq!(c.pool_max_bytes, 64 << 20);
        assert_eq!(c.buffer_max_age, Duration::from_millis(2500));
        assert!(!c.verbose);
        let c = GpuConfig::from_lookup(env(&[
            ("SMELT_GPU_POOL_MAX_BYTES", "1000"),
            ("MPS_MAX_POOL_SIZE", "64M"),
            ("TRITON_METAL_DEBUG", "1"),
        ]))
        .unwrap();
        assert_eq!(c.pool_max_bytes, 1000, "the SMELT_ name wins over its alias");
        assert!(c.verbose);
        let err = GpuConfig::from_lookup(env(&[("SMELT_GPU_BUFFER_MAX_AGE_SECS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("SMELT_GPU_BUFFER_MAX_AGE_SECS"), "{err}");
    }

    #[test]
    fn parameters() {
        let mut c = GpuConfig::default();
        c.set("pool_max_bytes", "2G").unwrap();
        assert_eq!(c.pool_max_bytes, 2 << 30);
        assert!(c.set("pool_max_bytes", "-1").is_err());
        assert!(c.set("colour", "red").unwrap_err().contains("colour"));
        c.set("transfer", "Staging").unwrap();
        assert_eq!(c.transfer, TransferMode::Staging);
        assert!(c.set("transfer", "dma").unwrap_err().contains("dma"));
        c.set("cpu_ops", " Resize, TopK ,").unwrap();
        assert_eq!(c.cpu_ops, ["Resize", "TopK"]);
        assert!(c.set("cpu_ops", "Top K").unwrap_err().contains("Top K"));
    }
}
