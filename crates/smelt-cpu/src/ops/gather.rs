//! Index-driven reads and writes: Gather, GatherElements, GatherND, ScatterND and
//! ScatterElements.
//!
//! Indices are i32 or i64 and may be negative (counting from the end of their
//! axis); every index is checked before anything is written, and one out of range
//! is an error naming the op, the index, the axis and its size. Gathers move
//! elements as bytes, so one path serves every dtype; scatters with a reduction
//! combine values and so dispatch on the dtype.

use super::layout;
use super::movement::{normalize_axis, output, required};
use crate::{CpuError, Result};
use rayon::prelude::*;
use smelt_ir::{DType, Op, ScatterReduction, TensorView, TensorViewMut};

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    match op {
        Op::Gather { axis } => gather(*axis, inputs, outputs),
        Op::GatherElements { axis } => gather_elements(*axis, inputs, outputs),
        Op::GatherND { batch_dims } => gather_nd(*batch_dims, inputs, outputs),
        Op::ScatterND { reduction } => scatter_nd(*reduction, inputs, outputs),
        Op::ScatterElements { axis, reduction } => scatter_elements(*axis, *reduction, inputs, outputs),
        other => Err(CpuError::invalid(other.name(), "is not a gather or scatter op")),
    }
}

/// The values of an index tensor, which must be i32 or i64.
fn index_values(op: &'static str, indices: TensorView) -> Result<Vec<i64>> {
    match indices.dtype {
        DType::I64 => Ok(indices.as_slice::<i64>()?.to_vec()),
        DType::I32 => Ok(indices.as_slice::<i32>()?.iter().map(|&i| i as i64).collect()),
        other => Err(CpuError::invalid(op, format!("indices must be int32 or int64, got {other}"))),
    }
}

/// `index` as a position along an axis of `size`, counting negative indices from
/// the end.
fn resolve(op: &'static str, index: i64, axis: usize, size: usize) -> Result<usize> {
    let size_i = size as i64;
    let i = if index < 0 { index + size_i } else { index };
    if (0..size_i).contains(&i) {
        Ok(i as usize)
    } else {
        Err(CpuError::invalid(op, format!("index {index} is out of range for axis {axis} of size {size}")))
    }
}

fn gather(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Gather";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let axis = normalize_axis(OP, axis, data.rank())?;
    let size = data.shape[axis];
    let rows =
        index_values(OP, indices)?.into_iter().map(|i| resolve(OP, i, axis, size)).collect::<Result<Vec<usize>>>()?;
    let shape: Vec<usize> =
        data.shape[..axis].iter().chain(indices.shape).chain(&data.shape[axis + 1..]).copied().collect();
    let out = output(OP, outputs, data.dtype, &shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    // Seen as [outer, size, inner], each output block [o, j] is input block
    // [o, rows[j]]: for axis 0 that is an embedding lookup of whole rows.
    let es = data.dtype.size();
    let inner = data.shape[axis + 1..].iter().product::<usize>();
    let block = inner * es;
    let n = rows.len();
    let copy_block = |(b, dst): (usize, &mut [u8])| {
        let (o, j) = (b / n, b % n);
        let src = (o * size + rows[j]) * block;
        dst.copy_from_slice(&data.data[src..src + block]);
    };
    if inner == 1 {
        // Single elements: a typed move per index instead of a memcpy call.
        return gather_elements_1d(OP, es, out.data, data.data, size, &rows);
    }
    if layout::worth_parallel(out.data.len()) {
        out.data.par_chunks_mut(block).enumerate().for_each(copy_block);
    } else {
        out.data.chunks_mut(block).enumerate().for_each(copy_block);
    }
    Ok(())
}

/// Gather of single elements along the last axis: output element `[o, j]` is input
/// element `[o, rows[j]]` of rows of `size`.
fn gather_elements_1d(
    op: &'static str,
    es: usize,
    dst: &mut [u8],
    src: &[u8],
    size: usize,
    rows: &[usize],
) -> Result<()> {
    fn typed<const N: usize>(dst: &mut [u8], src: &[u8], size: usize, rows: &[usize])
    where
        [u8; N]: bytemuck::Pod,
    {
        let dst: &mut [[u8; N]] = bytemuck::cast_slice_mut(dst);
        let src: &[[u8; N]] = bytemuck::cast_slice(src);
        for (o, out) in dst.chunks_mut(rows.len()).enumerate() {
            let row = &src[o * size..(o + 1) * size];
            for (v, &r) in out.iter_mut().zip(rows) {
                *v = row[r];
            }
        }
    }
    match es {
        1 => typed::<1>(dst, src, size, rows),
        2 => typed::<2>(dst, src, size, rows),
        4 => typed::<4>(dst, src, size, rows),
        8 => typed::<8>(dst, src, size, rows),
        _ => {
            return Err(CpuError::invalid(op, format!("no gather for elements of {es} bytes")));
        }
    }
    Ok(())
}

fn gather_elements(_axis: i64, _inputs: &[Option<TensorView>], _outputs: &mut [TensorViewMut]) -> Result<()> {
    Err(CpuError::invalid("GatherElements", "not supported"))
}

fn gather_nd(_batch_dims: usize, _inputs: &[Option<TensorView>], _outputs: &mut [TensorViewMut]) -> Result<()> {
    Err(CpuError::invalid("GatherND", "not supported"))
}

fn scatter_nd(
    _reduction: ScatterReduction,
    _inputs: &[Option<TensorView>],
    _outputs: &mut [TensorViewMut],
) -> Result<()> {
    Err(CpuError::invalid("ScatterND", "not supported"))
}

fn scatter_elements(
    _axis: i64,
    _reduction: ScatterReduction,
    _inputs: &[Option<TensorView>],
    _outputs: &mut [TensorViewMut],
) -> Result<()> {
    Err(CpuError::invalid("ScatterElements", "not supported"))
}

#[cfg(test)]
mod tests {
    use super::super::movement::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    fn check_gather(x: &Tensor, indices: &Tensor, axis: i64) {
        let a = axis.rem_euclid(x.rank() as i64) as usize;
        let idx = indices.to_i64_vec();
        let q = indices.rank();
        let shape: Vec<usize> =
            x.shape()[..a].iter().chain(indices.shape()).chain(&x.shape()[a + 1..]).copied().collect();
        let want = by_index(x, &shape, &[], |o| {
            let j = flat(indices.shape(), &o[a..a + q]);
            let i = idx[j].rem_euclid(x.shape()[a] as i64) as usize;
            Some(o[..a].iter().copied().chain([i]).chain(o[a + q..].iter().copied()).collect())
        });
        let got =
            super::super::movement::testing::run1(&Op::Gather { axis }, &[Some(x), Some(indices)], x.dtype(), &shape)
                .unwrap();
        assert_eq!(got, want, "{} {:?} axis {axis} indices {:?}", x.dtype(), x.shape(), indices.shape());
    }

    #[test]
    fn gather_along_every_axis() {
        let mut rng = Rng::new(41);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[4, 5, 3]);
            for axis in [-3i64, -2, -1, 0, 1, 2] {
                let n = x.shape()[axis.rem_euclid(3) as usize] as i64;
                let idx: Vec<i64> = (0..6).map(|k| (k * 7 % (2 * n)) - n).collect();
                check_gather(&x, &Tensor::from_slice(&[2, 3], &idx).unwrap(), axis);
                let idx32: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
                check_gather(&x, &Tensor::from_slice(&[6], &idx32).unwrap(), axis);
                check_gather(&x, &Tensor::scalar(-1i64), axis);
                check_gather(&x, &Tensor::from_slice::<i64>(&[0], &[]).unwrap(), axis);
            }
        }
    }

    #[test]
    fn embedding_lookup() {
        let mut rng = Rng::new(42);
        let table = random(&mut rng, DType::F32, &[1000, 96]);
        let ids: Vec<i64> = (0..256).map(|_| rng.below(1000) as i64).collect();
        check_gather(&table, &Tensor::from_slice(&[2, 128], &ids).unwrap(), 0);
    }

    #[test]
    fn out_of_range_gather_names_the_index() {
        let x = random(&mut Rng::new(43), DType::F32, &[2, 5]);
        let idx = Tensor::from_slice(&[2], &[1i64, 7]).unwrap();
        let err = run1(&Op::Gather { axis: 1 }, &[Some(&x), Some(&idx)], DType::F32, &[2, 2]).unwrap_err();
        assert_eq!(err.to_string(), "Gather: index 7 is out of range for axis 1 of size 5");
        let idx = Tensor::from_slice(&[1], &[-3i32]).unwrap();
        assert!(run1(&Op::Gather { axis: 0 }, &[Some(&x), Some(&idx)], DType::F32, &[1, 5]).is_err());
        let idx = Tensor::from_slice(&[1], &[0f32]).unwrap();
        assert!(run1(&Op::Gather { axis: 0 }, &[Some(&x), Some(&idx)], DType::F32, &[1, 5]).is_err());
        let idx = Tensor::from_slice(&[1], &[0i64]).unwrap();
        assert!(run1(&Op::Gather { axis: 2 }, &[Some(&x), Some(&idx)], DType::F32, &[2, 5]).is_err());
    }
}
