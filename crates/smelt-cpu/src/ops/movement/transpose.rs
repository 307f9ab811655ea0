//! Transpose: a strided read of the input in output order. The layout engine turns
//! the attention shuffles into runs of whole rows ([b,s,h,d] → [b,h,s,d] keeps `d`
//! innermost) or a blocked 2-D transpose per matrix ([b,h,s,d] → [b,h,d,s]).

use super::{layout, output, required};
use crate::ops::dims::{Dims, SignedDims};
use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{TensorView, TensorViewMut};

const OP: &str = "Transpose";

pub fn transpose(perm: Option<&[usize]>, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let data = required(OP, inputs, 0)?;
    let rank = data.rank();
    let perm: Dims = match perm {
        Some(p) => Dims::from_slice(p),
        None => (0..rank).rev().collect(),
    };
    let mut seen: SmallVec<[bool; 8]> = smallvec![false; rank];
    let is_permutation = perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if !is_permutation {
        return Err(CpuError::invalid(OP, format!("perm {perm:?} is not a permutation of 0..{rank}")));
    }
    let shape: Dims = perm.iter().map(|&p| data.shape[p]).collect();
    let in_strides = layout::row_major(data.shape);
    let src_strides: SignedDims = perm.iter().map(|&p| in_strides[p]).collect();
    let out = output(OP, outputs, data.dtype, &shape)?;
    let src_at = layout::Strided { offset: 0, strides: &src_strides };
    layout::copy_to_contiguous(OP, data.dtype.size(), &shape, out.data, data.data, src_at)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op};

    fn check(dtype: DType, shape: &[usize], perm: Option<Vec<usize>>) {
        let x = random(&mut Rng::new(shape.len() as u64 + 7), dtype, shape);
        let p = perm.clone().unwrap_or_else(|| (0..shape.len()).rev().collect());
        let out_shape: Vec<usize> = p.iter().map(|&i| shape[i]).collect();
        let want = by_index(&x, &out_shape, &[], |o| {
            let mut src = vec![0; shape.len()];
            for (k, &pk) in p.iter().enumerate() {
                src[pk] = o[k];
            }
            Some(src)
        });
        let got = run1(&Op::Transpose { perm }, &[Some(&x)], dtype, &out_shape).unwrap();
        assert_eq!(got, want, "{dtype} {shape:?} perm {p:?}");
    }

    #[test]
    fn transposes_match_the_reference() {
        for dtype in TEST_DTYPES {
            check(dtype, &[3, 5], None);
            check(dtype, &[40, 37], Some(vec![1, 0]));
            check(dtype, &[2, 3, 4], Some(vec![1, 2, 0]));
            check(dtype, &[2, 3, 4], None);
            check(dtype, &[2, 5, 3, 8], Some(vec![0, 2, 1, 3]));
            check(dtype, &[2, 3, 5, 8], Some(vec![0, 1, 3, 2]));
            check(dtype, &[2, 1, 3, 1, 2], Some(vec![4, 1, 0, 3, 2]));
            check(dtype, &[2, 0, 3], Some(vec![2, 0, 1]));
            check(dtype, &[], None);
            check(dtype, &[7], None);
        }
    }

    #[test]
    fn attention_sized_transposes() {
        check(DType::F32, &[1, 128, 12, 64], Some(vec![0, 2, 1, 3]));
        check(DType::F32, &[1, 12, 128, 64], Some(vec![0, 1, 3, 2]));
        check(DType::F16, &[2, 12, 65, 64], Some(vec![0, 1, 3, 2]));
    }

    #[test]
    fn bad_perms_and_shapes_are_errors() {
        let x = random(&mut Rng::new(1), DType::F32, &[2, 3]);
        for perm in [vec![0], vec![0, 0], vec![0, 2], vec![1, 0, 2]] {
            assert!(run1(&Op::Transpose { perm: Some(perm) }, &[Some(&x)], DType::F32, &[3, 2]).is_err());
        }
        assert!(run1(&Op::Transpose { perm: None }, &[Some(&x)], DType::F32, &[2, 3]).is_err());
        assert!(run1(&Op::Transpose { perm: None }, &[Some(&x)], DType::I64, &[3, 2]).is_err());
    }
}
