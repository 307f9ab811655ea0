//! Reusable scratch memory for kernels (im2col buffers, transposed operands,
//! pooling windows). It grows to the largest request and is kept, so steady-state
//! runs allocate nothing.

use smelt_ir::AlignedBytes;

#[derive(Default)]
pub struct Scratch {
    bytes: AlignedBytes,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// A zero-length-checked f32 buffer of `n` elements. Contents are unspecified.
    pub fn f32s(&mut self, n: usize) -> &mut [f32] {
        self.slice(n)
    }

    /// A buffer of `n` elements of any plain-data type (alignment up to 64 bytes).
    /// Contents are unspecified.
    pub fn slice<T: bytemuck::Pod>(&mut self, n: usize) -> &mut [T] {
        self.bytes.resize(n * std::mem::size_of::<T>());
        bytemuck::cast_slice_mut(self.bytes.as_mut_slice())
    }

    /// Bytes currently reserved.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}
