//! Clip with its bounds as inputs (kernels/clip.wgsl), in f32, and in f16 where
//! the adapter has `SHADER_F16`. (Clip with constant bounds fused into another
//! node is the `Clip` activation of kernels/activation.wgsl.)

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static CLIP_F32: KernelSource = KernelSource {
    name: "clip_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/clip.wgsl")),
    dtype: DType::F32,
    entries: &["clip"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static CLIP_F16: KernelSource = KernelSource {
    name: "clip_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/clip.wgsl")),
    dtype: DType::F16,
    entries: &["clip"],
    needs_f16: true,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

pub static FAMILY: Family = Family { name: "clip", sources: &[&CLIP_F32, &CLIP_F16], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    if !matches!(req.op, Op::Clip) {
        return None;
    }
    let dtype = req.dtype(0)?;
    let source = match dtype {
        DType::F32 => &CLIP_F32,
        DType::F16 if req.ctx.supports_f16() => &CLIP_F16,
        _ => return None,
    };
    if req.outputs.first() != Some(&dtype) || (1..3).any(|i| req.dtype(i).is_some_and(|d| d != dtype)) {
        return None;
    }
    Some(Ok(Box::new(Clip { source })))
}

struct Clip {
    source: &'static KernelSource,
}

impl GpuKernel for Clip {
    fn name(&self) -> &'static str {
        "clip"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "clip")?;
        let y = &io.outputs[0];
        // An absent or empty bound is no bound; otherwise it is one element.
        let mut binds = vec![Bind::Tensor(x)];
        let mut has = Vec::new();
        for (i, what) in [(1, "min"), (2, "max")] {
            match io.inputs.get(i).and_then(|t| t.as_ref()) {
                Some(t) if t.len() == 1 => {
                    binds.push(Bind::Tensor(t));
                    has.push(1);
                }
                Some(t) if t.len() > 1 => {
                    return Err(GpuError::kernel("clip", format!("{what} must be a scalar, got shape {:?}", t.shape)));
                }
                _ => {
                    binds.push(Bind::Placeholder);
                    has.push(0);
                }
            }
        }
        binds.push(Bind::Tensor(y));
        let n = u32::try_from(y.len()).map_err(|_| GpuError::kernel("clip", "2^32 or more elements"))?;
        rec.dispatch(self.source, "clip", &[("WG", WG as f64)], &binds, &[n, has[0], has[1]], grid_1d(y.len(), WG))
    }
}
