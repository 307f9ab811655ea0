//! 1- and 2-byte elements (bool, u8, i8, f16, bf16, i16, u16) in the data
//! movement families: movement (Transpose, Slice, Expand, Concat, Split), layout
//! (Tile, Pad, DepthToSpace, SpaceToDepth, Trilu), Gather and Where. Every check
//! runs in one shared buffer with a sentinel around the outputs (arena/mod.rs):
//! the output bytes must equal the CPU's, and no byte outside them may change,
//! which odd element counts (a partial last word) and Concat's shared words test.

mod arena;
mod common;

use arena::check_in_arena;
use common::{gpu, Rng};
use smelt_ir::{DType, Op, PadMode, Tensor};

const PACKED: [DType; 7] = [DType::Bool, DType::U8, DType::I8, DType::F16, DType::BF16, DType::I16, DType::U16];

/// Random non-zero elements (bool: random 0/1).
fn values(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let bytes: Vec<u8> = (0..n * dtype.size())
        .map(|_| if dtype == DType::Bool { rng.below(2) as u8 } else { 1 + rng.below(255) as u8 })
        .collect();
    Tensor::from_bytes(dtype, shape, &bytes).unwrap()
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}

fn check(ctx: &smelt_gpu::GpuContext, op: &Op, inputs: &[&Tensor], n_outputs: usize) {
    let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    check_in_arena(ctx, op, &inputs, &[], n_outputs);
}

#[test]
fn movement_on_packed_elements_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(41);
    for dtype in PACKED {
        let x = values(&mut rng, dtype, &[1, 7, 13, 29]);
        for perm in [None, Some(vec![0, 3, 1, 2]), Some(vec![2, 1, 3, 0])] {
            check(&ctx, &Op::Transpose { perm }, &[&x], 1);
        }
        let x = values(&mut rng, dtype, &[3, 5, 7]);
        // (starts, ends, axes, steps)
        let slices: [[&[i64]; 4]; 3] =
            [[&[1, 2], &[3, 7], &[0, 2], &[1, 2]], [&[-1, 4], &[-6, 0], &[2, 1], &[-2, -1]], [&[1], &[4], &[1], &[1]]];
        for [starts, ends, axes, steps] in slices {
            check(&ctx, &Op::Slice, &[&x, &i64s(starts), &i64s(ends), &i64s(axes), &i64s(steps)], 1);
        }
        let e = values(&mut rng, dtype, &[7, 1, 3]);
        check(&ctx, &Op::Expand, &[&e, &i64s(&[2, 7, 5, 3])], 1);
        check(&ctx, &Op::Expand, &[&values(&mut rng, dtype, &[1]), &i64s(&[3, 5])], 1);
        for (axis, other) in [(0i64, [2usize, 5, 7]), (1, [3, 3, 7]), (-1, [3, 5, 3])] {
            let b = values(&mut rng, dtype, &other);
            let c = values(&mut rng, dtype, &other);
            check(&ctx, &Op::Concat { axis }, &[&x, &b, &c], 1);
        }
        check(&ctx, &Op::Split { axis: 1, num_outputs: None }, &[&x, &i64s(&[2, 3])], 2);
        check(&ctx, &Op::Split { axis: -1, num_outputs: None }, &[&x, &i64s(&[1, 3, 3])], 3);
        check(&ctx, &Op::Split { axis: 0, num_outputs: Some(3) }, &[&x], 3);
    }
}

#[test]
fn layout_on_packed_elements_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(43);
    for dtype in PACKED {
        let x = values(&mut rng, dtype, &[3, 5, 7]);
        check(&ctx, &Op::Tile, &[&x, &i64s(&[2, 1, 3])], 1);
        let fill = values(&mut rng, dtype, &[]);
        for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge, PadMode::Wrap] {
            for pads in [&[0i64, 1, 2, 1, 0, 3][..], &[1, -1, 2, 0, 2, -3]] {
                let inputs = [Some(&x), Some(&i64s(pads)), Some(&fill)];
                check_in_arena(&ctx, &Op::Pad { mode }, &inputs, &[false, false, true], 1);
            }
        }
        check_in_arena(
            &ctx,
            &Op::Pad { mode: PadMode::Constant },
            &[Some(&x), Some(&i64s(&[1, 1, 1, 1, 1, 1]))],
            &[],
            1,
        );
        let d = values(&mut rng, dtype, &[1, 8, 3, 5]);
        for column_row in [false, true] {
            check(&ctx, &Op::DepthToSpace { blocksize: 2, column_row }, &[&d], 1);
        }
        check(&ctx, &Op::SpaceToDepth { blocksize: 2 }, &[&values(&mut rng, dtype, &[1, 3, 4, 6])], 1);
        for upper in [false, true] {
            check(&ctx, &Op::Trilu { upper }, &[&x], 1);
            for k in [-1i64, 2] {
                check(&ctx, &Op::Trilu { upper }, &[&x, &Tensor::scalar(k)], 1);
            }
        }
    }
}

#[test]
fn gather_and_where_on_packed_elements_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(47);
    for dtype in PACKED {
        let x = values(&mut rng, dtype, &[3, 5, 7]);
        for axis in [0i64, 1, -1] {
            let idx = Tensor::from_vec(&[5], vec![0i64, -1, 2, 1, 2]).unwrap();
            check(&ctx, &Op::Gather { axis }, &[&x, &idx], 1);
            let idx = Tensor::from_vec(&[3, 1], vec![2i32, 0, -2]).unwrap();
            check(&ctx, &Op::Gather { axis }, &[&x, &idx], 1);
        }
        let cond = values(&mut rng, DType::Bool, &[5, 1]);
        let b = values(&mut rng, dtype, &[7]);
        check(&ctx, &Op::Where, &[&cond, &x, &b], 1);
        check(&ctx, &Op::Where, &[&values(&mut rng, DType::Bool, &[3, 5, 7]), &b, &x], 1);
    }
    // 8-byte x and y take the word path of the packed-aware kernel.
    for dtype in [DType::I64, DType::F64] {
        let x = values(&mut rng, dtype, &[3, 5, 7]);
        let b = values(&mut rng, dtype, &[7]);
        check(&ctx, &Op::Where, &[&values(&mut rng, DType::Bool, &[5, 1]), &x, &b], 1);
    }
}

#[test]
fn packed_gather_reports_an_index_out_of_range() {
    let Some(ctx) = gpu() else { return };
    let x = values(&mut Rng::new(53), DType::U8, &[3, 5, 7]);
    let idx = Tensor::from_vec(&[2], vec![1i64, 3]).unwrap();
    let got = smelt_gpu::exec::run_op(&ctx, &Op::Gather { axis: 0 }, &[Some(&x), Some(&idx)], &[], 1);
    let Err(err) = got else { panic!("index 3 on an axis of 3 must fail the run") };
    let err = err.to_string();
    assert!(err.contains("out of range"), "{err}");
}
