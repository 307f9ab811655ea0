//! Concat and Split: joining and cutting along one axis. Seen as `[outer, axis,
//! inner]`, each outer row of the result is a run of whole blocks, one per part.

use super::{int_values, layout, normalize_axis, optional, output, output_at, required};
use crate::ops::dims::Dims;
use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{TensorView, TensorViewMut};

pub fn concat(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Concat";
    let parts = (0..inputs.len()).map(|i| required(OP, inputs, i)).collect::<Result<SmallVec<[_; 8]>>>()?;
    let first = parts.first().ok_or_else(|| CpuError::invalid(OP, "needs at least one input"))?;
    let axis = normalize_axis(OP, axis, first.rank())?;
    let mut shape = Dims::from_slice(first.shape);
    shape[axis] = 0;
    for (i, part) in parts.iter().enumerate() {
        let same_dims = part.rank() == first.rank()
            && part.shape.iter().zip(first.shape).enumerate().all(|(k, (a, b))| k == axis || a == b);
        if part.dtype != first.dtype || !same_dims {
            return Err(CpuError::invalid(
                OP,
                format!(
                    "input {i} is {} {:?}, which cannot join input 0, {} {:?}, along axis {axis}",
                    part.dtype, part.shape, first.dtype, first.shape
                ),
            ));
        }
        shape[axis] += part.shape[axis];
    }
    let out = output(OP, outputs, first.dtype, &shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    // Bytes per step along the axis, and each part's block within one outer row.
    let inner = shape[axis + 1..].iter().product::<usize>() * first.dtype.size();
    let blocks: SmallVec<[(&[u8], usize); 8]> = parts.iter().map(|p| (p.data, p.shape[axis] * inner)).collect();
    let outer: usize = shape[..axis].iter().product();
    if outer == 1 {
        // One row: each part is one contiguous block, big enough to copy in parallel.
        let mut at = 0;
        for &(data, len) in &blocks {
            layout::copy_bytes(OP, &mut out.data[at..at + len], data)?;
            at += len;
        }
        return Ok(());
    }
    let fill_row = |o: usize, row: &mut [u8]| {
        let mut at = 0;
        for &(data, len) in &blocks {
            row[at..at + len].copy_from_slice(&data[o * len..(o + 1) * len]);
            at += len;
        }
    };
    let row = shape[axis] * inner;
    if layout::worth_parallel(out.data.len()) {
        crate::team::for_each_piece(out.data, row, fill_row);
    } else {
        out.data.chunks_mut(row).enumerate().for_each(|(o, r)| fill_row(o, r));
    }
    Ok(())
}

pub fn split(
    axis: i64,
    num_outputs: Option<usize>,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
) -> Result<()> {
    const OP: &str = "Split";
    let data = required(OP, inputs, 0)?;
    let axis = normalize_axis(OP, axis, data.rank())?;
    let n = data.shape[axis];
    let count = outputs.len();
    // Exporters write an empty `split` where older opsets had no way to omit it.
    let sizes: Dims = match optional(OP, inputs, 1)?.filter(|s| !s.is_empty()) {
        Some(split) => {
            let split = int_values(OP, "split", split)?;
            let sizes: Dims = split.iter().filter_map(|&s| usize::try_from(s).ok()).collect();
            if sizes.len() != count || sizes.iter().map(|&s| s as u128).sum::<u128>() != n as u128 {
                return Err(CpuError::invalid(
                    OP,
                    format!("split {split:?} does not cut axis {axis} of size {n} into {count} outputs"),
                ));
            }
            sizes
        }
        None => {
            let parts = num_outputs.unwrap_or(count);
            if parts != count || parts == 0 {
                return Err(CpuError::invalid(OP, format!("num_outputs is {parts}, but the node has {count} outputs")));
            }
            // Equal parts of ceil(n / parts); the last takes what remains.
            let chunk = n.div_ceil(parts);
            let last = n.checked_sub(chunk * (parts - 1)).ok_or_else(|| {
                CpuError::invalid(OP, format!("axis {axis} of size {n} cannot be split into {parts} parts of {chunk}"))
            })?;
            let mut sizes: Dims = smallvec![chunk; parts];
            sizes[parts - 1] = last;
            sizes
        }
    };
    // Each output is a slice of the input: [outer, len, inner] read with the input's
    // strides from the part's start.
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let src_strides = [(n * inner) as isize, inner as isize, 1];
    let mut start = 0;
    for (k, &len) in sizes.iter().enumerate() {
        let mut shape = Dims::from_slice(data.shape);
        shape[axis] = len;
        let out = output_at(OP, outputs, k, data.dtype, &shape)?;
        let src_at = layout::Strided { offset: start * inner, strides: &src_strides };
        layout::copy_to_contiguous(OP, data.dtype.size(), &[outer, len, inner], out.data, data.data, src_at)?;
        start += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    #[test]
    fn concat_along_every_axis() {
        let mut rng = Rng::new(11);
        for dtype in TEST_DTYPES {
            for axis in [-3i64, -2, -1, 0, 1, 2] {
                let a = axis.rem_euclid(3) as usize;
                let sizes = [2, 0, 3, 1];
                let parts: Vec<Tensor> = sizes
                    .iter()
                    .map(|&s| {
                        let mut shape = vec![2, 3, 4];
                        shape[a] = s;
                        random(&mut rng, dtype, &shape)
                    })
                    .collect();
                let mut shape = vec![2, 3, 4];
                shape[a] = sizes.iter().sum();
                let mut bytes = Vec::new();
                for_each_index(&shape, |o| {
                    let (mut i, mut pos) = (0, o[a]);
                    while pos >= sizes[i] {
                        pos -= sizes[i];
                        i += 1;
                    }
                    let mut at = o.to_vec();
                    at[a] = pos;
                    let es = dtype.size();
                    let s = flat(parts[i].shape(), &at) * es;
                    bytes.extend_from_slice(&parts[i].bytes()[s..s + es]);
                });
                let want = Tensor::from_bytes(dtype, &shape, &bytes).unwrap();
                let inputs: Vec<Option<&Tensor>> = parts.iter().map(Some).collect();
                let got = run1(&Op::Concat { axis }, &inputs, dtype, &shape).unwrap();
                assert_eq!(got, want, "{dtype} axis {axis}");
            }
        }
    }

    #[test]
    fn concat_large_and_mismatched() {
        let mut rng = Rng::new(12);
        let a = random(&mut rng, DType::F32, &[64, 300, 8]);
        let b = random(&mut rng, DType::F32, &[64, 200, 8]);
        let got = run1(&Op::Concat { axis: 1 }, &[Some(&a), Some(&b)], DType::F32, &[64, 500, 8]).unwrap();
        let mut bytes = Vec::new();
        for_each_index(&[64, 500, 8], |o| {
            let (t, j) = if o[1] < 300 { (&a, o[1]) } else { (&b, o[1] - 300) };
            let s = flat(t.shape(), &[o[0], j, o[2]]) * 4;
            bytes.extend_from_slice(&t.bytes()[s..s + 4]);
        });
        assert_eq!(got.bytes(), &bytes[..]);
        let got = run1(&Op::Concat { axis: 0 }, &[Some(&a), Some(&a)], DType::F32, &[128, 300, 8]).unwrap();
        assert_eq!(got.bytes(), [a.bytes(), a.bytes()].concat());

        let c = random(&mut rng, DType::F32, &[64, 300, 7]);
        assert!(run1(&Op::Concat { axis: 1 }, &[Some(&a), Some(&c)], DType::F32, &[64, 600, 8]).is_err());
        let d = random(&mut rng, DType::I64, &[64, 300, 8]);
        assert!(run1(&Op::Concat { axis: 1 }, &[Some(&a), Some(&d)], DType::F32, &[64, 600, 8]).is_err());
        assert!(run1(&Op::Concat { axis: 3 }, &[Some(&a)], DType::F32, &[64, 300, 8]).is_err());
    }

    fn check_split(x: &Tensor, axis: i64, sizes: &[usize], split: Option<Tensor>, num_outputs: Option<usize>) {
        let a = axis.rem_euclid(x.rank() as i64) as usize;
        let shapes: Vec<Vec<usize>> = sizes
            .iter()
            .map(|&s| {
                let mut shape = x.shape().to_vec();
                shape[a] = s;
                shape
            })
            .collect();
        let outs: Vec<(DType, &[usize])> = shapes.iter().map(|s| (x.dtype(), &s[..])).collect();
        let got = run(&Op::Split { axis, num_outputs }, &[Some(x), split.as_ref()], &outs).unwrap();
        let mut start = 0;
        for (k, shape) in shapes.iter().enumerate() {
            let want = by_index(x, shape, &[], |o| {
                let mut at = o.to_vec();
                at[a] += start;
                Some(at)
            });
            assert_eq!(got[k], want, "output {k} of {sizes:?}");
            start += sizes[k];
        }
    }

    #[test]
    fn split_by_sizes_count_and_num_outputs() {
        let mut rng = Rng::new(13);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[3, 7, 2]);
            check_split(&x, 1, &[2, 0, 5], Some(i64s(&[2, 0, 5])), None);
            check_split(&x, -2, &[4, 3], Some(i64s(&[4, 3])), None);
            check_split(&x, 0, &[1, 1, 1], None, None);
            check_split(&x, 1, &[2, 2, 2, 1], None, Some(4));
            check_split(&x, -1, &[1, 1], Some(i64s(&[])), None);
        }
        let x = random(&mut rng, DType::F32, &[3, 7]);
        let bad =
            [(&[3, 3][..], Some(i64s(&[3, 3])), None), (&[3, 4], Some(i64s(&[3, 5])), None), (&[3, 4], None, None)];
        for (sizes, split, num_outputs) in bad {
            let outs: Vec<(DType, Vec<usize>)> = sizes.iter().map(|&s| (DType::F32, vec![3, s])).collect();
            let outs: Vec<(DType, &[usize])> = outs.iter().map(|(d, s)| (*d, &s[..])).collect();
            let r = run(&Op::Split { axis: 1, num_outputs }, &[Some(&x), split.as_ref()], &outs);
            assert!(r.is_err(), "{sizes:?}");
        }
    }
}
