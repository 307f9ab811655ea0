//! Kernels, one module per op family.

pub mod activation;
pub mod attention;
pub mod broadcast;
pub mod conv;
pub mod conv_direct_avx512;
pub mod dims;
pub mod einsum;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod layout;
pub mod linalg;
pub mod movement;
pub mod norm;
pub mod operands;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod sgemm_avx512;
#[cfg(test)]
pub mod testing;
pub mod wide;
pub mod winograd;
