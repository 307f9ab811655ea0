//! ConvTranspose (kernels/conv_transpose.wgsl): 1-D, 2-D and 3-D, groups,
//! strides, dilations, explicit pads, output_padding, output_shape and auto_pad,
//! optional bias and a fused activation; f32, and f16 (accumulated in f32) where
//! the adapter has `SHADER_F16`.

use super::activation;
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::semantics::conv_transpose::spatial_geometry;
use smelt_ir::{ConvTransposeAttrs, DType, Op};

const WG: u32 = 64;
const NAME: &str = "conv_transpose";

fn override_sets() -> Vec<Vec<(&'static str, f64)>> {
    activation::all_override_sets()
        .into_iter()
        .map(|mut s| {
            s.push(("WG", WG as f64));
            s
        })
        .collect()
}

static CONVT_F32: KernelSource = KernelSource {
    name: "conv_transpose_f32",
    wgsl: concat!(
        "alias T = f32;\n",
        include_str!("../../kernels/activation.wgsl"),
        include_str!("../../kernels/conv_transpose.wgsl")
    ),
    dtype: DType::F32,
    entries: &["conv_transpose"],
    needs_f16: false,
    override_sets,
};

static CONVT_F16: KernelSource = KernelSource {
    name: "conv_transpose_f16",
    wgsl: concat!(
        "enable f16;\nalias T = f16;\n",
        include_str!("../../kernels/activation.wgsl"),
        include_str!("../../kernels/conv_transpose.wgsl")
    ),
    dtype: DType::F16,
    entries: &["conv_transpose"],
    needs_f16: true,
    override_sets,
};

pub static FAMILY: Family = Family { name: "conv_transpose", sources: &[&CONVT_F32, &CONVT_F16], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::ConvTranspose(attrs) = req.op else { return None };
    let dtype = req.dtype(0)?;
    let source = match dtype {
        DType::F32 => &CONVT_F32,
        DType::F16 if req.ctx.supports_f16() => &CONVT_F16,
        _ => return None,
    };
    if req.dtype(1)? != dtype || req.input(2).is_some_and(|b| b.dtype != dtype) {
        return None;
    }
    if req.input(0)?.shape.rank().is_some_and(|r| !(3..=5).contains(&r)) {
        return None;
    }
    let mut overrides = activation::overrides(attrs.conv.activation.as_ref())?;
    overrides.push(("WG", WG as f64));
    Some(Ok(Box::new(ConvTranspose { attrs: attrs.clone(), source, overrides })))
}

struct ConvTranspose {
    attrs: ConvTransposeAttrs,
    source: &'static KernelSource,
    overrides: Vec<(&'static str, f64)>,
}

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::kernel(NAME, msg.into())
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a dimension is 2^32 or more"))
}

impl GpuKernel for ConvTranspose {
    fn name(&self) -> &'static str {
        NAME
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, NAME)?;
        let w = io.input(1, NAME)?;
        let bias = io.inputs.get(2).and_then(|b| b.as_ref());
        let y = &io.outputs[0];
        let rank = x.shape.len();
        if !(3..=5).contains(&rank) || w.shape.len() != rank {
            return Err(err(format!(
                "X {:?} and W {:?}: the kernel takes 1 to 3 spatial dims, the same for both",
                x.shape, w.shape
            )));
        }
        let group = self.attrs.conv.group.max(1);
        let (n, c) = (x.shape[0], x.shape[1]);
        if w.shape[0] != c || c % group != 0 {
            return Err(err(format!("W {:?} does not fit X {:?} with {group} groups", w.shape, x.shape)));
        }
        let (cig, cog) = (c / group, w.shape[1]);
        let co = cog * group;
        if let Some(b) = bias {
            if b.len() != co {
                return Err(err(format!("B has {} elements for {co} output channels", b.len())));
            }
        }
        // Output size and pads per spatial dim, as smelt-cpu computes them.
        let geo = spatial_geometry(&self.attrs, &x.shape, &w.shape).map_err(err)?;
        let output = &geo.output;
        let mut want = vec![n, co];
        want.extend(output);
        if y.shape != want {
            return Err(err(format!("output shape {:?}, but the attributes give {want:?}", y.shape)));
        }
        // Leading spatial dims of size 1 make every rank a 3-D transposed conv.
        let lead = 5 - rank;
        let pad3 = |v: &[usize], fill: usize| -> Vec<usize> {
            let mut out = vec![fill; lead];
            out.extend_from_slice(v);
            out
        };
        let strides = pad3(&geo.strides, 1);
        let dilations = pad3(&geo.dilations, 1);
        let input = pad3(&x.shape[2..], 1);
        let out = pad3(output, 1);
        let kernel = pad3(&w.shape[2..], 1);
        let mut pad = vec![0i32; lead];
        for &p in &geo.pads {
            pad.push(i32::try_from(p).map_err(|_| err("a pad does not fit in 32 bits"))?);
        }
        u(x.len())?;
        u(w.len())?;
        u(y.len())?;
        let mut params = vec![u(n)?, u(c)?];
        for v in &input {
            params.push(u(*v)?);
        }
        params.push(u(co)?);
        for v in out.iter().chain(&kernel).chain(&strides) {
            params.push(u(*v)?);
        }
        params.extend(pad.iter().map(|&p| p as u32));
        for v in &dilations {
            params.push(u(*v)?);
        }
        params.extend([u(cig)?, u(cog)?, bias.is_some() as u32]);
        rec.dispatch(
            self.source,
            "conv_transpose",
            &self.overrides,
            &[Bind::Tensor(x), Bind::Tensor(w), bias.map_or(Bind::Placeholder, Bind::Tensor), Bind::Tensor(y)],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}
