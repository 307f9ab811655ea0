//! Einsum against the CPU reference: matmul and attention forms, single-operand
//! forms (transpose, sums, traces, diagonals), ellipsis with broadcasting, outer
//! products, implicit outputs, three and four operands; f32, f16, i32 and i64; and the
//! fallback and error cases.

mod common;

use common::{check, gpu, random, record_error, Rng, Tol, EXACT, F32_TOL};
use smelt_ir::{DType, Op, Tensor};

const CASES: &[(&str, &[&[usize]])] = &[
    ("bhid,bhjd->bhij", &[&[2, 3, 5, 7], &[2, 3, 6, 7]]),
    ("bhij,bhjd->bhid", &[&[2, 3, 5, 7], &[2, 3, 7, 4]]),
    ("bij,bjk->bik", &[&[3, 5, 7], &[3, 7, 2]]),
    ("ij,jk", &[&[5, 13], &[13, 3]]),
    ("ij,jk->ki", &[&[5, 6], &[6, 3]]),
    ("abc,cd->abd", &[&[3, 4, 5], &[5, 6]]),
    ("bn,anm,bm->ba", &[&[2, 3], &[4, 3, 5], &[2, 5]]),
    ("ii->i", &[&[5, 5]]),
    ("ii", &[&[7, 7]]),
    ("ij->ji", &[&[3, 5]]),
    ("ij->", &[&[3, 5]]),
    ("ijk->ki", &[&[2, 3, 4]]),
    ("...ii->...i", &[&[2, 3, 3]]),
    ("iij->ji", &[&[3, 3, 2]]),
    ("...ij,...jk->...ik", &[&[2, 3, 4, 5], &[3, 5, 2]]),
    ("...ij,...jk", &[&[1, 4, 5], &[3, 5, 2]]),
    ("i,j->ij", &[&[3], &[4]]),
    ("i,i", &[&[5], &[5]]),
    ("ij,ij->ij", &[&[3, 4], &[3, 4]]),
    ("ij,kj->", &[&[3, 4], &[2, 4]]),
    ("Ab,bA->A", &[&[3, 4], &[4, 3]]),
    ("ii,ij->j", &[&[3, 3], &[3, 2]]),
    ("b i j, b j k -> b k i", &[&[2, 3, 4], &[2, 4, 5]]),
    ("ab,bc,cd,de->ae", &[&[2, 3], &[3, 4], &[4, 5], &[5, 3]]),
    ("i,i,i->", &[&[7], &[7], &[7]]),
    // Five batch letters: past matmul's batch limit, so the general kernel.
    ("abcdeij,abcdejk->abcdeik", &[&[2, 1, 3, 1, 2, 3, 5], &[2, 1, 3, 1, 2, 5, 4]]),
];

fn run_cases(ctx: &smelt_gpu::GpuContext, rng: &mut Rng, dtype: DType, tol: Tol) {
    for (eq, shapes) in CASES {
        let (lo, hi) = if dtype == DType::I32 { (-50.0, 50.0) } else { (-2.0, 2.0) };
        let inputs: Vec<Tensor> = shapes.iter().map(|s| random(rng, dtype, s, lo, hi)).collect();
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
        check(ctx, &Op::Einsum { equation: eq.to_string() }, &refs, &[], 1, tol);
    }
}

#[test]
fn einsum_f32_and_integers_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(41);
    run_cases(&ctx, &mut rng, DType::F32, F32_TOL);
    run_cases(&ctx, &mut rng, DType::I32, EXACT);
    // Batched-matmul equations go to the matmul kernel, which may pre-pack a
    // constant B: every operand constant or not.
    for (eq, a, b) in [
        ("bhij,bhjd->bhid", &[2, 3, 5, 7][..], &[2, 3, 7, 4][..]),
        ("ij,jk", &[5, 13], &[13, 3]),
        ("b i j, b j k -> b i k", &[3, 1, 9], &[3, 9, 6]),
    ] {
        let x = random(&mut rng, DType::F32, a, -2.0, 2.0);
        let w = random(&mut rng, DType::F32, b, -2.0, 2.0);
        for constant in [[false, false], [false, true], [true, true]] {
            check(&ctx, &Op::Einsum { equation: eq.into() }, &[Some(&x), Some(&w)], &constant, 1, F32_TOL);
        }
    }
    // i32 products that overflow wrap as on the CPU.
    let x = Tensor::from_vec(&[2, 3], vec![70000i32, -90000, 123456, 99999, 1 << 20, -7]).unwrap();
    let w = Tensor::from_vec(&[3, 2], vec![80000i32, 3, -50000, 65537, 1 << 12, 9]).unwrap();
    check(&ctx, &Op::Einsum { equation: "ij,jk->ik".into() }, &[Some(&x), Some(&w)], &[], 1, EXACT);
    run_cases(&ctx, &mut rng, DType::I64, EXACT);
    // i64 products past 2^32 carry into the high word, and past 2^63 wrap.
    let x =
        Tensor::from_vec(&[2, 3], vec![3_000_000_007i64, -5_000_000_011, i64::MAX / 3, -1, 1 << 40, 65_537]).unwrap();
    let w = Tensor::from_vec(&[3, 2], vec![4_000_000_009i64, -3, 7, i64::MIN + 5, -(1 << 33), 0xffff_ffff]).unwrap();
    for eq in ["ij,jk->ik", "ij,ji->"] {
        // Bit for bit: `check` compares through f64, which rounds values this large.
        let op = Op::Einsum { equation: eq.into() };
        let want = smelt_cpu::eval_alloc(&op, &[Some(&x), Some(&w)], 1).unwrap();
        let got = smelt_gpu::exec::run_op(&ctx, &op, &[Some(&x), Some(&w)], &[], 1).unwrap().unwrap();
        assert_eq!(got[0].as_slice::<i64>().unwrap(), want[0].as_slice::<i64>().unwrap(), "{eq}");
    }
}

#[test]
fn einsum_f16_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    if !ctx.supports_f16() {
        return;
    }
    let mut rng = Rng::new(42);
    run_cases(&ctx, &mut rng, DType::F16, Tol { abs: 1e-2, rel: 1e-2 });
}

#[test]
fn einsum_refuses_what_it_cannot_run() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(43);
    let a = random(&mut rng, DType::F32, &[2, 3], -1.0, 1.0);
    // Five operands: past the kernel's bindings, the CPU runs it.
    let op = Op::Einsum { equation: "ij,ij,ij,ij,ij->ij".into() };
    let five = [Some(&a), Some(&a), Some(&a), Some(&a), Some(&a)];
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &five, &[], 1).unwrap().is_none());
    // Malformed equations are errors, not panics.
    for eq in ["ijk->i", "ij->q", "i.j->i", "ij->ii"] {
        let op = Op::Einsum { equation: eq.into() };
        assert!(smelt_gpu::exec::run_op(&ctx, &op, &[Some(&a)], &[], 1).is_err(), "{eq}");
    }
}

#[test]
fn the_kernel_names_what_it_cannot_record() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(44);
    let a = random(&mut rng, DType::F32, &[2, 3], -1.0, 1.0);
    let b = random(&mut rng, DType::F32, &[4, 5], -1.0, 1.0);
    let c = random(&mut rng, DType::F32, &[3, 4], -1.0, 1.0);
    // (equation, operands, output shape, part of the message)
    type ErrorCase<'a> = (&'a str, Vec<Option<&'a Tensor>>, &'a [usize], &'a str);
    let cases: [ErrorCase; 5] = [
        ("ij->ji", vec![Some(&a)], &[2, 3], "output shape [2, 3], but 'ij->ji' gives [3, 2]"),
        ("i.j->i", vec![Some(&a)], &[2], "malformed"),
        ("ijk->i", vec![Some(&a)], &[2], "does not match its operand's rank"),
        ("ij,jk->ik", vec![Some(&a), Some(&b)], &[2, 5], "index sizes 3 and 4 disagree"),
        ("ij,jk->iq", vec![Some(&a), Some(&c)], &[2, 1], "output index is in no input"),
    ];
    for (eq, inputs, out, want) in cases {
        let e = record_error(&ctx, &Op::Einsum { equation: eq.into() }, &inputs, (DType::F32, out));
        assert!(e.contains("einsum") && e.contains(want), "{eq}: {e}");
    }
}
