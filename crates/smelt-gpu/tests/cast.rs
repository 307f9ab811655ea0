//! Cast between every pair of f32, f16, i32, i64, u32, u8, i8 and bool the cast
//! family takes, against the CPU reference byte for byte (in a shared buffer with
//! a sentinel, so packed f16/bool/u8 outputs of odd length must keep the bytes
//! after them): random values of both signs with fractions, and for float
//! sources the edges: NaN, infinities, signed zeros, f16 overflow, subnormals and
//! round-to-even ties, values past i32's range.

mod arena;
mod common;

use arena::check_in_arena;
use common::{gpu, Rng};
use smelt_ir::{half::f16, DType, Op, Tensor};

const EDGES: [f32; 26] = [
    0.0,
    -0.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    65504.0,
    65520.0,
    65519.99,
    1e-8,
    2.9802322e-8,
    6.1e-5,
    3e9,
    -3e9,
    0.5,
    -0.5,
    2.5,
    2049.0,
    2051.0,
    255.9,
    -1.7,
    256.3,
    -129.5,
    1.5e18,
    -9.2233715e18,
    -9.223372e18,
    9.223372e18,
];

/// 105 elements (odd, not a multiple of 4) of `dtype`; `edges` puts the special
/// values first (float sources).
fn source(rng: &mut Rng, dtype: DType, edges: bool) -> Tensor {
    let shape = [3, 5, 7];
    let n = 105;
    let mut f: Vec<f32> = (0..n).map(|_| rng.uniform(-300.0, 300.0)).collect();
    if edges {
        f[..EDGES.len()].copy_from_slice(&EDGES);
    }
    let wide: Vec<i64> = (0..n).map(|_| (rng.next_u64() as i64) >> rng.below(40)).collect();
    match dtype {
        DType::F32 => Tensor::from_vec(&shape, f).unwrap(),
        DType::F16 => Tensor::from_vec(&shape, f.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()).unwrap(),
        DType::I32 => Tensor::from_vec(&shape, wide.iter().map(|&v| v as i32).collect::<Vec<_>>()).unwrap(),
        // i64 sources are read from their low word: values within i32.
        DType::I64 => Tensor::from_vec(&shape, wide.iter().map(|&v| v as i32 as i64).collect::<Vec<_>>()).unwrap(),
        DType::U32 => Tensor::from_vec(&shape, wide.iter().map(|&v| v as u32).collect::<Vec<_>>()).unwrap(),
        DType::U8 => Tensor::from_vec(&shape, wide.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap(),
        DType::I8 => Tensor::from_vec(&shape, wide.iter().map(|&v| v as i8).collect::<Vec<_>>()).unwrap(),
        DType::Bool => Tensor::from_bools(&shape, &wide.iter().map(|&v| v & 1 == 1).collect::<Vec<_>>()).unwrap(),
        other => panic!("source() does not make {other}"),
    }
}

#[test]
fn cast_matches_the_cpu_for_every_pair() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(61);
    let from = [DType::F32, DType::F16, DType::I32, DType::I64, DType::U32, DType::U8, DType::I8, DType::Bool];
    let to = [DType::F32, DType::F16, DType::I32, DType::I64, DType::Bool, DType::U8, DType::I8];
    for src in from {
        for dst in to {
            let float = matches!(src, DType::F32 | DType::F16);
            let x = source(&mut rng, src, float);
            check_in_arena(&ctx, &Op::Cast { to: dst }, &[Some(&x)], &[], 1);
        }
    }
}
