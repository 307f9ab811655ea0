//! The tiled implicit-GEMM Conv kernel's variants (128 x 128, 64 x 64 and 32 x 32
//! tiles) at their edges, against the CPU reference: output channels and pixels
//! that are not multiples of the tile, K (Cin/group x KH x KW) not a multiple of
//! the K step or below it, tiles spanning images of a batch, groups and depthwise.

mod common;

use common::{check, gpu, random, Rng, Tol};
use smelt_ir::{AutoPad, ConvAttrs, DType, Op, UnaryOp};

/// Convolutions sum many terms: allow for f32 reassociation.
const SUM_TOL: Tol = Tol { abs: 1e-4, rel: 1e-4 };

fn attrs(k: usize, stride: usize, pad: usize, dil: usize, group: usize, act: Option<UnaryOp>) -> ConvAttrs {
    ConvAttrs {
        kernel_shape: Some(vec![k, k]),
        strides: vec![stride, stride],
        pads: vec![pad; 4],
        dilations: vec![dil, dil],
        group,
        auto_pad: AutoPad::NotSet,
        activation: act,
    }
}

#[test]
fn conv_tiles_at_their_edges() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(21);
    // (N, C, H, W, Cout, k, stride, pad, dilation, group)
    let cases = [
        // Large tiles: 91 x 91 = 8281 pixels (65 tiles of 128) x 130 channels
        // (2 tiles), K = 27.
        (1, 3, 91, 91, 130, 3, 1, 1, 1, 1),
        // Large tiles in 2 groups of 67 channels, dilated, K = 18.
        (1, 4, 91, 91, 134, 3, 1, 2, 2, 2),
        // Medium tiles: 67 x 67 = 4489 pixels (71 tiles of 64) x 70 channels (2
        // tiles), K = 45.
        (1, 5, 67, 67, 70, 3, 1, 1, 1, 1),
        // Small tiles spanning the 3 images of a batch, K = 7 (below the K step).
        (3, 7, 13, 13, 9, 1, 1, 0, 1, 1),
        // Small tiles, strided, K = 5 * 9 = 45.
        (2, 5, 17, 15, 70, 3, 2, 1, 1, 1),
        // Depthwise, strided.
        (2, 8, 15, 17, 8, 3, 2, 1, 1, 8),
        // Depthwise with a channel multiplier of 2.
        (1, 3, 11, 9, 6, 5, 1, 2, 1, 3),
    ];
    for (n, c, h, w, co, k, s, p, d, g) in cases {
        let x = random(&mut rng, DType::F32, &[n, c, h, w], -1.0, 1.0);
        let wt = random(&mut rng, DType::F32, &[co, c / g, k, k], -1.0, 1.0);
        let b = random(&mut rng, DType::F32, &[co], -1.0, 1.0);
        check(&ctx, &Op::Conv(attrs(k, s, p, d, g, None)), &[Some(&x), Some(&wt)], &[], 1, SUM_TOL);
        let op = Op::Conv(attrs(k, s, p, d, g, Some(UnaryOp::Relu)));
        check(&ctx, &op, &[Some(&x), Some(&wt), Some(&b)], &[false, true, true], 1, SUM_TOL);
    }
}
