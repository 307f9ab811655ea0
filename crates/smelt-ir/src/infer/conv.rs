//! Convolution and pooling: output spatial sizes from kernel, strides, pads,
//! dilations and auto_pad, per the ONNX formulas.

use super::dims::unify;
use super::Args;
use crate::{AutoPad, ConvAttrs, ConvTransposeAttrs, DType, Dim, Fact, PoolAttrs, Shape};

/// The geometry of a sliding window along one spatial axis.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
}

impl Window {
    /// The extent the dilated kernel covers.
    fn extent(&self) -> usize {
        (self.kernel.max(1) - 1).saturating_mul(self.dilation).saturating_add(1)
    }
}

/// Per-axis windows from attribute lists; empty lists take their defaults.
fn windows(
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    spatial: usize,
) -> Result<Vec<Window>, String> {
    let check = |name: &str, len: usize, want: usize| {
        if len != 0 && len != want {
            Err(format!("{name} has {len} values, but the input has {spatial} spatial axes (expected {want})"))
        } else {
            Ok(())
        }
    };
    check("kernel_shape", kernel.len(), spatial)?;
    check("strides", strides.len(), spatial)?;
    check("dilations", dilations.len(), spatial)?;
    check("pads", pads.len(), 2 * spatial)?;
    if strides.contains(&0) {
        return Err(format!("strides {strides:?} must be positive"));
    }
    if dilations.contains(&0) {
        return Err(format!("dilations {dilations:?} must be positive"));
    }
    Ok((0..spatial)
        .map(|i| Window {
            kernel: kernel.get(i).copied().unwrap_or(0),
            stride: strides.get(i).copied().unwrap_or(1),
            dilation: dilations.get(i).copied().unwrap_or(1),
            pad_begin: pads.get(i).copied().unwrap_or(0),
            pad_end: pads.get(i + spatial).copied().unwrap_or(0),
        })
        .collect())
}

/// Output size of a sliding window over one axis (Conv and the pools).
fn window_out(input: &Dim, w: &Window, auto_pad: AutoPad, ceil_mode: bool, axis: usize) -> Result<Dim, String> {
    let eff = w.extent();
    let n = match input {
        Dim::Fixed(n) => *n,
        // With stride 1 a window that keeps the size (SAME, or pads adding up to the
        // extent less one) keeps a symbolic size; otherwise the size is unknown.
        other => {
            let keeps = w.stride == 1
                && match auto_pad {
                    AutoPad::SameUpper | AutoPad::SameLower => true,
                    AutoPad::Valid => eff == 1,
                    AutoPad::NotSet => w.pad_begin.saturating_add(w.pad_end).saturating_add(1) == eff,
                };
            return Ok(if keeps { other.clone() } else { Dim::Unknown });
        }
    };
    let s = w.stride;
    let out = match auto_pad {
        AutoPad::SameUpper | AutoPad::SameLower => n.div_ceil(s),
        AutoPad::Valid | AutoPad::NotSet => {
            let (pb, pe) = if auto_pad == AutoPad::Valid { (0, 0) } else { (w.pad_begin, w.pad_end) };
            let total = n.saturating_add(pb).saturating_add(pe);
            if total < eff {
                return Err(format!(
                    "spatial axis {axis}: input size {n} with pads {pb}+{pe} is smaller than the kernel extent {eff}"
                ));
            }
            let span = total - eff;
            if ceil_mode {
                let mut out = span.div_ceil(s) + 1;
                // A last window that would start in the end padding is dropped.
                if (out - 1).saturating_mul(s) >= n.saturating_add(pb) {
                    out -= 1;
                }
                out
            } else {
                span / s + 1
            }
        }
    };
    Ok(Dim::Fixed(out))
}

/// Checks the layout `[N, C, D1, ...]` and returns its spatial rank.
fn spatial_rank(x: &Shape, what: &str) -> Result<Option<usize>, String> {
    match x.rank() {
        Some(r) if r < 3 => Err(format!("{what} must be [N, C, D1, ...] with at least one spatial axis, got {x}")),
        r => Ok(r.map(|r| r - 2)),
    }
}

/// Conv, with the residual input `Z` that fusion adds: it must have the output's
/// dtype and shape.
pub(super) fn conv(attrs: &ConvAttrs, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    if inputs.len() > 4 {
        return Err(format!("expects 2 to 4 input(s) (X, W, B, Z), got {}", inputs.len()));
    }
    let facts = conv_output(attrs, &inputs[..inputs.len().min(3)])?;
    if let (Some(z), [y]) = (inputs.get(3).copied().flatten(), &facts[..]) {
        check_residual(z, y)?;
    }
    Ok(facts)
}

/// A fused residual input `Z` (Conv's or MatMul's) has the output's dtype and shape.
pub(super) fn check_residual(z: &Fact, y: &Fact) -> Result<(), String> {
    if z.dtype != y.dtype {
        return Err(format!("Z must have the output's dtype {}, got {}", y.dtype, z.dtype));
    }
    if let (Some(zd), Some(yd)) = (z.shape.dims(), y.shape.dims()) {
        if zd.len() != yd.len() || zd.iter().zip(yd).any(|(a, b)| unify(a, b).is_none()) {
            return Err(format!("Z {} must have the output's shape {}", z.shape, y.shape));
        }
    }
    Ok(())
}

fn conv_output(attrs: &ConvAttrs, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "W", "B"], 2)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    let (x, w) = (&a.req(0).shape, &a.req(1).shape);
    let spatial = match (spatial_rank(x, "X")?, spatial_rank(w, "W")?) {
        (Some(sx), Some(sw)) if sx != sw => return Err(format!("X {x} and W {w} must have the same rank")),
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => match &attrs.kernel_shape {
            Some(k) => k.len(),
            None => return Ok(vec![Fact::new(dtype, Shape::unknown())]),
        },
    };
    let group = attrs.group.max(1);
    let xd = x.dims();
    let wd = w.dims();
    let m = wd.map_or(Dim::Unknown, |d| d[0].clone());
    if let (Some(xd), Some(wd)) = (xd, wd) {
        let c_per_group = match &wd[1] {
            Dim::Fixed(c) => c.checked_mul(group).map_or(Dim::Unknown, Dim::Fixed),
            d if group == 1 => d.clone(),
            _ => Dim::Unknown,
        };
        if unify(&xd[1], &c_per_group).is_none() {
            return Err(format!("X {x} has {} channels, but W {w} expects {} × group {group}", xd[1], wd[1]));
        }
    }
    if let Dim::Fixed(m) = m {
        if m % group != 0 {
            return Err(format!("W {w} has {m} output channels, not divisible by group {group}"));
        }
    }
    if let Some(b) = a.opt(2) {
        if let Some(bd) = b.shape.dims() {
            if bd.len() != 1 || unify(&bd[0], &m).is_none() {
                return Err(format!("B must be [{m}] (one bias per output channel), got {}", b.shape));
            }
        }
    }
    let kernel: Vec<usize> = match &attrs.kernel_shape {
        Some(k) => k.clone(),
        None => match wd.map(|d| d[2..].iter().map(Dim::fixed).collect::<Option<Vec<_>>>()) {
            Some(Some(k)) => k,
            // Without a fixed kernel size the spatial outputs cannot be known.
            _ => {
                let n = xd.map_or(Dim::Unknown, |d| d[0].clone());
                let mut dims = vec![n, m];
                dims.extend(std::iter::repeat_n(Dim::Unknown, spatial));
                return Ok(vec![Fact::new(dtype, Shape::new(dims))]);
            }
        },
    };
    if let Some(wd) = wd {
        for (i, (k, d)) in kernel.iter().zip(&wd[2..]).enumerate() {
            if !d.admits(*k) {
                return Err(format!("kernel_shape {kernel:?} disagrees with W {w} at spatial axis {i}"));
            }
        }
    }
    let wins = windows(&kernel, &attrs.strides, &attrs.dilations, &attrs.pads, spatial)?;
    let Some(xd) = xd else {
        let mut dims = vec![Dim::Unknown, m];
        dims.extend(std::iter::repeat_n(Dim::Unknown, spatial));
        return Ok(vec![Fact::new(dtype, Shape::new(dims))]);
    };
    let mut out = vec![xd[0].clone(), m];
    for (i, win) in wins.iter().enumerate() {
        out.push(window_out(&xd[2 + i], win, attrs.auto_pad, false, i)?);
    }
    Ok(vec![Fact::new(dtype, Shape::new(out))])
}

pub(super) fn conv_transpose(attrs: &ConvTransposeAttrs, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "W", "B"], 2)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    let c = &attrs.conv;
    let (x, w) = (&a.req(0).shape, &a.req(1).shape);
    let spatial = match (spatial_rank(x, "X")?, spatial_rank(w, "W")?) {
        (Some(sx), Some(sw)) if sx != sw => return Err(format!("X {x} and W {w} must have the same rank")),
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => return Ok(vec![Fact::new(dtype, Shape::unknown())]),
    };
    let group = c.group.max(1);
    let (xd, wd) = (x.dims(), w.dims());
    if let (Some(xd), Some(wd)) = (xd, wd) {
        if unify(&xd[1], &wd[0]).is_none() {
            return Err(format!("X {x} has {} channels, but W {w} expects {}", xd[1], wd[0]));
        }
    }
    // W is [C, M / group, k...]: the output has M channels.
    let m = match wd.map(|d| &d[1]) {
        Some(Dim::Fixed(n)) => n.checked_mul(group).map_or(Dim::Unknown, Dim::Fixed),
        Some(d) if group == 1 => d.clone(),
        _ => Dim::Unknown,
    };
    if let Some(b) = a.opt(2) {
        if let Some(bd) = b.shape.dims() {
            if bd.len() != 1 || unify(&bd[0], &m).is_none() {
                return Err(format!("B must be [{m}] (one bias per output channel), got {}", b.shape));
            }
        }
    }
    let n = xd.map_or(Dim::Unknown, |d| d[0].clone());
    let mut out = vec![n, m];
    if let Some(os) = &attrs.output_shape {
        // Accept the spatial sizes alone or with N and C in front, as runtimes do.
        let tail = match os.len() {
            l if l == spatial => &os[..],
            l if l == spatial + 2 => &os[2..],
            l => return Err(format!("output_shape has {l} values, but the input has {spatial} spatial axes")),
        };
        out.extend(tail.iter().map(|&d| Dim::Fixed(d)));
        return Ok(vec![Fact::new(dtype, Shape::new(out))]);
    }
    let kernel: Option<Vec<usize>> = match &c.kernel_shape {
        Some(k) => Some(k.clone()),
        None => wd.and_then(|d| d[2..].iter().map(Dim::fixed).collect()),
    };
    let (Some(kernel), Some(xd)) = (kernel, xd) else {
        out.extend(std::iter::repeat_n(Dim::Unknown, spatial));
        return Ok(vec![Fact::new(dtype, Shape::new(out))]);
    };
    let wins = windows(&kernel, &c.strides, &c.dilations, &c.pads, spatial)?;
    let op = &attrs.output_padding;
    if !op.is_empty() && op.len() != spatial {
        return Err(format!("output_padding has {} values, but the input has {spatial} spatial axes", op.len()));
    }
    for (i, win) in wins.iter().enumerate() {
        let extra = op.get(i).copied().unwrap_or(0);
        let (pb, pe) = if c.auto_pad == AutoPad::NotSet { (win.pad_begin, win.pad_end) } else { (0, 0) };
        let d = match &xd[2 + i] {
            Dim::Fixed(n) => match c.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    Dim::Fixed(n.checked_mul(win.stride).ok_or_else(|| overflow(i))?)
                }
                _ => {
                    let full = win
                        .stride
                        .checked_mul(n.saturating_sub(1))
                        .and_then(|v| v.checked_add(extra))
                        .and_then(|v| v.checked_add(win.extent()))
                        .ok_or_else(|| overflow(i))?;
                    if full < pb.saturating_add(pe) {
                        return Err(format!(
                            "spatial axis {i}: pads {pb}+{pe} exceed the transposed output size {full}"
                        ));
                    }
                    Dim::Fixed(full - pb - pe)
                }
            },
            other => {
                let same = c.auto_pad == AutoPad::SameUpper || c.auto_pad == AutoPad::SameLower;
                let keeps = win.stride == 1
                    && (same || extra.saturating_add(win.extent()) == pb.saturating_add(pe).saturating_add(1));
                if keeps {
                    other.clone()
                } else {
                    Dim::Unknown
                }
            }
        };
        out.push(d);
    }
    Ok(vec![Fact::new(dtype, Shape::new(out))])
}

fn overflow(axis: usize) -> String {
    format!("spatial axis {axis}: the output size overflows")
}

/// MaxPool (with its optional I64 Indices output), AveragePool and LpPool.
pub(super) fn pool(attrs: &PoolAttrs, with_indices: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X"], 1)?;
    let x = a.req(0);
    let spatial = match spatial_rank(&x.shape, "X")? {
        Some(s) => s,
        None => attrs.kernel_shape.len(),
    };
    if attrs.kernel_shape.is_empty() {
        return Err("kernel_shape is required for pooling".into());
    }
    let wins = windows(&attrs.kernel_shape, &attrs.strides, &attrs.dilations, &attrs.pads, spatial)?;
    let shape = match x.shape.dims() {
        None => {
            let mut d = vec![Dim::Unknown, Dim::Unknown];
            d.extend(std::iter::repeat_n(Dim::Unknown, spatial));
            Shape::new(d)
        }
        Some(xd) => {
            let mut out = vec![xd[0].clone(), xd[1].clone()];
            for (i, win) in wins.iter().enumerate() {
                out.push(window_out(&xd[2 + i], win, attrs.auto_pad, attrs.ceil_mode, i)?);
            }
            Shape::new(out)
        }
    };
    let mut facts = vec![Fact::new(x.dtype, shape.clone())];
    if with_indices {
        facts.push(Fact::new(DType::I64, shape));
    }
    Ok(facts)
}

pub(super) fn global_pool(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X"], 1)?;
    let x = a.req(0);
    let shape = match x.shape.dims() {
        None => Shape::unknown(),
        Some(d) if d.len() < 2 => return Err(format!("X must be [N, C, D1, ...], got {}", x.shape)),
        Some(d) => {
            let mut out = d[..2].to_vec();
            out.extend(std::iter::repeat_n(Dim::Fixed(1), d.len() - 2));
            Shape::new(out)
        }
    };
    Ok(vec![Fact::new(x.dtype, shape)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{AutoPad, ConvAttrs, ConvTransposeAttrs, DType, Op, PoolAttrs};

    fn conv(k: &[usize], s: &[usize], p: &[usize], d: &[usize], group: usize, auto_pad: AutoPad) -> ConvAttrs {
        ConvAttrs {
            kernel_shape: (!k.is_empty()).then(|| k.to_vec()),
            strides: s.to_vec(),
            pads: p.to_vec(),
            dilations: d.to_vec(),
            group,
            auto_pad,
            activation: None,
        }
    }

    fn pool(k: &[usize], s: &[usize], p: &[usize], ceil_mode: bool, auto_pad: AutoPad) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: k.to_vec(),
            strides: s.to_vec(),
            pads: p.to_vec(),
            dilations: vec![],
            auto_pad,
            ceil_mode,
            count_include_pad: false,
            storage_order: 0,
        }
    }

    #[test]
    fn resnet_stem() {
        let x = f32(shape!["N", 3, 224, 224]);
        let w = f32(shape![64, 3, 7, 7]);
        let c = Op::Conv(conv(&[], &[2, 2], &[3, 3, 3, 3], &[], 1, AutoPad::NotSet));
        let y = one(&c, &[&x, &w, &f32(shape![64])]);
        assert_eq!(y.shape, shape!["N", 64, 112, 112]);
        let mp = Op::MaxPool(pool(&[3, 3], &[2, 2], &[1, 1, 1, 1], false, AutoPad::NotSet));
        assert_eq!(one(&mp, &[&y]).shape, shape!["N", 64, 56, 56]);
        let g = one(&Op::GlobalAveragePool, &[&f32(shape!["N", 2048, 7, 7])]);
        assert_eq!(g.shape, shape!["N", 2048, 1, 1]);
    }

    #[test]
    fn conv_dilation_groups_and_auto_pad() {
        let x = f32(shape![1, 8, 10, 11]);
        let w = f32(shape![16, 2, 3, 3]);
        let dil = Op::Conv(conv(&[], &[], &[], &[2, 2], 4, AutoPad::NotSet));
        assert_eq!(one(&dil, &[&x, &w]).shape, shape![1, 16, 6, 7]);
        let same = Op::Conv(conv(&[], &[2, 2], &[], &[], 4, AutoPad::SameUpper));
        assert_eq!(one(&same, &[&x, &w]).shape, shape![1, 16, 5, 6]);
        let lower = Op::Conv(conv(&[], &[3, 3], &[], &[], 4, AutoPad::SameLower));
        assert_eq!(one(&lower, &[&x, &w]).shape, shape![1, 16, 4, 4]);
        let valid = Op::Conv(conv(&[], &[2, 2], &[], &[], 4, AutoPad::Valid));
        assert_eq!(one(&valid, &[&x, &w]).shape, shape![1, 16, 4, 5]);
        let one_d = Op::Conv(conv(&[5], &[], &[], &[], 1, AutoPad::NotSet));
        assert_eq!(one(&one_d, &[&f32(shape![2, 4, 20]), &f32(shape![6, 4, 5])]).shape, shape![2, 6, 16]);
    }

    #[test]
    fn conv_keeps_symbolic_spatial_dims_when_size_preserving() {
        let x = f32(shape!["N", 64, "H", "W"]);
        let w = f32(shape![64, 64, 3, 3]);
        let same = Op::Conv(conv(&[], &[], &[1, 1, 1, 1], &[], 1, AutoPad::NotSet));
        assert_eq!(one(&same, &[&x, &w]).shape, shape!["N", 64, "H", "W"]);
        let strided = Op::Conv(conv(&[], &[2, 2], &[1, 1, 1, 1], &[], 1, AutoPad::NotSet));
        assert_eq!(one(&strided, &[&x, &w]).shape, shape!["N", 64, "?", "?"]);
    }

    #[test]
    fn conv_residual_must_match_the_output() {
        let c = Op::Conv(conv(&[], &[], &[1, 1, 1, 1], &[], 1, AutoPad::NotSet));
        let (x, w, b) = (f32(shape!["N", 4, 6, 6]), f32(shape![8, 4, 3, 3]), f32(shape![8]));
        assert_eq!(one(&c, &[&x, &w, &b, &f32(shape!["N", 8, 6, 6])]).shape, shape!["N", 8, 6, 6]);
        let e = err(&c, &[&x, &w, &b, &f32(shape!["N", 8, 1, 6])]);
        assert!(e.contains("Z") && e.contains("output's shape"), "{e}");
        let e = err(&c, &[&x, &w, &b, &fact(DType::F64, shape!["N", 8, 6, 6])]);
        assert!(e.contains("Z") && e.contains("dtype"), "{e}");
    }

    #[test]
    fn conv_errors_name_channels_and_sizes() {
        let c = Op::Conv(conv(&[], &[], &[], &[], 1, AutoPad::NotSet));
        let e = err(&c, &[&f32(shape![1, 3, 8, 8]), &f32(shape![4, 4, 3, 3])]);
        assert!(e.contains("3 channels") && e.contains("4"), "{e}");
        let e = err(&c, &[&f32(shape![1, 3, 2, 8]), &f32(shape![4, 3, 3, 3])]);
        assert!(e.contains("input size 2") && e.contains("extent 3"), "{e}");
        let e = err(&c, &[&f32(shape![1, 3, 8]), &f32(shape![4, 3, 3, 3])]);
        assert!(e.contains("same rank"), "{e}");
        let g = Op::Conv(conv(&[], &[], &[], &[], 2, AutoPad::NotSet));
        assert!(err(&g, &[&f32(shape![1, 4, 8, 8]), &f32(shape![5, 2, 3, 3])]).contains("divisible"));
    }

    #[test]
    fn conv_transpose_sizes() {
        let x = f32(shape![1, 8, 5, 5]);
        let w = f32(shape![8, 4, 3, 3]);
        let attrs = |s: &[usize], p: &[usize], op: &[usize], auto_pad, out: Option<Vec<usize>>, group| {
            Op::ConvTranspose(ConvTransposeAttrs {
                conv: conv(&[], s, p, &[], group, auto_pad),
                output_padding: op.to_vec(),
                output_shape: out,
            })
        };
        // stride*(in-1) + output_padding + extent - pads = 2*4 + 1 + 3 - 2 = 10
        let t = attrs(&[2, 2], &[1, 1, 1, 1], &[1, 1], AutoPad::NotSet, None, 1);
        assert_eq!(one(&t, &[&x, &w]).shape, shape![1, 4, 10, 10]);
        let same = attrs(&[2, 2], &[], &[], AutoPad::SameUpper, None, 2);
        assert_eq!(one(&same, &[&x, &w]).shape, shape![1, 8, 10, 10]);
        let explicit = attrs(&[2, 2], &[], &[], AutoPad::NotSet, Some(vec![11, 12]), 1);
        assert_eq!(one(&explicit, &[&x, &w]).shape, shape![1, 4, 11, 12]);
        let e = err(&t, &[&f32(shape![1, 3, 5, 5]), &w]);
        assert!(e.contains("3 channels"), "{e}");
    }

    #[test]
    fn huge_attributes_do_not_panic() {
        let x = f32(shape![1, 1, 5, 5]);
        let w = f32(shape![1, 1, 3, 3]);
        let huge = Op::Conv(conv(&[], &[], &[usize::MAX, 0, 0, 0], &[usize::MAX, 1], 1, AutoPad::NotSet));
        // Saturating arithmetic: any answer will do, as long as there is no panic.
        let _ = crate::infer::infer(&huge, &[Some(&x), Some(&w)], 1);
        let t = Op::ConvTranspose(ConvTransposeAttrs {
            conv: conv(&[], &[usize::MAX, 1], &[], &[], 1, AutoPad::NotSet),
            output_padding: vec![],
            output_shape: None,
        });
        assert!(err(&t, &[&x, &w]).contains("overflows"));
    }

    #[test]
    fn pool_ceil_mode_and_indices() {
        let x = f32(shape![1, 1, 5, 5]);
        let floor = Op::MaxPool(pool(&[2, 2], &[2, 2], &[], false, AutoPad::NotSet));
        assert_eq!(one(&floor, &[&x]).shape, shape![1, 1, 2, 2]);
        let ceil = Op::MaxPool(pool(&[2, 2], &[2, 2], &[], true, AutoPad::NotSet));
        let out = run(&ceil, &[&x], 2);
        assert_eq!(out[0].shape, shape![1, 1, 3, 3]);
        assert_eq!(out[1].dtype, DType::I64);
        assert_eq!(out[1].shape, shape![1, 1, 3, 3]);
        // A window that would start in the end padding is dropped: in=4, k=2, s=2,
        // pads 1+1: ceil((6-2)/2)+1 = 3, and (3-1)*2 = 4 >= 4+1 is false, so 3 stays.
        let padded = Op::MaxPool(pool(&[2], &[2], &[1, 1], true, AutoPad::NotSet));
        assert_eq!(one(&padded, &[&f32(shape![1, 1, 4])]).shape, shape![1, 1, 3]);
        // in=5, k=3, s=3, pads 0+2: ceil((7-3)/3)+1 = 3, (3-1)*3 = 6 >= 5: dropped to 2.
        let dropped = Op::AveragePool(pool(&[3], &[3], &[0, 2], true, AutoPad::NotSet));
        assert_eq!(one(&dropped, &[&f32(shape![1, 1, 5])]).shape, shape![1, 1, 2]);
        let same = Op::AveragePool(pool(&[3, 3], &[2, 2], &[], false, AutoPad::SameUpper));
        assert_eq!(one(&same, &[&x]).shape, shape![1, 1, 3, 3]);
        let valid = Op::LpPool { attrs: pool(&[3, 3], &[2, 2], &[], false, AutoPad::Valid), p: 2 };
        assert_eq!(one(&valid, &[&x]).shape, shape![1, 1, 2, 2]);
        assert!(err(&Op::AveragePool(pool(&[3, 3], &[], &[], false, AutoPad::NotSet)), &[&f32(shape![1, 1, 2, 2])])
            .contains("smaller than the kernel"));
    }
}
