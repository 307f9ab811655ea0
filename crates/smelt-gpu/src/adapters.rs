//! Finding adapters: which backends to look at (`SMELT_WGPU_BACKEND`), which
//! adapter `gpu:N` means, and what each adapter can do (for `smelt devices`).

use crate::{GpuError, Result};

/// The variable that restricts the backends searched: `metal`, `vulkan`, `dx12` or
/// `gl`, or several separated by commas.
pub const ENV_BACKEND: &str = "SMELT_WGPU_BACKEND";

/// Backends to search, from [`ENV_BACKEND`] (all compiled-in ones when unset).
pub fn backends_from_env() -> Result<wgpu::Backends> {
    match std::env::var(ENV_BACKEND) {
        Ok(v) if !v.trim().is_empty() => parse_backends(&v),
        _ => Ok(wgpu::Backends::all()),
    }
}

pub fn parse_backends(value: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for name in value.split(',').map(|s| s.trim().to_ascii_lowercase()) {
        backends |= match name.as_str() {
            "metal" => wgpu::Backends::METAL,
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            other => {
                return Err(GpuError::Config(format!(
                    "{ENV_BACKEND}='{value}': unknown backend '{other}' (known: metal, vulkan, dx12, gl)"
                )))
            }
        };
    }
    Ok(backends)
}

pub(crate) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // wgpu's indirect-call validation caps buffers at 4 GiB - 1 byte of u32 offsets;
    // Smelt never dispatches indirectly, so it gives nothing and costs the big buffers.
    desc.flags = wgpu::InstanceFlags::from_build_config().with_env() - wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL;
    wgpu::Instance::new(desc)
}

/// Adapters in the order `gpu:N` numbers them.
pub(crate) fn enumerate(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// How much an adapter is preferred when no number is given: real GPUs first.
pub(crate) fn preference(info: &wgpu::AdapterInfo) -> u32 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// What one adapter offers, as `smelt devices` prints it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The N of `gpu:N`.
    pub ordinal: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    /// Subgroup operations and the sizes the adapter may use.
    pub subgroups: Option<(u32, u32)>,
    pub timestamps: bool,
    pub timestamps_inside_passes: bool,
    /// Cooperative-matrix shapes as `MxNxK ab->cr`.
    pub cooperative_matrix: Vec<String>,
    /// Storage buffers may also be mapped by the host (`MAPPABLE_PRIMARY_BUFFERS`).
    pub mappable_primary_buffers: bool,
    /// Host and device share memory (integrated GPUs such as Apple Silicon, and
    /// CPU adapters): mapping a device buffer costs no copy over a bus.
    pub unified_memory: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_shader_stage: u32,
}

impl AdapterSummary {
    pub(crate) fn of(ordinal: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let cooperative_matrix = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter
                .cooperative_matrix_properties()
                .iter()
                .map(|p| format!("{}x{}x{} {:?}->{:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type))
                .collect()
        } else {
            Vec::new()
        };
        AdapterSummary {
            ordinal,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some((info.subgroup_min_size, info.subgroup_max_size)),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            cooperative_matrix,
            mappable_primary_buffers: features.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            unified_memory: matches!(info.device_type, wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::Cpu),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        }
    }
}

/// Every adapter the (possibly restricted) backends offer, numbered as `gpu:N`.
pub fn list_adapters() -> Result<Vec<AdapterSummary>> {
    let backends = backends_from_env()?;
    let instance = instance(backends);
    Ok(enumerate(&instance, backends).iter().enumerate().map(|(i, a)| AdapterSummary::of(i, a)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
        assert_eq!(parse_backends("Metal, dx12").unwrap(), wgpu::Backends::METAL | wgpu::Backends::DX12);
        let err = parse_backends("cuda").unwrap_err().to_string();
        assert!(err.contains("cuda") && err.contains(ENV_BACKEND), "{err}");
    }
}
