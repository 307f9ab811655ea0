//! BatchNormalization (inference; kernels/batch_norm.wgsl), InstanceNormalization
//! and GroupNormalization (kernels/group_norm.wgsl) and LpNormalization
//! (kernels/lp_norm.wgsl), in f32, and in f16 where the adapter has `SHADER_F16`.
//! Parameters (scale, bias, mean, var) must have the input's type; mixed types
//! go to the CPU.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

fn wg_only() -> Vec<Vec<(&'static str, f64)>> {
    vec![vec![("WG", WG as f64)]]
}

macro_rules! source {
    ($name:literal, $entry:literal, $dtype:expr, $prefix:literal, $f16:expr, $($file:literal),+) => {
        KernelSource {
            name: $name,
            wgsl: concat!($prefix, $(include_str!(concat!("../../kernels/", $file))),+),
            dtype: $dtype,
            entries: &[$entry],
            needs_f16: $f16,
            override_sets: wg_only,
        }
    };
}

static BATCH_F32: KernelSource =
    source!("batch_norm_f32", "batch_norm", DType::F32, "alias T = f32;\n", false, "batch_norm.wgsl");
static BATCH_F16: KernelSource =
    source!("batch_norm_f16", "batch_norm", DType::F16, "enable f16;\nalias T = f16;\n", true, "batch_norm.wgsl");
static GROUP_F32: KernelSource = source!(
    "group_norm_f32",
    "group_norm",
    DType::F32,
    "alias T = f32;\n",
    false,
    "group_norm.wgsl",
    "workgroup_reduce.wgsl"
);
static GROUP_F16: KernelSource = source!(
    "group_norm_f16",
    "group_norm",
    DType::F16,
    "enable f16;\nalias T = f16;\n",
    true,
    "group_norm.wgsl",
    "workgroup_reduce.wgsl"
);
static LP_F32: KernelSource =
    source!("lp_norm_f32", "lp_norm", DType::F32, "alias T = f32;\n", false, "lp_norm.wgsl", "workgroup_reduce.wgsl");
static LP_F16: KernelSource = source!(
    "lp_norm_f16",
    "lp_norm",
    DType::F16,
    "enable f16;\nalias T = f16;\n",
    true,
    "lp_norm.wgsl",
    "workgroup_reduce.wgsl"
);

pub static FAMILY: Family = Family {
    name: "channel_norm",
    sources: &[&BATCH_F32, &BATCH_F16, &GROUP_F32, &GROUP_F16, &LP_F32, &LP_F16],
    build,
};

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let dtype = req.dtype(0)?;
    let f16 = match dtype {
        DType::F32 => false,
        DType::F16 if req.ctx.supports_f16() => true,
        _ => return None,
    };
    let pick = |a: &'static KernelSource, b: &'static KernelSource| if f16 { b } else { a };
    // Every parameter input present and of the input's type.
    let params_ok = |n: usize| (1..n).all(|i| req.dtype(i) == Some(dtype));
    if req.outputs.len() != 1 || req.outputs[0] != dtype {
        return None;
    }
    let kind = match *req.op {
        Op::BatchNormalization { epsilon } if params_ok(5) => {
            Kind::Batch { source: pick(&BATCH_F32, &BATCH_F16), epsilon }
        }
        Op::InstanceNormalization { epsilon } if params_ok(3) => {
            Kind::Group { source: pick(&GROUP_F32, &GROUP_F16), epsilon, groups: None, per_channel: true }
        }
        Op::GroupNormalization { epsilon, num_groups, per_channel } if params_ok(3) => {
            Kind::Group { source: pick(&GROUP_F32, &GROUP_F16), epsilon, groups: Some(num_groups), per_channel }
        }
        Op::LpNormalization { axis, p } if p == 1 || p == 2 => {
            Kind::Lp { source: pick(&LP_F32, &LP_F16), axis, p: p as u32 }
        }
        _ => return None,
    };
    Some(Ok(Box::new(ChannelNorm { kind })))
}

enum Kind {
    Batch {
        source: &'static KernelSource,
        epsilon: f32,
    },
    /// `groups: None` is InstanceNormalization (one group per channel).
    Group {
        source: &'static KernelSource,
        epsilon: f32,
        groups: Option<usize>,
        per_channel: bool,
    },
    Lp {
        source: &'static KernelSource,
        axis: i64,
        p: u32,
    },
}

struct ChannelNorm {
    kind: Kind,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("channel_norm", m)
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a size is 2^32 or more"))
}

/// `[N, C, spatial...]`: (N, C, product of the spatial dims).
fn channels(shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(err(format!("input must be [N, C, ...], got shape {shape:?}")));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

impl GpuKernel for ChannelNorm {
    fn name(&self) -> &'static str {
        "channel_norm"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "channel_norm")?;
        let y = &io.outputs[0];
        if x.is_empty() {
            return Ok(());
        }
        match self.kind {
            Kind::Batch { source, epsilon } => {
                let (_, c, spatial) = channels(&x.shape)?;
                let mut binds = vec![Bind::Tensor(x)];
                for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
                    let t = io.input(i, "channel_norm")?;
                    if t.shape != [c] {
                        return Err(err(format!("{what} must have shape [{c}], got {:?}", t.shape)));
                    }
                    binds.push(Bind::Tensor(t));
                }
                binds.push(Bind::Tensor(y));
                rec.dispatch(
                    source,
                    "batch_norm",
                    &[("WG", WG as f64)],
                    &binds,
                    &[u(x.len())?, u(c)?, u(spatial)?, epsilon.to_bits()],
                    grid_1d(x.len(), WG),
                )
            }
            Kind::Group { source, epsilon, groups, per_channel } => {
                let (n, c, spatial) = channels(&x.shape)?;
                let groups = groups.unwrap_or(c);
                if groups == 0 || c % groups != 0 {
                    return Err(err(format!("{c} channels do not split into {groups} groups")));
                }
                let params = if per_channel { c } else { groups };
                let (scale, bias) = (io.input(1, "channel_norm")?, io.input(2, "channel_norm")?);
                if scale.len() != params || bias.len() != params {
                    return Err(err(format!(
                        "scale and bias must have {params} elements, got shapes {:?} and {:?}",
                        scale.shape, bias.shape
                    )));
                }
                let per_group = c / groups;
                let rows = n * groups;
                rec.dispatch(
                    source,
                    "group_norm",
                    &[("WG", WG as f64)],
                    &[Bind::Tensor(x), Bind::Tensor(scale), Bind::Tensor(bias), Bind::Tensor(y)],
                    &[
                        u(rows)?,
                        u(per_group * spatial)?,
                        u(spatial)?,
                        u(per_group)?,
                        u(groups)?,
                        per_channel as u32,
                        epsilon.to_bits(),
                    ],
                    grid_1d(rows * WG as usize, WG),
                )
            }
            Kind::Lp { source, axis, p } => {
                // A scalar is a one-element vector.
                let shape = if x.shape.is_empty() { vec![1] } else { x.shape.clone() };
                let rank = shape.len() as i64;
                let a = if axis < 0 { axis + rank } else { axis };
                if a < 0 || a >= rank {
                    return Err(err(format!("axis {axis} out of range for rank {rank}")));
                }
                let a = a as usize;
                let inner: usize = shape[a + 1..].iter().product();
                let rows = x.len() / shape[a];
                rec.dispatch(
                    source,
                    "lp_norm",
                    &[("WG", WG as f64)],
                    &[Bind::Tensor(x), Bind::Tensor(y)],
                    &[u(rows)?, u(shape[a])?, u(inner)?, p],
                    grid_1d(rows * WG as usize, WG),
                )
            }
        }
    }
}
