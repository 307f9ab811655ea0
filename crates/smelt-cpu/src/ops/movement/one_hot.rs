//! OneHot: every index becomes a vector of `depth` elements along `axis`, all
//! `off` but `on` at the index. Indices outside `[-depth, depth)` give all `off`.

use super::{normalize_axis, output, required};
use crate::{CpuError, Result};
use smelt_ir::{DType, TensorView, TensorViewMut};

const OP: &str = "OneHot";

pub fn one_hot(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let indices = required(OP, inputs, 0)?;
    let depth = required(OP, inputs, 1)?;
    let values = required(OP, inputs, 2)?;
    for (what, t) in [("indices", indices), ("depth", depth)] {
        if t.dtype == DType::Bool {
            return Err(CpuError::invalid(OP, format!("{what} must be numeric, got bool")));
        }
    }
    // Float indices and depth are truncated toward zero.
    let depth = match depth.to_i64_vec()[..] {
        [d] if d >= 0 => d as usize,
        ref d => return Err(CpuError::invalid(OP, format!("depth must be one non-negative value, got {d:?}"))),
    };
    if values.len() != 2 {
        return Err(CpuError::invalid(OP, format!("values must hold [off, on], got shape {:?}", values.shape)));
    }
    let axis = normalize_axis(OP, axis, indices.rank() + 1)?;
    let mut shape = indices.shape.to_vec();
    shape.insert(axis, depth);
    let out = output(OP, outputs, values.dtype, &shape)?;
    let es = values.dtype.size();
    let (off, on) = values.data.split_at(es);
    super::layout::fill(out.data, off);
    // Output is [outer, depth, inner] around the new axis; index [o, i] sets [o, v, i].
    let inner: usize = indices.shape[axis..].iter().product();
    if inner == 0 || depth == 0 {
        return Ok(());
    }
    for (n, v) in indices.to_i64_vec().into_iter().enumerate() {
        let v = if v < 0 { v + depth as i64 } else { v };
        if (0..depth as i64).contains(&v) {
            let (o, i) = (n / inner, n % inner);
            let at = ((o * depth + v as usize) * inner + i) * es;
            out.data[at..at + es].copy_from_slice(on);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    fn check(indices: &Tensor, depth: &Tensor, values: &Tensor, axis: i64) {
        let d = depth.to_i64_vec()[0] as usize;
        let rank = indices.rank();
        let a = axis.rem_euclid(rank as i64 + 1) as usize;
        let mut shape = indices.shape().to_vec();
        shape.insert(a, d);
        let idx = indices.to_i64_vec();
        let es = values.dtype().size();
        let (off, on) = (&values.bytes()[..es], &values.bytes()[es..]);
        let mut bytes = Vec::new();
        for_each_index(&shape, |o| {
            let mut at = o.to_vec();
            let k = at.remove(a) as i64;
            let v = idx[flat(indices.shape(), &at)];
            let hit = v == k || v + d as i64 == k;
            bytes.extend_from_slice(if hit { on } else { off });
        });
        let want = Tensor::from_bytes(values.dtype(), &shape, &bytes).unwrap();
        let got =
            run1(&Op::OneHot { axis }, &[Some(indices), Some(depth), Some(values)], values.dtype(), &shape).unwrap();
        assert_eq!(got, want, "{:?} depth {d} axis {axis}", indices);
    }

    #[test]
    fn one_hot_matches_the_reference() {
        let mut rng = Rng::new(71);
        let raw: Vec<i64> = (0..12).map(|_| rng.below(13) as i64 - 6).collect();
        let idx_i64 = Tensor::from_slice(&[3, 4], &raw).unwrap();
        let idx_i32 = Tensor::from_slice(&[3, 4], &raw.iter().map(|&v| v as i32).collect::<Vec<_>>()).unwrap();
        let idx_f32 = Tensor::from_slice(&[12], &raw.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap();
        for dtype in TEST_DTYPES {
            let values = random(&mut rng, dtype, &[2]);
            for axis in [-3, -2, -1, 0, 1, 2] {
                check(&idx_i64, &Tensor::scalar(5i64), &values, axis);
                check(&idx_i32, &Tensor::from_slice(&[1], &[4.0f32]).unwrap(), &values, axis);
            }
            check(&idx_f32, &Tensor::scalar(6i32), &values, 0);
            check(&Tensor::scalar(2i64), &Tensor::scalar(3i64), &values, -1);
            check(&Tensor::from_slice::<i64>(&[0, 2], &[]).unwrap(), &Tensor::scalar(3i64), &values, 1);
        }
        let values = Tensor::from_slice(&[2], &[0f32, 1.0]).unwrap();
        let run = |depth: Tensor, axis: i64, shape: &[usize]| {
            run1(&Op::OneHot { axis }, &[Some(&idx_i64), Some(&depth), Some(&values)], DType::F32, shape)
        };
        assert!(run(Tensor::scalar(-1i64), -1, &[3, 4, 0]).is_err());
        assert!(run(Tensor::scalar(3i64), 3, &[3, 4, 3]).is_err());
        assert!(run(Tensor::scalar(3i64), -4, &[3, 3, 4]).is_err());
        assert!(run(Tensor::scalar(3i64), -1, &[3, 4, 3]).is_ok());
    }
}
