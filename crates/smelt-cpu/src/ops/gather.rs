//! Index-driven reads and writes: Gather, GatherElements, GatherND, ScatterND and
//! ScatterElements.
//!
//! Indices are i32 or i64 and may be negative (counting from the end of their
//! axis); every index is checked before anything is written, and one out of range
//! is an error naming the op, the index, the axis and its size. Gathers move
//! elements as bytes, so one path serves every dtype; scatters with a reduction
//! combine values and so dispatch on the dtype.

use super::dims::Dims;
use super::layout;
use super::movement::{normalize_axis, output, required};
use crate::{CpuError, Result};
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

/// The values of an index tensor, which must be i32 or i64, read in place (a
/// copy would be an allocation per run).
#[derive(Clone, Copy)]
enum IndexValues<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
}

impl<'a> IndexValues<'a> {
    fn of(op: &'static str, indices: TensorView<'a>) -> Result<IndexValues<'a>> {
        match indices.dtype {
            DType::I64 => Ok(IndexValues::I64(indices.as_slice()?)),
            DType::I32 => Ok(IndexValues::I32(indices.as_slice()?)),
            other => Err(CpuError::invalid(op, format!("indices must be int32 or int64, got {other}"))),
        }
    }

    fn len(self) -> usize {
        match self {
            IndexValues::I64(v) => v.len(),
            IndexValues::I32(v) => v.len(),
        }
    }

    fn is_empty(self) -> bool {
        self.len() == 0
    }

    fn get(self, i: usize) -> i64 {
        match self {
            IndexValues::I64(v) => v[i],
            IndexValues::I32(v) => v[i] as i64,
        }
    }

    fn iter(self) -> impl Iterator<Item = i64> + 'a {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// `index` as a position along an axis of `size`, counting negative indices from
/// the end.
fn resolve(op: &'static str, index: i64, axis: usize, size: usize) -> Result<usize> {
    let size_i = size as i64;
    if (-size_i..size_i).contains(&index) {
        Ok(position(index, size))
    } else {
        Err(CpuError::invalid(op, format!("index {index} is out of range for axis {axis} of size {size}")))
    }
}

/// The position of an `index` already [`resolve`]d along an axis of `size`.
#[inline]
fn position(index: i64, size: usize) -> usize {
    (if index < 0 { index + size as i64 } else { index }) as usize
}

fn gather(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Gather";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let axis = normalize_axis(OP, axis, data.rank())?;
    let size = data.shape[axis];
    let values = IndexValues::of(OP, indices)?;
    for index in values.iter() {
        resolve(OP, index, axis, size)?;
    }
    // Every index is in range: from here on `position` turns each into its row.
    let row = |j: usize| position(values.get(j), size);
    let shape: Dims = data.shape[..axis].iter().chain(indices.shape).chain(&data.shape[axis + 1..]).copied().collect();
    let out = output(OP, outputs, data.dtype, &shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    // Seen as [outer, size, inner], each output block [o, j] is input block
    // [o, row(j)]: for axis 0 that is an embedding lookup of whole rows.
    let es = data.dtype.size();
    let inner = data.shape[axis + 1..].iter().product::<usize>();
    let block = inner * es;
    let n = values.len();
    let copy_block = |b: usize, dst: &mut [u8]| {
        let (o, j) = (b / n, b % n);
        let src = (o * size + row(j)) * block;
        dst.copy_from_slice(&data.data[src..src + block]);
    };
    if inner == 1 {
        // Single elements: a typed move per index instead of a memcpy call each.
        let outer: usize = data.shape[..axis].iter().product();
        let positions = (0..outer).flat_map(|o| (0..n).map(move |j| o * size + row(j)));
        move_elements(es, out.data, data.data, positions);
        return Ok(());
    }
    if layout::worth_parallel(out.data.len()) {
        crate::team::for_each_piece(out.data, block, copy_block);
    } else {
        out.data.chunks_mut(block).enumerate().for_each(|(b, dst)| copy_block(b, dst));
    }
    Ok(())
}

/// `dst[i] = src[at[i]]` for elements of `es` bytes, until `dst` or `at` ends.
fn move_elements(es: usize, dst: &mut [u8], src: &[u8], at: impl Iterator<Item = usize>) {
    fn typed<const N: usize>(dst: &mut [u8], src: &[u8], at: impl Iterator<Item = usize>)
    where
        [u8; N]: bytemuck::Pod,
    {
        let dst: &mut [[u8; N]] = bytemuck::cast_slice_mut(dst);
        let src: &[[u8; N]] = bytemuck::cast_slice(src);
        for (d, i) in dst.iter_mut().zip(at) {
            *d = src[i];
        }
    }
    match es {
        1 => typed::<1>(dst, src, at),
        2 => typed::<2>(dst, src, at),
        4 => typed::<4>(dst, src, at),
        8 => typed::<8>(dst, src, at),
        _ => {
            for (d, i) in dst.chunks_exact_mut(es).zip(at) {
                d.copy_from_slice(&src[i * es..(i + 1) * es]);
            }
        }
    }
}

/// For GatherElements and ScatterElements: the flat position in `data` of each
/// element of `indices`, which is that element's own coordinates with the one
/// along `axis` replaced by its value.
fn element_positions(op: &'static str, data: TensorView, indices: TensorView, axis: i64) -> Result<Vec<usize>> {
    let rank = data.rank();
    let axis = normalize_axis(op, axis, rank)?;
    let fits = indices.rank() == rank
        && indices.shape.iter().zip(data.shape).enumerate().all(|(k, (&i, &d))| k == axis || i <= d);
    if !fits {
        return Err(CpuError::invalid(
            op,
            format!("indices of shape {:?} do not fit data of shape {:?} off axis {axis}", indices.shape, data.shape),
        ));
    }
    let values = IndexValues::of(op, indices)?;
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let strides = super::dims::strides_of(data.shape);
    let size = data.shape[axis];
    // Walk the indices' coordinates with an odometer, keeping the data offset of
    // the coordinates other than `axis` up to date.
    let mut coords: Dims = smallvec::smallvec![0; rank];
    let mut base = 0usize;
    let mut positions = Vec::with_capacity(values.len());
    for v in values.iter() {
        positions.push(base + resolve(op, v, axis, size)? * strides[axis]);
        for k in (0..rank).rev() {
            coords[k] += 1;
            if k != axis {
                base += strides[k];
            }
            if coords[k] < indices.shape[k] {
                break;
            }
            if k != axis {
                base -= strides[k] * coords[k];
            }
            coords[k] = 0;
        }
    }
    Ok(positions)
}

fn gather_elements(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "GatherElements";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let positions = element_positions(OP, data, indices, axis)?;
    let out = output(OP, outputs, data.dtype, indices.shape)?;
    move_elements(data.dtype.size(), out.data, data.data, positions.into_iter());
    Ok(())
}

/// For GatherND and ScatterND: the shape of `indices` split into tuples of its last
/// dim, each resolved to the flat element offset in `data` of the slice it picks.
/// The first `batch_dims` dims of `indices` and `data` are shared batch dims.
struct NdSlices {
    /// Element offset of each tuple's slice in `data`.
    offsets: Vec<usize>,
    /// Elements per slice.
    slice: usize,
    /// Data dims each slice spans (`data.shape[batch_dims + k..]`).
    slice_dims: Vec<usize>,
}

fn nd_slices(op: &'static str, data: TensorView, indices: TensorView, batch_dims: usize) -> Result<NdSlices> {
    let (r, q) = (data.rank(), indices.rank());
    let Some(&k) = indices.shape.last() else {
        return Err(CpuError::invalid(op, "indices must have rank 1 or more"));
    };
    if batch_dims >= q.min(r) || data.shape[..batch_dims] != indices.shape[..batch_dims] || k > r - batch_dims {
        return Err(CpuError::invalid(
            op,
            format!(
                "indices of shape {:?} with batch_dims {batch_dims} cannot index data of shape {:?}",
                indices.shape, data.shape
            ),
        ));
    }
    let values = IndexValues::of(op, indices)?;
    let strides = super::dims::strides_of(data.shape);
    let slice_dims = data.shape[batch_dims + k..].to_vec();
    let slice: usize = slice_dims.iter().product();
    let batch_size: usize = data.shape[batch_dims..].iter().product();
    let per_batch: usize = indices.shape[batch_dims..q - 1].iter().product();
    let tuples: usize = indices.shape[..q - 1].iter().product();
    let mut offsets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut offset = t / per_batch * batch_size;
        for j in 0..k {
            let (axis, v) = (batch_dims + j, values.get(t * k + j));
            offset += resolve(op, v, axis, data.shape[axis])? * strides[axis];
        }
        offsets.push(offset);
    }
    Ok(NdSlices { offsets, slice, slice_dims })
}

fn gather_nd(batch_dims: usize, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "GatherND";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let nd = nd_slices(OP, data, indices, batch_dims)?;
    let q = indices.rank();
    let shape: Vec<usize> = indices.shape[..q - 1].iter().chain(&nd.slice_dims).copied().collect();
    let out = output(OP, outputs, data.dtype, &shape)?;
    if out.data.is_empty() {
        return Ok(());
    }
    let block = nd.slice * data.dtype.size();
    let copy_slice = |i: usize, dst: &mut [u8]| {
        dst.copy_from_slice(&data.data[nd.offsets[i] * data.dtype.size()..][..block]);
    };
    if layout::worth_parallel(out.data.len()) {
        crate::team::for_each_piece(out.data, block, copy_slice);
    } else {
        out.data.chunks_mut(block).enumerate().for_each(|(i, dst)| copy_slice(i, dst));
    }
    Ok(())
}

fn scatter_nd(reduction: ScatterReduction, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "ScatterND";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let updates = required(OP, inputs, 2)?;
    let nd = nd_slices(OP, data, indices, 0)?;
    let q = indices.rank();
    let updates_shape: Vec<usize> = indices.shape[..q - 1].iter().chain(&nd.slice_dims).copied().collect();
    if updates.shape != updates_shape || updates.dtype != data.dtype {
        return Err(CpuError::invalid(
            OP,
            format!(
                "updates must be {} {updates_shape:?} for these indices, got {} {:?}",
                data.dtype, updates.dtype, updates.shape
            ),
        ));
    }
    let out = output(OP, outputs, data.dtype, data.shape)?;
    out.data.copy_from_slice(data.data);
    scatter(OP, data.dtype, reduction, out.data, updates.data, &nd.offsets, nd.slice)
}

fn scatter_elements(
    axis: i64,
    reduction: ScatterReduction,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
) -> Result<()> {
    const OP: &str = "ScatterElements";
    let data = required(OP, inputs, 0)?;
    let indices = required(OP, inputs, 1)?;
    let updates = required(OP, inputs, 2)?;
    if updates.shape != indices.shape || updates.dtype != data.dtype {
        return Err(CpuError::invalid(
            OP,
            format!(
                "updates must be {} {:?} like the indices, got {} {:?}",
                data.dtype, indices.shape, updates.dtype, updates.shape
            ),
        ));
    }
    let positions = element_positions(OP, data, indices, axis)?;
    let out = output(OP, outputs, data.dtype, data.shape)?;
    out.data.copy_from_slice(data.data);
    scatter(OP, data.dtype, reduction, out.data, updates.data, &positions, 1)
}

/// Folds update slice `t` (of `slice` elements) into `dst` at element offset
/// `offsets[t]`, in order, so that with no reduction the last duplicate wins.
fn scatter(
    op: &'static str,
    dtype: DType,
    reduction: ScatterReduction,
    dst: &mut [u8],
    updates: &[u8],
    offsets: &[usize],
    slice: usize,
) -> Result<()> {
    if reduction == ScatterReduction::None {
        // A plain overwrite moves bytes, whatever the dtype.
        let es = dtype.size();
        for (t, &offset) in offsets.iter().enumerate() {
            let (at, from) = (offset * es, t * slice * es);
            dst[at..at + slice * es].copy_from_slice(&updates[from..from + slice * es]);
        }
        return Ok(());
    }
    if dtype == DType::Bool {
        // Booleans combine logically: add and max are `or`, mul and min are `and`.
        let f: fn(u8, u8) -> u8 = match reduction {
            ScatterReduction::Add | ScatterReduction::Max => |a, b| a | b,
            _ => |a, b| a & b,
        };
        fold(dst, updates, offsets, slice, f);
        return Ok(());
    }
    smelt_ir::dispatch_dtype!(dtype, T => {
        let dst = bytemuck::try_cast_slice_mut::<u8, T>(dst)
            .map_err(|e| CpuError::invalid(op, format!("output buffer cannot hold {dtype}: {e}")))?;
        let updates = bytemuck::try_cast_slice::<u8, T>(updates)
            .map_err(|e| CpuError::invalid(op, format!("updates buffer cannot hold {dtype}: {e}")))?;
        fold(dst, updates, offsets, slice, combine::<T>(reduction));
    });
    Ok(())
}

fn fold<T: Copy>(dst: &mut [T], updates: &[T], offsets: &[usize], slice: usize, f: fn(T, T) -> T) {
    for (t, &offset) in offsets.iter().enumerate() {
        let src = &updates[t * slice..(t + 1) * slice];
        for (d, &u) in dst[offset..offset + slice].iter_mut().zip(src) {
            *d = f(*d, u);
        }
    }
}

/// Arithmetic a scatter reduction needs. Integers wrap on overflow, as in C.
trait Combine: Copy + PartialOrd {
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
}

macro_rules! combine_int {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            fn mul(self, other: Self) -> Self {
                self.wrapping_mul(other)
            }
        }
    )*};
}
combine_int!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! combine_float {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn mul(self, other: Self) -> Self {
                self * other
            }
        }
    )*};
}
combine_float!(f32, f64, half::f16, half::bf16);

/// How a reduction folds an update `u` into the value `a` already there.
fn combine<T: Combine>(reduction: ScatterReduction) -> fn(T, T) -> T {
    match reduction {
        ScatterReduction::None => |_, u| u,
        ScatterReduction::Add => T::add,
        ScatterReduction::Mul => T::mul,
        ScatterReduction::Max => |a, u| if u > a { u } else { a },
        ScatterReduction::Min => |a, u| if u < a { u } else { a },
    }
}

#[cfg(test)]
mod tests {
    use super::super::movement::testing::*;
    use smelt_ir::{DType, Element, Op, ScatterReduction, Tensor};

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

    /// Gathers `x` at the coordinates `source` gives for each output coordinate.
    fn gathered(x: &Tensor, shape: &[usize], source: impl Fn(&[usize]) -> Vec<usize>) -> Tensor {
        by_index(x, shape, &[], |o| Some(source(o)))
    }

    fn wrap(i: i64, n: usize) -> usize {
        (if i < 0 { i + n as i64 } else { i }) as usize
    }

    /// Random indices in `[-n, n)` of the given shape, as i64 or i32.
    fn random_indices(rng: &mut Rng, shape: &[usize], n: usize, i32: bool) -> Tensor {
        let count: usize = shape.iter().product();
        let v: Vec<i64> = (0..count).map(|_| rng.below(2 * n) as i64 - n as i64).collect();
        if i32 {
            Tensor::from_slice(shape, &v.iter().map(|&x| x as i32).collect::<Vec<_>>()).unwrap()
        } else {
            Tensor::from_slice(shape, &v).unwrap()
        }
    }

    #[test]
    fn gather_elements_matches_the_reference() {
        let mut rng = Rng::new(44);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[3, 4, 5]);
            for (axis, ishape) in [(0i64, [2, 4, 5]), (1, [3, 6, 5]), (-1, [3, 4, 2]), (2, [2, 3, 7]), (-3, [0, 4, 5])]
            {
                let a = axis.rem_euclid(3) as usize;
                let i32 = rng.below(2) == 0;
                let idx = random_indices(&mut rng, &ishape, x.shape()[a], i32);
                let iv = idx.to_i64_vec();
                let want = gathered(&x, &ishape, |o| {
                    let mut at = o.to_vec();
                    at[a] = wrap(iv[flat(&ishape, o)], x.shape()[a]);
                    at
                });
                let op = Op::GatherElements { axis };
                let got = run1(&op, &[Some(&x), Some(&idx)], dtype, &ishape).unwrap();
                assert_eq!(got, want, "{dtype} axis {axis} indices {ishape:?}");
            }
        }
        let x = random(&mut rng, DType::F32, &[2, 3]);
        let op = Op::GatherElements { axis: 1 };
        let idx = Tensor::from_slice(&[1, 2], &[0i64, 3]).unwrap();
        let err = run1(&op, &[Some(&x), Some(&idx)], DType::F32, &[1, 2]).unwrap_err();
        assert_eq!(err.to_string(), "GatherElements: index 3 is out of range for axis 1 of size 3");
        let idx = Tensor::from_slice(&[3, 1], &[0i64, 1, 2]).unwrap();
        assert!(run1(&op, &[Some(&x), Some(&idx)], DType::F32, &[3, 1]).is_err());
        let idx = Tensor::from_slice(&[2], &[0i64, 1]).unwrap();
        assert!(run1(&op, &[Some(&x), Some(&idx)], DType::F32, &[2]).is_err());
    }

    #[test]
    fn gather_nd_matches_the_reference() {
        let mut rng = Rng::new(45);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[2, 3, 4]);
            let cases: [(usize, &[usize]); 7] = [
                (0, &[5, 1]),
                (0, &[2, 2, 2]),
                (0, &[4, 3]),
                (1, &[2, 1]),
                (1, &[2, 5, 2]),
                (2, &[2, 3, 1]),
                (0, &[0, 2]),
            ];
            for (b, ishape) in cases {
                let k = *ishape.last().unwrap();
                let q = ishape.len();
                let mut idx_v = Vec::new();
                for_each_index(ishape, |i| {
                    let n = x.shape()[b + i[q - 1]];
                    idx_v.push(rng.below(2 * n) as i64 - n as i64);
                });
                let idx = Tensor::from_slice(ishape, &idx_v).unwrap();
                let shape: Vec<usize> = ishape[..q - 1].iter().chain(&x.shape()[b + k..]).copied().collect();
                let want = gathered(&x, &shape, |o| {
                    let mut at: Vec<usize> = o[..b].to_vec();
                    for j in 0..k {
                        let mut ii = o[..q - 1].to_vec();
                        ii.push(j);
                        at.push(wrap(idx_v[flat(ishape, &ii)], x.shape()[b + j]));
                    }
                    at.extend_from_slice(&o[q - 1..]);
                    at
                });
                let got = run1(&Op::GatherND { batch_dims: b }, &[Some(&x), Some(&idx)], dtype, &shape).unwrap();
                assert_eq!(got, want, "{dtype} batch_dims {b} indices {ishape:?}");
            }
        }
        let x = random(&mut rng, DType::F32, &[2, 3]);
        let nd = |b: usize, idx: &Tensor, shape: &[usize]| {
            run1(&Op::GatherND { batch_dims: b }, &[Some(&x), Some(idx)], DType::F32, shape)
        };
        let err = nd(0, &Tensor::from_slice(&[1, 2], &[1i64, -4]).unwrap(), &[1]).unwrap_err();
        assert_eq!(err.to_string(), "GatherND: index -4 is out of range for axis 1 of size 3");
        assert!(nd(0, &Tensor::from_slice(&[1, 3], &[0i64, 0, 0]).unwrap(), &[1]).is_err());
        assert!(nd(1, &Tensor::from_slice(&[3, 1], &[0i64, 0, 0]).unwrap(), &[3]).is_err());
        assert!(nd(2, &Tensor::from_slice(&[2, 3, 1], &[0i64; 6]).unwrap(), &[2, 3]).is_err());
    }

    /// Folds `updates` into a copy of `data` at the flat positions `targets` gives, in
    /// f64 with rounding back to the dtype after every step.
    fn scattered(data: &Tensor, updates: &Tensor, targets: &[(usize, usize)], reduction: ScatterReduction) -> Tensor {
        let mut out = data.clone();
        let bool = data.dtype() == DType::Bool;
        let u = updates.to_f64_vec();
        smelt_ir::dispatch_dtype!(data.dtype(), T => {
            let vals = out.as_mut_slice::<T>().unwrap();
            for &(d, i) in targets {
                let (a, b) = (vals[d].to_f64(), u[i]);
                let v = match reduction {
                    ScatterReduction::None => b,
                    ScatterReduction::Add if bool => a.max(b),
                    ScatterReduction::Add => a + b,
                    ScatterReduction::Mul => a * b,
                    ScatterReduction::Max => a.max(b),
                    ScatterReduction::Min => a.min(b),
                };
                vals[d] = T::from_f64(v);
            }
        });
        out
    }

    const REDUCTIONS: [ScatterReduction; 5] = [
        ScatterReduction::None,
        ScatterReduction::Add,
        ScatterReduction::Mul,
        ScatterReduction::Max,
        ScatterReduction::Min,
    ];

    #[test]
    fn scatter_nd_matches_the_reference() {
        let mut rng = Rng::new(46);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[4, 3, 2]);
            for ishape in [&[5, 1][..], &[2, 3, 2], &[6, 3], &[0, 2], &[2]] {
                let q = ishape.len();
                let k = ishape[q - 1];
                // Indices in [-2, 2) fit every axis of x.
                let idx = random_indices(&mut rng, ishape, 2, false);
                let iv = idx.to_i64_vec();
                let ushape: Vec<usize> = ishape[..q - 1].iter().chain(&x.shape()[k..]).copied().collect();
                let updates = random(&mut rng, dtype, &ushape);
                let slice: usize = x.shape()[k..].iter().product();
                let strides = smelt_ir::strides_of(x.shape());
                let mut targets = Vec::new();
                for t in 0..iv.len() / k {
                    let base: usize = (0..k).map(|j| wrap(iv[t * k + j], x.shape()[j]) * strides[j]).sum();
                    targets.extend((0..slice).map(|e| (base + e, t * slice + e)));
                }
                for reduction in REDUCTIONS {
                    let want = scattered(&x, &updates, &targets, reduction);
                    let op = Op::ScatterND { reduction };
                    let got = run1(&op, &[Some(&x), Some(&idx), Some(&updates)], dtype, x.shape()).unwrap();
                    assert_eq!(got, want, "{dtype} indices {ishape:?} {reduction:?}");
                }
            }
        }
        let x = random(&mut rng, DType::F32, &[2, 3]);
        let op = Op::ScatterND { reduction: ScatterReduction::None };
        let idx = Tensor::from_slice(&[1, 1], &[2i64]).unwrap();
        let upd = random(&mut rng, DType::F32, &[1, 3]);
        let err = run1(&op, &[Some(&x), Some(&idx), Some(&upd)], DType::F32, &[2, 3]).unwrap_err();
        assert_eq!(err.to_string(), "ScatterND: index 2 is out of range for axis 0 of size 2");
        let idx = Tensor::from_slice(&[1, 1], &[1i64]).unwrap();
        let upd = random(&mut rng, DType::F32, &[1, 2]);
        assert!(run1(&op, &[Some(&x), Some(&idx), Some(&upd)], DType::F32, &[2, 3]).is_err());
    }

    #[test]
    fn scatter_elements_matches_the_reference() {
        let mut rng = Rng::new(47);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[3, 4, 5]);
            for (axis, ishape) in [(0i64, [2, 4, 5]), (1, [3, 6, 2]), (-1, [1, 4, 9]), (-2, [0, 2, 2])] {
                let a = axis.rem_euclid(3) as usize;
                let idx = random_indices(&mut rng, &ishape, x.shape()[a], true);
                let iv = idx.to_i64_vec();
                let updates = random(&mut rng, dtype, &ishape);
                let mut targets = Vec::new();
                for_each_index(&ishape, |o| {
                    let i = flat(&ishape, o);
                    let mut at = o.to_vec();
                    at[a] = wrap(iv[i], x.shape()[a]);
                    targets.push((flat(x.shape(), &at), i));
                });
                for reduction in REDUCTIONS {
                    let want = scattered(&x, &updates, &targets, reduction);
                    let op = Op::ScatterElements { axis, reduction };
                    let got = run1(&op, &[Some(&x), Some(&idx), Some(&updates)], dtype, x.shape()).unwrap();
                    assert_eq!(got, want, "{dtype} axis {axis} {reduction:?}");
                }
            }
        }
        let x = random(&mut rng, DType::I64, &[2, 3]);
        let op = Op::ScatterElements { axis: 0, reduction: ScatterReduction::Add };
        let idx = Tensor::from_slice(&[1, 2], &[0i32, -3]).unwrap();
        let upd = random(&mut rng, DType::I64, &[1, 2]);
        let err = run1(&op, &[Some(&x), Some(&idx), Some(&upd)], DType::I64, &[2, 3]).unwrap_err();
        assert_eq!(err.to_string(), "ScatterElements: index -3 is out of range for axis 0 of size 2");
        let upd = random(&mut rng, DType::I64, &[2, 1]);
        let idx = Tensor::from_slice(&[1, 2], &[0i32, 1]).unwrap();
        assert!(run1(&op, &[Some(&x), Some(&idx), Some(&upd)], DType::I64, &[2, 3]).is_err());
    }
}
