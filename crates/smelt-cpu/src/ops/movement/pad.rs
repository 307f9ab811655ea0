//! Pad: the (possibly cropped) input is copied into the middle of the output, then
//! the borders are filled one axis at a time, innermost first.
//!
//! When axis `d` is filled, the axes inside it are already complete and the axes
//! outside it hold data only in their middle range, so each border slot of `d` is
//! one contiguous block of the output: a constant fill, or a copy of the block at
//! the position the mode mirrors it to. Later (outer) axes then copy whole blocks
//! that include those borders, which gives the corners every mode expects.

use super::{int_values, layout, optional, output, required};
use crate::ops::dims::Dims;
use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{PadMode, TensorView, TensorViewMut};

const OP: &str = "Pad";

/// How one axis is padded.
#[derive(Clone, Copy, Debug)]
struct AxisPad {
    /// Elements added before the kept input.
    before: usize,
    /// Input elements kept (after negative pads crop).
    kept: usize,
    /// Input elements cropped from the start.
    cropped: usize,
    /// Output length.
    len: usize,
}

pub fn pad(mode: PadMode, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let data = required(OP, inputs, 0)?;
    let rank = data.rank();
    let pads = int_values(OP, "pads", required(OP, inputs, 1)?)?;
    let axes: Dims = match optional(OP, inputs, 3)? {
        Some(axes) => {
            let axes = int_values(OP, "axes", axes)?;
            super::axes_of(OP, &axes, rank)?
        }
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(CpuError::invalid(OP, format!("pads {pads:?} must hold 2 values per padded axis, {axes:?}")));
    }
    let es = data.dtype.size();
    let value = match optional(OP, inputs, 2)?.filter(|v| !v.is_empty()) {
        Some(v) if v.dtype != data.dtype || v.len() != 1 => {
            return Err(CpuError::invalid(
                OP,
                format!("constant_value must be one {} element, got {} {:?}", data.dtype, v.dtype, v.shape),
            ));
        }
        Some(v) => SmallVec::<[u8; 16]>::from_slice(v.data),
        None => smallvec![0; es],
    };

    let mut geometry: SmallVec<[AxisPad; 8]> =
        data.shape.iter().map(|&n| AxisPad { before: 0, kept: n, cropped: 0, len: n }).collect();
    for (i, &axis) in axes.iter().enumerate() {
        let (begin, end, n) = (pads[i], pads[axes.len() + i], data.shape[axis]);
        let crop = |p: i64| if p < 0 { p.unsigned_abs() as usize } else { 0 };
        let grow = |p: i64| usize::try_from(p).unwrap_or(0);
        let kept = n.checked_sub(crop(begin).saturating_add(crop(end))).ok_or_else(|| {
            CpuError::invalid(OP, format!("pads {begin} and {end} crop more than the {n} elements of axis {axis}"))
        })?;
        let len = grow(begin)
            .checked_add(kept)
            .and_then(|n| n.checked_add(grow(end)))
            .ok_or_else(|| CpuError::invalid(OP, format!("pads {begin} and {end} overflow axis {axis}")))?;
        geometry[axis] = AxisPad { before: grow(begin), kept, cropped: crop(begin), len };
    }
    let shape: Dims = geometry.iter().map(|g| g.len).collect();
    let out = output(OP, outputs, data.dtype, &shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    if let Some(axis) = geometry.iter().position(|g| g.kept == 0) {
        // Nothing of the input survives: only a constant can fill the output.
        if mode != PadMode::Constant {
            return Err(CpuError::invalid(
                OP,
                format!("{mode:?} padding needs input elements, but axis {axis} has none"),
            ));
        }
        layout::fill(out.data, &value);
        return Ok(());
    }

    let out_strides = layout::row_major(&shape);
    let in_strides = layout::row_major(data.shape);
    let kept: Dims = geometry.iter().map(|g| g.kept).collect();
    let dst_offset = geometry.iter().zip(&out_strides).map(|(g, &s)| g.before * s as usize).sum();
    let src_offset = geometry.iter().zip(&in_strides).map(|(g, &s)| g.cropped * s as usize).sum();
    let dst_at = layout::Strided { offset: dst_offset, strides: &out_strides };
    let src_at = layout::Strided { offset: src_offset, strides: &in_strides };
    layout::copy(OP, es, &kept, out.data, dst_at, data.data, src_at)?;

    for d in (0..rank).rev() {
        let g = geometry[d];
        if g.before == 0 && g.before + g.kept == g.len {
            continue;
        }
        let block = out_strides[d] as usize * es;
        let border = (0..g.before).chain(g.before + g.kept..g.len);
        for_each_middle(&geometry[..d], &out_strides[..d], 0, &mut |base| {
            for p in border.clone() {
                let at = (base + p * out_strides[d] as usize) * es;
                match source(mode, p, g) {
                    Some(q) => {
                        let from = (base + q * out_strides[d] as usize) * es;
                        out.data.copy_within(from..from + block, at);
                    }
                    None => layout::fill(&mut out.data[at..at + block], &value),
                }
            }
        });
    }
    Ok(())
}

/// The output position along an axis whose block border slot `p` copies, or `None`
/// for a constant.
fn source(mode: PadMode, p: usize, g: AxisPad) -> Option<usize> {
    let r = p as i64 - g.before as i64;
    let m = g.kept as i64;
    let q = match mode {
        PadMode::Constant => return None,
        PadMode::Edge => r.clamp(0, m - 1),
        PadMode::Wrap => r.rem_euclid(m),
        // Mirror about the first and last element, repeating as numpy does when the
        // pad is wider than the axis.
        PadMode::Reflect if m == 1 => 0,
        PadMode::Reflect => {
            let period = 2 * (m - 1);
            let x = r.rem_euclid(period);
            if x < m {
                x
            } else {
                period - x
            }
        }
    };
    Some(g.before + q as usize)
}

/// Calls `f` with the flat output offset of every position whose coordinates along
/// `geometry`'s axes all lie in the kept (middle) range.
fn for_each_middle(geometry: &[AxisPad], strides: &[isize], base: usize, f: &mut impl FnMut(usize)) {
    match geometry.split_first() {
        None => f(base),
        Some((g, rest)) => {
            for i in g.before..g.before + g.kept {
                for_each_middle(rest, &strides[1..], base + i * strides[0] as usize, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op, PadMode, Tensor};

    /// numpy.pad by index: each output coordinate maps to an input coordinate.
    fn reference(x: &Tensor, begin: &[i64], end: &[i64], mode: PadMode, value: &[u8]) -> Tensor {
        let shape: Vec<usize> =
            x.shape().iter().zip(begin.iter().zip(end)).map(|(&n, (&b, &e))| (n as i64 + b + e) as usize).collect();
        by_index(x, &shape, value, |o| {
            let mut at = Vec::with_capacity(o.len());
            for (k, &i) in o.iter().enumerate() {
                let n = x.shape()[k] as i64;
                let lo = (-begin[k]).max(0);
                let kept = n - lo - (-end[k]).max(0);
                let r = i as i64 - begin[k].max(0);
                let q = if (0..kept).contains(&r) {
                    r
                } else {
                    match mode {
                        PadMode::Constant => return None,
                        PadMode::Edge => r.clamp(0, kept - 1),
                        PadMode::Wrap => r.rem_euclid(kept),
                        PadMode::Reflect => {
                            // Bounce back and forth, one step at a time.
                            let (mut q, mut dir) = (0i64, 1i64);
                            let steps = if r < 0 { -r } else { r };
                            if r < 0 {
                                dir = -1;
                            }
                            for _ in 0..steps {
                                if kept == 1 {
                                    break;
                                }
                                if q + dir < 0 || q + dir >= kept {
                                    dir = -dir;
                                }
                                q += dir;
                            }
                            q
                        }
                    }
                };
                at.push((q + lo) as usize);
            }
            Some(at)
        })
    }

    fn check(x: &Tensor, pads: &[i64], axes: Option<&[i64]>, mode: PadMode, value: Option<&Tensor>) {
        let rank = x.rank();
        let (mut begin, mut end) = (vec![0; rank], vec![0; rank]);
        let all: Vec<i64> = (0..rank as i64).collect();
        let axes_v = axes.unwrap_or(&all);
        for (i, &a) in axes_v.iter().enumerate() {
            let a = a.rem_euclid(rank as i64) as usize;
            begin[a] = pads[i];
            end[a] = pads[axes_v.len() + i];
        }
        let zero = vec![0u8; x.dtype().size()];
        let want = reference(x, &begin, &end, mode, value.map_or(&zero[..], |v| v.bytes()));
        let axes_t = axes.map(i64s);
        let inputs = [Some(x), Some(&i64s(pads)), value, axes_t.as_ref()];
        let got = run1(&Op::Pad { mode }, &inputs, x.dtype(), want.shape()).unwrap();
        assert_eq!(got, want, "{mode:?} pads {pads:?} axes {axes:?} of {:?}", x.shape());
    }

    #[test]
    fn every_mode_matches_the_reference() {
        let mut rng = Rng::new(51);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[3, 4, 5]);
            let value = random(&mut rng, dtype, &[]);
            for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge, PadMode::Wrap] {
                check(&x, &[1, 2, 0, 0, 1, 3], None, mode, None);
                check(&x, &[2, 3, 1, 3, 2, 4], None, mode, Some(&value));
                check(&x, &[-1, 0, 2, 1, -2, -1], None, mode, None);
                check(&x, &[1, 2, 3, 4], Some(&[-1, 0]), mode, None);
                check(&x, &[7, 9], Some(&[2]), mode, None);
                check(&x, &[0, 0, 0, 0, 0, 0], None, mode, None);
            }
        }
    }

    #[test]
    fn constant_value_fills_and_empty_inputs() {
        let mut rng = Rng::new(52);
        let x = random(&mut rng, DType::F32, &[2, 3]);
        let v = Tensor::scalar(1.25f32);
        check(&x, &[1, 1, 1, 1], None, PadMode::Constant, Some(&v));
        let one = random(&mut rng, DType::I64, &[1, 1]);
        check(&one, &[2, 3, 1, 2], None, PadMode::Reflect, None);
        let empty = random(&mut rng, DType::F32, &[0, 3]);
        check(&empty, &[1, 0, 1, 0], None, PadMode::Constant, Some(&v));
        let err =
            run1(&Op::Pad { mode: PadMode::Edge }, &[Some(&empty), Some(&i64s(&[1, 0, 1, 0]))], DType::F32, &[2, 3]);
        assert!(err.is_err());
        let big = random(&mut rng, DType::F16, &[2, 8, 66, 66]);
        check(&big, &[0, 0, 1, 2, 0, 0, 3, 1], None, PadMode::Reflect, None);
    }

    #[test]
    fn bad_pads_are_errors() {
        let x = random(&mut Rng::new(53), DType::F32, &[2, 3]);
        let pad = |pads: &[i64], axes: Option<&[i64]>, shape: &[usize]| {
            let axes = axes.map(i64s);
            run1(
                &Op::Pad { mode: PadMode::Constant },
                &[Some(&x), Some(&i64s(pads)), None, axes.as_ref()],
                DType::F32,
                shape,
            )
        };
        assert!(pad(&[1, 1, 1], None, &[4, 4]).is_err());
        assert!(pad(&[-2, 0, -1, 0], None, &[0, 3]).is_err());
        assert!(pad(&[1, 1], Some(&[2]), &[2, 5]).is_err());
        assert!(pad(&[1, 1, 1, 1], Some(&[1, -1]), &[2, 7]).is_err());
        assert!(pad(&[1, 1], Some(&[1]), &[2, 4]).is_err());
        assert!(pad(&[1, 1], Some(&[1]), &[2, 5]).is_ok());
        assert!(pad(&[i64::MAX, i64::MAX], Some(&[1]), &[2, 5]).is_err());
        assert!(pad(&[i64::MIN, 0], Some(&[1]), &[2, 5]).is_err());
        let wrong = Tensor::scalar(1i64);
        let r = run1(
            &Op::Pad { mode: PadMode::Constant },
            &[Some(&x), Some(&i64s(&[0, 0, 0, 0])), Some(&wrong)],
            DType::F32,
            &[2, 3],
        );
        assert!(r.is_err());
    }
}
