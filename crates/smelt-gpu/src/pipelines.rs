//! Compiled compute pipelines, keyed by kernel source, entry point, override
//! constants and element type, so each variant compiles once per device.

use crate::kernel::KernelSource;
use crate::{GpuError, Result};
use smelt_ir::DType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What makes two pipelines the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub source: &'static str,
    pub entry: &'static str,
    /// Override constants by name, values as f64 bits (sorted by name).
    pub overrides: Vec<(&'static str, u64)>,
    /// Element type the source was written for (sources are one per type).
    pub dtype: DType,
}

/// Sources compiled without wgpu's loop bounding (bounds checks stay on). By
/// default wgpu adds a counter to every loop so that a driver cannot assume a loop
/// ends, and on an H100 the GEMM kernels ran up to 1.3x slower for it (measured:
/// 1024^3 MatMul 9.5 -> 12.6 TFLOP/s, a 3x3 convolution of 256 channels at 14x14,
/// batch 32, 6.7 -> 8.6, BERT's 128x768x768 0.71 -> 0.86; 4096^3 unchanged).
/// Every loop in these kernels counts up to a bound the launcher has checked to be
/// below 2^31 (no wrap-around), so each one ends.
const WITHOUT_LOOP_BOUNDING: &[&str] = &["matmul_f32", "conv2d_f32"];

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// The pipeline for `source`'s `entry` with these override values, compiled on
    /// first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        source: &KernelSource,
        entry: &'static str,
        overrides: &[(&'static str, f64)],
        verbose: bool,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut sorted: Vec<(&'static str, u64)> = overrides.iter().map(|&(k, v)| (k, v.to_bits())).collect();
        sorted.sort();
        let key = PipelineKey { source: source.name, entry, overrides: sorted, dtype: source.dtype };
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let start = std::time::Instant::now();
        // A shader that does not compile is this kernel's error, not the device's:
        // catch it here (rather than in the device's error log) and cache nothing.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            modules
                .entry(source.name)
                .or_insert_with(|| {
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(source.name),
                        source: wgpu::ShaderSource::Wgsl(source.wgsl.into()),
                    };
                    if WITHOUT_LOOP_BOUNDING.contains(&source.name) {
                        let mut checks = wgpu::ShaderRuntimeChecks::checked();
                        checks.force_loop_bounding = false;
                        // SAFETY: force_loop_bounding only guards against infinite
                        // loops; every loop of these kernels ends (see the list).
                        unsafe { device.create_shader_module_trusted(desc, checks) }
                    } else {
                        device.create_shader_module(desc)
                    }
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(source.name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: overrides, ..Default::default() },
            cache: None,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            if let Ok(mut modules) = self.modules.lock() {
                modules.remove(source.name);
            }
            return Err(GpuError::kernel(
                source.name,
                format!("the shader does not compile for entry '{entry}': {error}"),
            ));
        }
        let pipeline = Arc::new(pipeline);
        if verbose {
            tracing::info!(
                kernel = source.name,
                entry,
                ?overrides,
                ms = start.elapsed().as_secs_f64() * 1e3,
                "compiled GPU pipeline"
            );
        } else {
            tracing::debug!(kernel = source.name, entry, ?overrides, "compiled GPU pipeline");
        }
        self.pipelines.lock().map_err(|_| poisoned())?.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> GpuError {
    GpuError::Device("a thread panicked while compiling a pipeline".into())
}
