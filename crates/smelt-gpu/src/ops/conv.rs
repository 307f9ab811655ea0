//! Conv (1-D and 2-D, groups, depthwise, fused bias and activation) as an implicit
//! GEMM (kernels/conv.wgsl), register-tiled like MatMul. 1-D convolutions run as
//! 2-D ones of height 1.

use super::activation;
use super::matmul::{override_sets, tile_shape};
use super::Family;
use crate::kernel::{Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{AutoPad, ConvAttrs, DType, Op};

static CONV_F32: KernelSource = KernelSource {
    name: "conv2d_f32",
    wgsl: concat!(include_str!("../../kernels/activation.wgsl"), include_str!("../../kernels/conv.wgsl")),
    dtype: DType::F32,
    entries: &["conv2d"],
    needs_f16: false,
    override_sets,
};

pub static FAMILY: Family = Family { name: "conv", sources: &[&CONV_F32], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Conv(attrs) = req.op else { return None };
    if req.dtype(0)? != DType::F32 || req.dtype(1)? != DType::F32 {
        return None;
    }
    if req.input(2).is_some_and(|b| b.dtype != DType::F32) {
        return None;
    }
    let rank = req.input(0)?.shape.rank()?;
    if !(rank == 3 || rank == 4) {
        return None;
    }
    let overrides = activation::overrides(attrs.activation.as_ref())?;
    Some(Ok(Box::new(Conv { attrs: attrs.clone(), overrides })))
}

struct Conv {
    attrs: ConvAttrs,
    overrides: Vec<(&'static str, f64)>,
}

/// (pad begin, pad end) of one spatial axis.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pads_for(
    auto_pad: AutoPad,
    explicit: &[usize],
    axis: usize,
    spatial: usize,
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    match auto_pad {
        AutoPad::NotSet => {
            (explicit.get(axis).copied().unwrap_or(0), explicit.get(axis + spatial).copied().unwrap_or(0))
        }
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let needed = ((output.saturating_sub(1)) * stride + (kernel - 1) * dilation + 1).saturating_sub(input);
            let small = needed / 2;
            if auto_pad == AutoPad::SameUpper {
                (small, needed - small)
            } else {
                (needed - small, small)
            }
        }
    }
}

/// A dimension as the kernel's u32, below 2^31 so that the kernel's loop counters
/// cannot wrap around (its pipeline is built without wgpu's loop bounding).
fn u(v: usize) -> Result<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&x| x < 1 << 31)
        .ok_or_else(|| GpuError::kernel("conv", "a dimension is 2^31 or more"))
}

impl GpuKernel for Conv {
    fn name(&self) -> &'static str {
        "conv"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "conv")?;
        let w = io.input(1, "conv")?;
        let bias = io.inputs.get(2).and_then(|b| b.as_ref());
        let y = &io.outputs[0];
        // 1-D as 2-D of height 1.
        let (n, c, h, wd) = match x.shape[..] {
            [n, c, l] => (n, c, 1, l),
            [n, c, h, w] => (n, c, h, w),
            _ => return Err(GpuError::kernel("conv", format!("input of shape {:?}", x.shape))),
        };
        let (kh, kw) = match w.shape[..] {
            [_, _, l] => (1, l),
            [_, _, a, b] => (a, b),
            _ => return Err(GpuError::kernel("conv", format!("weight of shape {:?}", w.shape))),
        };
        let (co, oh, ow) = match y.shape[..] {
            [_, co, l] => (co, 1, l),
            [_, co, a, b] => (co, a, b),
            _ => return Err(GpuError::kernel("conv", format!("output of shape {:?}", y.shape))),
        };
        let one_d = x.shape.len() == 3;
        let spatial = if one_d { 1 } else { 2 };
        let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
        let (sh, sw, dh, dw) = if one_d {
            (1, at(&self.attrs.strides, 0), 1, at(&self.attrs.dilations, 0))
        } else {
            (
                at(&self.attrs.strides, 0),
                at(&self.attrs.strides, 1),
                at(&self.attrs.dilations, 0),
                at(&self.attrs.dilations, 1),
            )
        };
        let group = self.attrs.group.max(1);
        if c % group != 0 || co % group != 0 {
            return Err(GpuError::kernel("conv", format!("{c} input / {co} output channels in {group} groups")));
        }
        let ap = self.attrs.auto_pad;
        let pads = &self.attrs.pads;
        let (pt, pl) = if one_d {
            (0, pads_for(ap, pads, 0, spatial, wd, ow, kw, sw, dw).0)
        } else {
            (pads_for(ap, pads, 0, spatial, h, oh, kh, sh, dh).0, pads_for(ap, pads, 1, spatial, wd, ow, kw, sw, dw).0)
        };
        let (cig, cog) = (c / group, co / group);
        let params = [
            u(n)?,
            u(c)?,
            u(h)?,
            u(wd)?,
            u(co)?,
            u(oh)?,
            u(ow)?,
            u(kh)?,
            u(kw)?,
            u(sh)?,
            u(sw)?,
            u(pt)?,
            u(pl)?,
            u(dh)?,
            u(dw)?,
            u(cig)?,
            u(cog)?,
            bias.is_some() as u32,
        ];
        let pixels = n * oh * ow;
        // The kernel computes these products itself, in u32: they must fit too.
        u(pixels)?;
        u(cig * kh * kw)?;
        u(n * c * h * wd)?;
        u(n * co * oh * ow)?;
        let shape = tile_shape(cog, pixels, group);
        let mut overrides = self.overrides.clone();
        overrides.extend(shape.overrides());
        let tile = shape.tile();
        let groups = [u(pixels.div_ceil(tile))?, u(cog.div_ceil(tile))?, u(group)?];
        rec.dispatch(
            &CONV_F32,
            "conv2d",
            &overrides,
            &[Bind::Tensor(x), Bind::Tensor(w), bias.map_or(Bind::Placeholder, Bind::Tensor), Bind::Tensor(y)],
            &params,
            groups,
        )
    }
}
