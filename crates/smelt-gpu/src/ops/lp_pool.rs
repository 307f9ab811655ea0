//! LpPool (kernels/lp_pool.wgsl) over 1 to 3 spatial dims: any whole p >= 1,
//! kernel_shape, strides, pads, dilations, auto_pad and ceil_mode; f32, and f16
//! (accumulated in f32) where the adapter has `SHADER_F16`.

use super::conv::pads_for;
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, PoolAttrs};

const WG: u32 = 64;
const NAME: &str = "lp_pool";

static LP_POOL_F32: KernelSource = KernelSource {
    name: "lp_pool_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/lp_pool.wgsl")),
    dtype: DType::F32,
    entries: &["lp_pool"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static LP_POOL_F16: KernelSource = KernelSource {
    name: "lp_pool_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/lp_pool.wgsl")),
    dtype: DType::F16,
    entries: &["lp_pool"],
    needs_f16: true,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

pub static FAMILY: Family = Family { name: "lp_pool", sources: &[&LP_POOL_F32, &LP_POOL_F16], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::LpPool { attrs, p } = req.op else { return None };
    let source = match req.dtype(0)? {
        DType::F32 => &LP_POOL_F32,
        DType::F16 if req.ctx.supports_f16() => &LP_POOL_F16,
        _ => return None,
    };
    if req.input(0)?.shape.rank().is_some_and(|r| !(3..=5).contains(&r)) {
        return None;
    }
    Some(Ok(Box::new(LpPool { attrs: attrs.clone(), p: *p, source })))
}

struct LpPool {
    attrs: PoolAttrs,
    p: i64,
    source: &'static KernelSource,
}

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::kernel(NAME, msg.into())
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a dimension is 2^32 or more"))
}

impl GpuKernel for LpPool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, NAME)?;
        let y = &io.outputs[0];
        let rank = x.shape.len();
        if !(3..=5).contains(&rank) || y.shape.len() != rank {
            return Err(err(format!("input {:?}: the kernel takes 1 to 3 spatial dims", x.shape)));
        }
        let e = u32::try_from(self.p)
            .ok()
            .filter(|&e| e >= 1)
            .ok_or_else(|| err(format!("p must be >= 1, got {}", self.p)))?;
        let a = &self.attrs;
        let spatial = rank - 2;
        if a.kernel_shape.len() != spatial || a.kernel_shape.contains(&0) {
            return Err(err(format!("kernel_shape {:?} does not fit X {:?}", a.kernel_shape, x.shape)));
        }
        let per_dim = |name: &str, v: &[usize]| -> Result<Vec<usize>> {
            match v.len() {
                0 => Ok(vec![1; spatial]),
                n if n == spatial && !v.contains(&0) => Ok(v.to_vec()),
                _ => Err(err(format!("{name} {v:?} do not fit {spatial} spatial dims"))),
            }
        };
        let strides = per_dim("strides", &a.strides)?;
        let dilations = per_dim("dilations", &a.dilations)?;
        if !(a.pads.is_empty() || a.pads.len() == 2 * spatial) {
            return Err(err(format!("pads {:?} do not fit {spatial} spatial dims", a.pads)));
        }
        // Leading spatial dims of size 1 make every rank a 3-D pool.
        let lead = 5 - rank;
        let mut dims = [[1usize; 6]; 3]; // per dim: input, output, kernel, stride, pad, dilation
        for d in 0..spatial {
            let (input, output) = (x.shape[d + 2], y.shape[d + 2]);
            let pad =
                pads_for(a.auto_pad, &a.pads, d, spatial, input, output, a.kernel_shape[d], strides[d], dilations[d]).0;
            dims[lead + d] = [input, output, a.kernel_shape[d], strides[d], pad, dilations[d]];
        }
        for d in dims.iter_mut().take(lead) {
            d[4] = 0;
        }
        u(x.len())?;
        u(y.len())?;
        let mut params = vec![u(x.shape[0] * x.shape[1])?];
        for field in 0..6 {
            for d in &dims {
                params.push(u(d[field])?);
            }
        }
        params.push(e);
        rec.dispatch(
            self.source,
            "lp_pool",
            &[("WG", WG as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}
