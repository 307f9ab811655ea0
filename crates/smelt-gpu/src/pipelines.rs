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
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            modules
                .entry(source.name)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(source.name),
                        source: wgpu::ShaderSource::Wgsl(source.wgsl.into()),
                    })
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
