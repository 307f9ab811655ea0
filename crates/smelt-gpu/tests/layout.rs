//! Tile, Pad, DepthToSpace, SpaceToDepth and Trilu against the CPU reference on
//! odd shapes, for 4-byte (f32, i32) and 8-byte (i64) elements.

mod common;

use common::{check, gpu, random, Rng, EXACT};
use smelt_ir::{DType, Op, PadMode, Tensor};

const TYPES: [DType; 3] = [DType::F32, DType::I32, DType::I64];

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}

/// Non-zero values (integers from -9..9 without 0 for integer types).
fn values(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let t = random(rng, dtype, shape, 1.0, 9.0);
    let v: Vec<f64> = t.to_f64_vec().iter().enumerate().map(|(i, &x)| if i % 2 == 1 { -x } else { x }).collect();
    match dtype {
        DType::F32 => Tensor::from_vec(shape, v.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap(),
        DType::I32 => Tensor::from_vec(shape, v.iter().map(|&x| x as i32).collect::<Vec<_>>()).unwrap(),
        // Past 32 bits, so both words move.
        _ => Tensor::from_vec(shape, v.iter().map(|&x| x as i64 * 0x1_0000_0003).collect::<Vec<_>>()).unwrap(),
    }
}

fn scalar(dtype: DType, v: f64) -> Tensor {
    match dtype {
        DType::F32 => Tensor::from_vec(&[], vec![v as f32]).unwrap(),
        DType::I32 => Tensor::from_vec(&[], vec![v as i32]).unwrap(),
        _ => Tensor::from_vec(&[], vec![v as i64 * 0x1_0000_0001]).unwrap(),
    }
}

#[test]
fn tile_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(51);
    for dtype in TYPES {
        let x = values(&mut rng, dtype, &[1, 7, 3, 5]);
        for reps in [[1i64, 1, 1, 1], [2, 1, 3, 1], [1, 2, 1, 3], [3, 1, 2, 2]] {
            check(&ctx, &Op::Tile, &[Some(&x), Some(&i64s(&reps))], &[], 1, EXACT);
        }
    }
}

#[test]
fn pad_matches_the_cpu_in_every_mode() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(52);
    for dtype in TYPES {
        let x = values(&mut rng, dtype, &[1, 3, 7, 13]);
        let value = scalar(dtype, -7.0);
        for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge, PadMode::Wrap] {
            let op = Op::Pad { mode };
            for pads in [[0i64, 1, 2, 3, 0, 2, 5, 4], [0, 0, 1, 1, 0, 0, 1, 1], [1, 0, -2, 3, 0, 1, 2, -4]] {
                check(&ctx, &op, &[Some(&x), Some(&i64s(&pads))], &[], 1, EXACT);
                if mode == PadMode::Constant {
                    check(&ctx, &op, &[Some(&x), Some(&i64s(&pads)), Some(&value)], &[false, false, true], 1, EXACT);
                }
            }
            // Pads on chosen axes only (negative axes count from the end).
            let axes = i64s(&[-1, 2]);
            check(&ctx, &op, &[Some(&x), Some(&i64s(&[3, 1, 2, 5])), None, Some(&axes)], &[], 1, EXACT);
        }
    }
    // A reflect pad wider than the axis wraps back and forth.
    let x = values(&mut rng, DType::F32, &[2, 3]);
    check(&ctx, &Op::Pad { mode: PadMode::Reflect }, &[Some(&x), Some(&i64s(&[0, 5, 0, 4]))], &[], 1, EXACT);
    check(&ctx, &Op::Pad { mode: PadMode::Wrap }, &[Some(&x), Some(&i64s(&[1, 7, 2, 8]))], &[], 1, EXACT);
}

#[test]
fn depth_to_space_and_space_to_depth_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(53);
    for dtype in TYPES {
        for b in [2usize, 3] {
            let x = values(&mut rng, dtype, &[2, 3 * b * b, 5, 7]);
            for column_row in [false, true] {
                check(&ctx, &Op::DepthToSpace { blocksize: b, column_row }, &[Some(&x)], &[], 1, EXACT);
            }
            let x = values(&mut rng, dtype, &[2, 3, 5 * b, 7 * b]);
            check(&ctx, &Op::SpaceToDepth { blocksize: b }, &[Some(&x)], &[], 1, EXACT);
        }
    }
}

#[test]
fn trilu_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(54);
    for dtype in TYPES {
        for shape in [&[7usize, 13][..], &[3, 13, 7], &[2, 1, 5, 5]] {
            let x = values(&mut rng, dtype, shape);
            for upper in [false, true] {
                check(&ctx, &Op::Trilu { upper }, &[Some(&x)], &[], 1, EXACT);
                for k in [-3i64, -1, 0, 2, 9] {
                    let k = Tensor::from_vec(&[], vec![k]).unwrap();
                    check(&ctx, &Op::Trilu { upper }, &[Some(&x), Some(&k)], &[], 1, EXACT);
                }
            }
        }
    }
}
