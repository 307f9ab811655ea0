//! Trilu: keeps the upper or lower triangle of each matrix in the last two dims,
//! relative to diagonal `k`, and zeroes the rest. Each row is a zero run, a copied
//! run and a zero run, so it works on bytes for every dtype (zero is all-zero bytes).

use super::{optional, output, required, scalar_int};
use crate::{CpuError, Result};
use smelt_ir::{TensorView, TensorViewMut};

const OP: &str = "Trilu";

pub fn trilu(upper: bool, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let data = required(OP, inputs, 0)?;
    let rank = data.rank();
    if rank < 2 {
        return Err(CpuError::invalid(OP, format!("input must have rank 2 or more, got {:?}", data.shape)));
    }
    let k = optional(OP, inputs, 1)?.map(|k| scalar_int(OP, "k", k)).transpose()?.unwrap_or(0);
    let out = output(OP, outputs, data.dtype, data.shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    let (rows, cols) = (data.shape[rank - 2] as i128, data.shape[rank - 1] as i128);
    let es = data.dtype.size();
    let row_bytes = cols as usize * es;
    for (r, (dst, src)) in out.data.chunks_mut(row_bytes).zip(data.data.chunks(row_bytes)).enumerate() {
        // Element (i, j) is on the kept side when j - i >= k (upper) or <= k (lower).
        let diagonal = r as i128 % rows + k as i128;
        let (keep_from, keep_to) =
            if upper { (diagonal.clamp(0, cols), cols) } else { (0, (diagonal + 1).clamp(0, cols)) };
        let (from, to) = (keep_from as usize * es, keep_to as usize * es);
        dst[..from].fill(0);
        dst[from..to].copy_from_slice(&src[from..to]);
        dst[to..].fill(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    #[test]
    fn triangles_match_the_reference() {
        let mut rng = Rng::new(61);
        for dtype in TEST_DTYPES {
            for shape in [&[4, 5][..], &[2, 3, 5, 4], &[3, 3], &[1, 6], &[0, 3], &[2, 0, 3]] {
                let x = random(&mut rng, dtype, shape);
                for upper in [true, false] {
                    for k in [None, Some(0i64), Some(1), Some(-1), Some(-2), Some(4), Some(-7), Some(i64::MAX)] {
                        let zero = vec![0u8; dtype.size()];
                        let kk = k.unwrap_or(0) as i128;
                        let want = by_index(&x, shape, &zero, |o| {
                            let (i, j) = (o[o.len() - 2] as i128, o[o.len() - 1] as i128);
                            let keep = if upper { j - i >= kk } else { j - i <= kk };
                            keep.then(|| o.to_vec())
                        });
                        let k_t = k.map(Tensor::scalar);
                        let got = run1(&Op::Trilu { upper }, &[Some(&x), k_t.as_ref()], dtype, shape).unwrap();
                        assert_eq!(got, want, "{dtype} {shape:?} upper {upper} k {k:?}");
                    }
                }
            }
        }
        let v = random(&mut rng, DType::F32, &[4]);
        assert!(run1(&Op::Trilu { upper: true }, &[Some(&v)], DType::F32, &[4]).is_err());
        let x = random(&mut rng, DType::F32, &[2, 2]);
        let k = Tensor::scalar(1f32);
        assert!(run1(&Op::Trilu { upper: true }, &[Some(&x), Some(&k)], DType::F32, &[2, 2]).is_err());
    }
}
