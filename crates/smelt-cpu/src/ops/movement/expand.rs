//! Expand and Tile: repetition expressed as stride 0. Expand reads a broadcast
//! dimension with stride 0; Tile reads the input through a shape of interleaved
//! `[repeats, dim]` pairs whose repeat axes have stride 0.

use super::{int_values, layout, output, required};
use crate::ops::dims::{Dims, SignedDims};
use crate::{CpuError, Result};
use smallvec::smallvec;
use smelt_ir::{TensorView, TensorViewMut};

pub fn expand(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Expand";
    let data = required(OP, inputs, 0)?;
    let target = int_values(OP, "shape", required(OP, inputs, 1)?)?;
    if let Some(d) = target.iter().find(|&&d| d < 0) {
        return Err(CpuError::invalid(OP, format!("shape {target:?} has the negative dim {d}")));
    }
    // Numpy broadcasting of the input's shape with `shape`, aligned at the right.
    let rank = data.rank().max(target.len());
    let in_strides = layout::row_major(data.shape);
    let mut shape: Dims = smallvec![0; rank];
    let mut strides: SignedDims = smallvec![0; rank];
    for k in 0..rank {
        let dim_in = (k + data.rank()).checked_sub(rank).map(|i| (data.shape[i], in_strides[i]));
        let want = (k + target.len()).checked_sub(rank).map_or(1, |i| target[i] as usize);
        (shape[k], strides[k]) = match dim_in {
            None => (want, 0),
            Some((n, s)) if n == want || want == 1 => (n, s),
            Some((1, _)) => (want, 0),
            Some((n, _)) => {
                return Err(CpuError::invalid(
                    OP,
                    format!("input shape {:?} cannot broadcast to {target:?}: dim {n} against {want}", data.shape),
                ));
            }
        };
    }
    let out = output(OP, outputs, data.dtype, &shape)?;
    let src_at = layout::Strided { offset: 0, strides: &strides };
    layout::copy_to_contiguous(OP, data.dtype.size(), &shape, out.data, data.data, src_at)
}

pub fn tile(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Tile";
    let data = required(OP, inputs, 0)?;
    let repeats = int_values(OP, "repeats", required(OP, inputs, 1)?)?;
    if repeats.len() != data.rank() || repeats.iter().any(|&r| r < 0) {
        return Err(CpuError::invalid(
            OP,
            format!("repeats {repeats:?} must be {} non-negative counts, one per input dim", data.rank()),
        ));
    }
    let in_strides = layout::row_major(data.shape);
    let out_shape = data
        .shape
        .iter()
        .zip(&repeats)
        .map(|(&n, &r)| {
            n.checked_mul(r as usize)
                .ok_or_else(|| CpuError::invalid(OP, format!("repeats {repeats:?} overflow the output size")))
        })
        .collect::<Result<Dims>>()?;
    // Output dim k, of size r*n, is the pair [r, n] read with strides [0, stride_k].
    let pairs: Dims = data.shape.iter().zip(&repeats).flat_map(|(&n, &r)| [r as usize, n]).collect();
    let strides: SignedDims = in_strides.iter().flat_map(|&s| [0, s]).collect();
    let out = output(OP, outputs, data.dtype, &out_shape)?;
    let src_at = layout::Strided { offset: 0, strides: &strides };
    layout::copy_to_contiguous(OP, data.dtype.size(), &pairs, out.data, data.data, src_at)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op};

    #[test]
    fn expand_broadcasts_both_ways() {
        let mut rng = Rng::new(31);
        let cases: [(&[usize], &[i64], &[usize]); 8] = [
            (&[3, 1], &[2, 3, 4], &[2, 3, 4]),
            (&[1, 4], &[3, 1], &[3, 4]),
            (&[3], &[2, 1, 3], &[2, 1, 3]),
            (&[2, 3], &[1], &[2, 3]),
            (&[2, 1, 3], &[2, 5, 3], &[2, 5, 3]),
            (&[1], &[0, 2], &[0, 2]),
            (&[], &[2, 2], &[2, 2]),
            (&[1, 1], &[300, 400], &[300, 400]),
        ];
        for dtype in TEST_DTYPES {
            for (in_shape, target, out_shape) in cases {
                let x = random(&mut rng, dtype, in_shape);
                let offset = out_shape.len() - in_shape.len();
                let want = by_index(&x, out_shape, &[], |o| {
                    Some(in_shape.iter().enumerate().map(|(k, &n)| if n == 1 { 0 } else { o[k + offset] }).collect())
                });
                let got = run1(&Op::Expand, &[Some(&x), Some(&i64s(target))], dtype, out_shape).unwrap();
                assert_eq!(got, want, "{dtype} {in_shape:?} -> {target:?}");
            }
        }
        let x = random(&mut rng, DType::F32, &[2, 3]);
        assert!(run1(&Op::Expand, &[Some(&x), Some(&i64s(&[4, 3]))], DType::F32, &[4, 3]).is_err());
        assert!(run1(&Op::Expand, &[Some(&x), Some(&i64s(&[-1, 3]))], DType::F32, &[2, 3]).is_err());
        assert!(run1(&Op::Expand, &[Some(&x), Some(&i64s(&[2, 2, 3]))], DType::F32, &[2, 3]).is_err());
    }

    #[test]
    fn tile_repeats_every_axis() {
        let mut rng = Rng::new(32);
        let cases: [(&[usize], &[i64]); 6] = [
            (&[2, 3], &[1, 1]),
            (&[2, 3], &[2, 3]),
            (&[3], &[4]),
            (&[2, 1, 3], &[1, 4, 2]),
            (&[2, 3], &[0, 2]),
            (&[], &[]),
        ];
        for dtype in TEST_DTYPES {
            for (in_shape, repeats) in cases {
                let x = random(&mut rng, dtype, in_shape);
                let out_shape: Vec<usize> = in_shape.iter().zip(repeats).map(|(&n, &r)| n * r as usize).collect();
                let want =
                    by_index(&x, &out_shape, &[], |o| Some(o.iter().zip(in_shape).map(|(&i, &n)| i % n).collect()));
                let got = run1(&Op::Tile, &[Some(&x), Some(&i64s(repeats))], dtype, &out_shape).unwrap();
                assert_eq!(got, want, "{dtype} {in_shape:?} x {repeats:?}");
            }
        }
        let x = random(&mut rng, DType::F32, &[2, 3]);
        assert!(run1(&Op::Tile, &[Some(&x), Some(&i64s(&[2]))], DType::F32, &[4, 3]).is_err());
        assert!(run1(&Op::Tile, &[Some(&x), Some(&i64s(&[-1, 1]))], DType::F32, &[0, 3]).is_err());
        assert!(run1(&Op::Tile, &[Some(&x), Some(&i64s(&[i64::MAX, 1]))], DType::F32, &[2, 3]).is_err());
    }
}
