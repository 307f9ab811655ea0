//! Host tensors: an owned, 64-byte aligned buffer plus dtype and concrete shape,
//! and borrowed views of the same layout that kernels read and write.

use crate::{DType, Element, IrError};
use std::fmt;

/// One 64-byte aligned block; storage is a `Vec` of these so every tensor's data
/// starts on a cache line and can be viewed as any element type.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// Owned, zero-initialised, 64-byte aligned bytes.
#[derive(Clone, Default)]
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes { blocks: vec![Block([0; 64]); len.div_ceil(64)], len }
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes reserved; never shrinks.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * 64
    }

    /// Grows (never shrinks) the reserved storage and sets the visible length.
    /// New bytes are zero; existing bytes are kept.
    pub fn resize(&mut self, len: usize) {
        let blocks = len.div_ceil(64);
        if blocks > self.blocks.len() {
            self.blocks.resize(blocks, Block([0; 64]));
        }
        self.len = len;
    }

    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.blocks)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.blocks)[..self.len]
    }
}

fn check_elem<T: Element>(dtype: DType) -> Result<(), IrError> {
    let ok = T::DTYPE == dtype || (dtype == DType::Bool && T::DTYPE == DType::U8);
    if ok {
        Ok(())
    } else {
        Err(IrError::DTypeMismatch { expected: dtype, found: T::DTYPE })
    }
}

pub fn num_elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A tensor on the host.
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: AlignedBytes,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        Tensor { dtype, shape: shape.to_vec(), data: AlignedBytes::zeroed(num_elements(shape) * dtype.size()) }
    }

    pub fn from_vec<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Tensor, IrError> {
        Self::from_slice(shape, &values)
    }

    pub fn from_slice<T: Element>(shape: &[usize], values: &[T]) -> Result<Tensor, IrError> {
        if num_elements(shape) != values.len() {
            return Err(IrError::ElementCount { shape: shape.to_vec(), count: values.len() });
        }
        Ok(Tensor {
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            data: AlignedBytes::from_slice(bytemuck::cast_slice(values)),
        })
    }

    /// A tensor from raw little-endian bytes.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, IrError> {
        let want = num_elements(shape) * dtype.size();
        if bytes.len() != want {
            return Err(IrError::ByteCount { dtype, shape: shape.to_vec(), expected: want, found: bytes.len() });
        }
        Ok(Tensor { dtype, shape: shape.to_vec(), data: AlignedBytes::from_slice(bytes) })
    }

    pub fn from_bools(shape: &[usize], values: &[bool]) -> Result<Tensor, IrError> {
        let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
        let mut t = Self::from_slice(shape, &bytes)?;
        t.dtype = DType::Bool;
        Ok(t)
    }

    pub fn scalar<T: Element>(value: T) -> Tensor {
        Self::from_slice(&[], &[value]).expect("one element for a scalar")
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        num_elements(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_mut_slice()
    }

    pub fn as_slice<T: Element>(&self) -> Result<&[T], IrError> {
        check_elem::<T>(self.dtype)?;
        Ok(bytemuck::cast_slice(self.data.as_slice()))
    }

    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T], IrError> {
        check_elem::<T>(self.dtype)?;
        Ok(bytemuck::cast_slice_mut(self.data.as_mut_slice()))
    }

    /// Same data under a new shape with the same element count.
    pub fn reshaped(mut self, shape: &[usize]) -> Result<Tensor, IrError> {
        if num_elements(shape) != self.len() {
            return Err(IrError::ElementCount { shape: shape.to_vec(), count: self.len() });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: self.data.as_slice() }
    }

    pub fn view_mut(&mut self) -> TensorViewMut<'_> {
        TensorViewMut { dtype: self.dtype, shape: &self.shape, data: self.data.as_mut_slice() }
    }

    /// Every element widened to f64 (bool as 0/1). For tests, constant folding of small
    /// tensors and reports; not for hot paths.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.view().to_f64_vec()
    }

    /// Every element as i64, for shape-like tensors (ints, bools; floats truncated).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        self.view().to_i64_vec()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = self.to_f64_vec();
        let shown: Vec<_> = vals.iter().take(8).collect();
        write!(f, "Tensor<{}{:?}>{:?}{}", self.dtype, self.shape, shown, if vals.len() > 8 { "…" } else { "" })
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype && self.shape == other.shape && self.bytes() == other.bytes()
    }
}

/// A borrowed, read-only tensor: what kernels take as input.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> Self {
        debug_assert_eq!(num_elements(shape) * dtype.size(), data.len());
        TensorView { dtype, shape, data }
    }

    pub fn len(&self) -> usize {
        num_elements(self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn as_slice<T: Element>(&self) -> Result<&'a [T], IrError> {
        check_elem::<T>(self.dtype)?;
        Ok(bytemuck::cast_slice(self.data))
    }

    pub fn to_owned(&self) -> Tensor {
        Tensor { dtype: self.dtype, shape: self.shape.to_vec(), data: AlignedBytes::from_slice(self.data) }
    }

    pub fn to_f64_vec(&self) -> Vec<f64> {
        crate::dispatch_dtype!(self.dtype, T => {
            let s: &[T] = bytemuck::cast_slice(self.data);
            s.iter().map(|v| v.to_f64()).collect()
        })
    }

    /// Every element as i64, for shape-like tensors (ints, bools; floats truncated).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        let mut values = vec![0; self.data.len() / self.dtype.size()];
        self.write_i64s(&mut values);
        values
    }

    /// [`TensorView::to_i64_vec`] into the caller's buffer (which may live on the
    /// stack), so kernels reading a `shape` or `axes` input allocate nothing. Writes
    /// as many elements as `out` and the tensor both hold.
    pub fn write_i64s(&self, out: &mut [i64]) {
        match self.dtype {
            DType::I64 => out.iter_mut().zip(bytemuck::cast_slice::<u8, i64>(self.data)).for_each(|(o, &v)| *o = v),
            DType::I32 => {
                out.iter_mut().zip(bytemuck::cast_slice::<u8, i32>(self.data)).for_each(|(o, &v)| *o = v as i64)
            }
            DType::U64 => {
                out.iter_mut().zip(bytemuck::cast_slice::<u8, u64>(self.data)).for_each(|(o, &v)| *o = v as i64)
            }
            _ => crate::dispatch_dtype!(self.dtype, T => {
                let s: &[T] = bytemuck::cast_slice(self.data);
                out.iter_mut().zip(s).for_each(|(o, v)| *o = v.to_f64() as i64)
            }),
        }
    }
}

/// A borrowed, writable tensor: what kernels write their outputs into.
pub struct TensorViewMut<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a mut [u8],
}

impl<'a> TensorViewMut<'a> {
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a mut [u8]) -> Self {
        debug_assert_eq!(num_elements(shape) * dtype.size(), data.len());
        TensorViewMut { dtype, shape, data }
    }

    pub fn len(&self) -> usize {
        num_elements(self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T], IrError> {
        check_elem::<T>(self.dtype)?;
        Ok(bytemuck::cast_slice_mut(self.data))
    }

    pub fn as_view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: self.shape, data: self.data }
    }
}

/// Row-major strides (in elements) of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    write_strides(shape, &mut strides);
    strides
}

/// [`strides_of`] into the caller's buffer (which may live on the stack), so
/// kernels that walk strides allocate nothing.
///
/// # Panics
/// If `strides` does not have one entry per dim of `shape`.
pub fn write_strides(shape: &[usize], strides: &mut [usize]) {
    assert_eq!(strides.len(), shape.len(), "one stride per dim");
    if let Some(last) = strides.last_mut() {
        *last = 1;
    }
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_aligned_and_typed() {
        let t = Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        assert_eq!(t.bytes().as_ptr() as usize % 64, 0);
        assert_eq!(t.as_slice::<f32>().unwrap()[5], 6.5);
        assert!(t.as_slice::<i64>().is_err());
        assert_eq!(t.to_i64_vec(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn wrong_element_count_is_an_error() {
        assert!(Tensor::from_vec(&[2, 2], vec![1i64, 2, 3]).is_err());
    }

    #[test]
    fn bools_read_as_u8() {
        let t = Tensor::from_bools(&[3], &[true, false, true]).unwrap();
        assert_eq!(t.dtype(), DType::Bool);
        assert_eq!(t.as_slice::<u8>().unwrap(), &[1, 0, 1]);
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert!(strides_of(&[]).is_empty());
        let mut on_stack = [0; 3];
        write_strides(&[2, 3, 4], &mut on_stack);
        assert_eq!(on_stack, [12, 4, 1]);
    }

    #[test]
    fn i64_values_of_every_dtype() {
        let ints = Tensor::from_vec(&[3], vec![-1i32, 0, 7]).unwrap();
        let floats = Tensor::from_vec(&[3], vec![-1.5f32, 0.25, 7.9]).unwrap();
        let big = Tensor::from_vec(&[1], vec![u64::MAX]).unwrap();
        for (t, want) in [(&ints, vec![-1, 0, 7]), (&floats, vec![-1, 0, 7]), (&big, vec![-1])] {
            assert_eq!(t.to_i64_vec(), want);
            let mut out = [0i64; 3];
            t.view().write_i64s(&mut out);
            assert_eq!(out[..want.len()], want[..]);
        }
    }
}
