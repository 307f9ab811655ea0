use super::*;

/// Deterministic values in [-1, 1), none of them zero.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if v == 0.0 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

/// Direct 3×3 stride-1 convolution in f64: the reference.
fn direct(shape: &WinogradShape, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
    let (c_n, k_n) = (shape.in_channels, shape.out_channels);
    let mut y = vec![0f64; shape.batch * k_n * shape.out_h * shape.out_w];
    for n in 0..shape.batch {
        for k in 0..k_n {
            for oy in 0..shape.out_h {
                for ox in 0..shape.out_w {
                    let mut acc = bias[k] as f64;
                    for c in 0..c_n {
                        for i in 0..3 {
                            for j in 0..3 {
                                let (r, s) = (
                                    (oy + i) as isize - shape.pad_top as isize,
                                    (ox + j) as isize - shape.pad_left as isize,
                                );
                                if r >= 0 && s >= 0 && (r as usize) < shape.in_h && (s as usize) < shape.in_w {
                                    let xv = x[((n * c_n + c) * shape.in_h + r as usize) * shape.in_w + s as usize];
                                    acc += xv as f64 * w[((k * c_n + c) * 3 + i) * 3 + j] as f64;
                                }
                            }
                        }
                    }
                    y[((n * k_n + k) * shape.out_h + oy) * shape.out_w + ox] = acc;
                }
            }
        }
    }
    y
}

/// Largest |winograd − direct| over the largest |direct|.
fn relative_error(tile: WinogradTile, shape: WinogradShape, act: Option<&UnaryOp>) -> f64 {
    relative_error_with(Gather::Best, tile, shape, act)
}

fn relative_error_with(gather: Gather, tile: WinogradTile, shape: WinogradShape, act: Option<&UnaryOp>) -> f64 {
    let x = values(shape.batch * shape.in_channels * shape.in_h * shape.in_w, 1);
    let w = values(shape.out_channels * shape.in_channels * 9, 2);
    let bias = values(shape.out_channels, 3);
    let conv = WinogradConv::new(tile, &w, shape.out_channels, shape.in_channels);
    let mut y = vec![f32::NAN; shape.batch * shape.out_channels * shape.out_h * shape.out_w];
    let mut scratch = vec![0f32; conv.scratch_len(&shape)];
    conv.run_with(gather, &shape, &x, Some(&bias), act, &mut y, &mut scratch);
    let mut reference = direct(&shape, &x, &w, &bias);
    // The scale is the convolution's, before an activation squashes it.
    let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
    if let Some(act) = act {
        reference.iter_mut().for_each(|v| *v = crate::ops::activation::apply_f64(act, *v));
    }
    let err = y.iter().zip(&reference).fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    err / scale
}

/// Odd shapes: partial tiles on both edges, padding of 0, 1 and 2, one image or
/// several, channel counts off the GEMM's 12×32 blocking.
fn odd_shapes() -> Vec<WinogradShape> {
    let shape = |batch, c, k, h, w, pt: usize, pl: usize, pb: usize, pr: usize| WinogradShape {
        batch,
        in_channels: c,
        out_channels: k,
        in_h: h,
        in_w: w,
        out_h: h + pt + pb - 2,
        out_w: w + pl + pr - 2,
        pad_top: pt,
        pad_left: pl,
    };
    vec![
        shape(1, 3, 5, 7, 7, 1, 1, 1, 1),
        shape(2, 13, 17, 9, 11, 1, 1, 1, 1),
        shape(1, 5, 3, 10, 6, 0, 0, 0, 0),
        shape(3, 7, 29, 5, 13, 2, 1, 0, 2),
        shape(1, 64, 40, 14, 14, 1, 1, 1, 1),
    ]
}

#[test]
fn f2_matches_direct_convolution() {
    for shape in odd_shapes() {
        let err = relative_error(WinogradTile::F2, shape, None);
        assert!(err < 1e-5, "{shape:?}: relative error {err:e}");
    }
}

#[test]
fn f4_matches_direct_convolution() {
    // Measured (error_report): F(4,3) errors are 10-20× F(2,3)'s, from the 1/24
    // and 8 in its transforms: 1.3e-6 to 5.9e-6 relative at these sizes (growing
    // with C), against 1.0e-7 to 3.7e-7 for F(2,3).
    for shape in odd_shapes() {
        let err = relative_error(WinogradTile::F4, shape, None);
        assert!(err < 2e-5, "{shape:?}: relative error {err:e}");
    }
}

#[test]
fn portable_gather_matches_direct_convolution() {
    // What CPUs without AVX-512 run (and this one where offsets outgrow i32).
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        for shape in odd_shapes() {
            let err = relative_error_with(Gather::Portable, tile, shape, None);
            assert!(err < 2e-5, "{tile:?} {shape:?}: relative error {err:e}");
        }
    }
}

#[test]
fn both_gathers_agree_bit_for_bit() {
    // The same transforms and GEMMs run on the same values either way.
    let shape = odd_shapes()[3];
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        let x = values(shape.batch * shape.in_channels * shape.in_h * shape.in_w, 5);
        let conv = WinogradConv::new(tile, &values(shape.out_channels * shape.in_channels * 9, 6), 29, 7);
        let mut scratch = vec![0f32; conv.scratch_len(&shape)];
        let run = |gather, scratch: &mut [f32]| {
            let mut y = vec![f32::NAN; shape.batch * shape.out_channels * shape.out_h * shape.out_w];
            conv.run_with(gather, &shape, &x, None, None, &mut y, scratch);
            y
        };
        let best = run(Gather::Best, &mut scratch);
        let portable = run(Gather::Portable, &mut scratch);
        assert!(best.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits()), "{tile:?}");
    }
}

#[test]
fn bias_and_activation_are_applied() {
    let shape = odd_shapes()[1];
    // Relu and Clip are applied as the tiles are stored, Sigmoid in a pass after.
    let clip = UnaryOp::Clip { min: -0.3, max: 0.4 };
    for act in [UnaryOp::Relu, clip, UnaryOp::Sigmoid] {
        for tile in [WinogradTile::F2, WinogradTile::F4] {
            for gather in [Gather::Best, Gather::Portable] {
                let err = relative_error_with(gather, tile, shape, Some(&act));
                assert!(err < 2e-5, "{tile:?}, {act:?}, {gather:?}: relative error {err:e}");
            }
        }
    }
}

#[test]
fn fused_clamps_let_nan_through() {
    let relu = OutputFinish { bias: 0.0, min: 0.0, max: f32::INFINITY };
    assert!(relu.apply(f32::NAN).is_nan());
    assert_eq!((relu.apply(-2.0), relu.apply(3.0)), (0.0, 3.0));
    let clip = OutputFinish { bias: 1.0, min: -0.5, max: 0.5 };
    assert_eq!((clip.apply(-3.0), clip.apply(0.25), clip.apply(7.0)), (-0.5, 0.5, 0.5));
}

#[test]
fn many_blocks_cover_every_tile() {
    // More tiles than one block holds: 2 images of 64×64, 2,048 F(2,3) tiles
    // and 512 F(4,3) tiles.
    let shape = WinogradShape {
        batch: 2,
        in_channels: 64,
        out_channels: 64,
        in_h: 64,
        in_w: 64,
        out_h: 64,
        out_w: 64,
        pad_top: 1,
        pad_left: 1,
    };
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        let conv = WinogradConv::new(tile, &values(64 * 64 * 9, 4), 64, 64);
        assert!(conv.block_tiles(shape.tiles(tile)) < shape.tiles(tile));
    }
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        let err = relative_error(tile, shape, None);
        assert!(err < 2e-5, "{tile:?}: relative error {err:e}");
    }
}

#[test]
fn blocks_are_capped_by_the_tile_map() {
    // Few channels would make blocks of thousands of tiles; the tile map holds
    // MAX_BLOCK_TILES, so 1,225 F(2,3) tiles take two blocks, the second partial
    // and not a multiple of the 16-tile lane groups.
    let shape = WinogradShape {
        batch: 1,
        in_channels: 3,
        out_channels: 2,
        in_h: 70,
        in_w: 69,
        out_h: 70,
        out_w: 69,
        pad_top: 1,
        pad_left: 1,
    };
    let conv = WinogradConv::new(WinogradTile::F2, &values(2 * 3 * 9, 7), 2, 3);
    assert_eq!(conv.block_tiles(shape.tiles(WinogradTile::F2)), MAX_BLOCK_TILES);
    for gather in [Gather::Best, Gather::Portable] {
        let err = relative_error_with(gather, WinogradTile::F2, shape, None);
        assert!(err < 1e-5, "{gather:?}: relative error {err:e}");
    }
}

#[test]
fn error_report() {
    // Not an assertion beyond the ones above: prints the measured errors
    // (`cargo test -- --nocapture error_report`) for the module docs.
    for shape in odd_shapes() {
        let e2 = relative_error(WinogradTile::F2, shape, None);
        let e4 = relative_error(WinogradTile::F4, shape, None);
        println!(
            "C={} K={} {}x{}: F2 {e2:.2e}  F4 {e4:.2e}",
            shape.in_channels, shape.out_channels, shape.in_h, shape.in_w
        );
    }
}

#[test]
fn nan_inputs_survive_a_fused_relu() {
    let shape = odd_shapes()[1];
    let mut x = values(shape.batch * shape.in_channels * shape.in_h * shape.in_w, 1);
    x[shape.in_w + 1] = f32::NAN;
    let w = values(shape.out_channels * shape.in_channels * 9, 2);
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        let conv = WinogradConv::new(tile, &w, shape.out_channels, shape.in_channels);
        let scratch = vec![0f32; conv.scratch_len(&shape)];
        let nans = |gather| {
            let mut y = vec![0f32; shape.batch * shape.out_channels * shape.out_h * shape.out_w];
            conv.run_with(gather, &shape, &x, None, Some(&UnaryOp::Relu), &mut y, &mut scratch.clone());
            y.iter().map(|v| v.is_nan()).collect::<Vec<_>>()
        };
        let best = nans(Gather::Best);
        assert!(best.iter().any(|&n| n), "{tile:?}: the NaN was clamped away");
        assert_eq!(best, nans(Gather::Portable), "{tile:?}");
    }
}
