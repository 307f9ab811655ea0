//! The tiled MatMul/Gemm kernel's variants (128 x 128, 64 x 64 and 32 x 32 tiles,
//! and the GEMV) at their edges, against the CPU reference: M, N and K that are not
//! multiples of the tile or of the K step, K below the K step, broadcast and folded
//! batches, and single rows. The launcher picks the variant from the shape; each
//! case says which one its shape gets (matmul.rs `tile_shape`: the largest tile
//! that makes at least 128 workgroups, else 32 x 32).

mod common;

use common::{check, gpu, random, Rng, Tol};
use smelt_ir::{DType, Op, Tensor, UnaryOp};

/// Matrix products sum many terms: allow for f32 reassociation.
const SUM_TOL: Tol = Tol { abs: 1e-4, rel: 1e-4 };

fn matmul(ctx: &smelt_gpu::GpuContext, rng: &mut Rng, a_shape: &[usize], b_shape: &[usize]) {
    let a = random(rng, DType::F32, a_shape, -1.0, 1.0);
    let b = random(rng, DType::F32, b_shape, -1.0, 1.0);
    check(ctx, &Op::MatMul { activation: None }, &[Some(&a), Some(&b)], &[], 1, SUM_TOL);
}

#[test]
fn large_tiles_edges_in_m_n_and_k() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    // 12 x 11 tiles of 128: 1409 = 11 * 128 + 1, 1301 = 10 * 128 + 21; K = 29 is one
    // full K step and a partial one, K = 13 less than one.
    matmul(&ctx, &mut rng, &[1409, 29], &[29, 1301]);
    matmul(&ctx, &mut rng, &[1409, 13], &[13, 1301]);
    // Broadcast batches (3 x 5 of 3 x 3 tiles), not foldable: B differs per batch.
    matmul(&ctx, &mut rng, &[3, 1, 257, 19], &[1, 5, 19, 263]);
}

#[test]
fn medium_tiles_edges() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(16);
    // 12 x 12 tiles of 64 (6 x 6 of 128): 731 = 11 * 64 + 27, 739 = 11 * 64 + 35.
    matmul(&ctx, &mut rng, &[731, 19], &[19, 739]);
    matmul(&ctx, &mut rng, &[731, 3], &[3, 739]);
}

#[test]
fn small_tiles_edges_and_batches() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    matmul(&ctx, &mut rng, &[2, 3, 67, 130], &[2, 3, 130, 71]);
    matmul(&ctx, &mut rng, &[29, 7], &[7, 13]);
    matmul(&ctx, &mut rng, &[2, 1, 2], &[2, 3]);
    // Folded: B shared by every batch, so [4, 33, 45] is one product of 132 rows.
    matmul(&ctx, &mut rng, &[4, 33, 45], &[45, 65]);
    // A broadcast over B's batches: not foldable (B's batches differ).
    matmul(&ctx, &mut rng, &[33, 45], &[3, 45, 65]);
    // Decode rows of a batch: [5, 1, 100] folds into 5 rows.
    matmul(&ctx, &mut rng, &[5, 1, 100], &[100, 67]);
}

#[test]
fn gemv_single_rows() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(13);
    // K = 200: six unrolled steps of 32 and a tail; K = 13: the tail alone.
    matmul(&ctx, &mut rng, &[1, 200], &[200, 77]);
    matmul(&ctx, &mut rng, &[13], &[13, 29]);
    matmul(&ctx, &mut rng, &[1, 1, 1, 64], &[64, 33]);
    // Batched GEMV with B per batch, and a broadcast A row.
    matmul(&ctx, &mut rng, &[3, 1, 50], &[3, 50, 40]);
    matmul(&ctx, &mut rng, &[1, 50], &[3, 50, 40]);
    // The fused form: bias and activation, B a constant.
    let a = random(&mut rng, DType::F32, &[1, 1, 150], -1.0, 1.0);
    let b = random(&mut rng, DType::F32, &[150, 67], -1.0, 1.0);
    let bias = random(&mut rng, DType::F32, &[67], -1.0, 1.0);
    let op = Op::MatMul { activation: Some(UnaryOp::Gelu { tanh: false }) };
    check(&ctx, &op, &[Some(&a), Some(&b), Some(&bias)], &[false, true, true], 1, SUM_TOL);
}

#[test]
fn fused_bias_and_activation_on_folded_batches() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(14);
    // [3, 7, 29] x [29, 67] folds into 21 rows; the bias is per column.
    let a = random(&mut rng, DType::F32, &[3, 7, 29], -1.0, 1.0);
    let b = random(&mut rng, DType::F32, &[29, 67], -1.0, 1.0);
    let bias = random(&mut rng, DType::F32, &[67], -1.0, 1.0);
    for act in [Some(UnaryOp::Relu), Some(UnaryOp::Sigmoid), None] {
        let op = Op::MatMul { activation: act };
        check(&ctx, &op, &[Some(&a), Some(&b), Some(&bias)], &[false, true, true], 1, SUM_TOL);
    }
}

#[test]
fn gemm_transposes_on_every_variant() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(15);
    // (M, K, N): large, medium and small tiles, K below the K step, a single row.
    for (m, k, n) in [(1409, 13, 1301), (731, 7, 739), (67, 29, 70), (130, 5, 9), (1, 37, 45)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = random(&mut rng, DType::F32, &if ta { [k, m] } else { [m, k] }, -1.0, 1.0);
            let b = random(&mut rng, DType::F32, &if tb { [n, k] } else { [k, n] }, -1.0, 1.0);
            let c: Tensor = random(&mut rng, DType::F32, &[m, 1], -1.0, 1.0);
            let op = Op::Gemm { alpha: 0.7, beta: 1.3, trans_a: ta, trans_b: tb, activation: Some(UnaryOp::Tanh) };
            check(&ctx, &op, &[Some(&a), Some(&b), Some(&c)], &[], 1, SUM_TOL);
        }
    }
}
