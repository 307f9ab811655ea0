//! Reusable scratch memory for kernels (im2col buffers, transposed operands).
//! It grows to the largest request and is kept, so steady-state runs allocate nothing.

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
        self.bytes.resize(n * 4);
        bytemuck::cast_slice_mut(self.bytes.as_mut_slice())
    }

    /// Bytes currently reserved.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}
