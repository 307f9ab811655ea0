use super::*;
use crate::ops::testing::{assert_close, random, run_op, try_run_op};
use smelt_ir::{BinaryOp, Op, Tensor};

fn attrs(scale: f32, keys_transposed: bool, mask: AttentionMask) -> AttentionAttrs {
    AttentionAttrs { scale, keys_transposed, mask, layout: AttentionLayout::HeadMajor }
}

/// Element of `t` at `index`, an index of a shape `t` broadcasts to.
fn at(t: &Tensor, values: &[f64], index: &[usize]) -> f64 {
    let shape = t.shape();
    let pad = index.len() - shape.len();
    let (mut offset, mut stride) = (0, 1);
    for i in (0..shape.len()).rev() {
        if shape[i] != 1 {
            offset += index[pad + i] * stride;
        }
        stride *= shape[i];
    }
    values[offset]
}

/// The definition, in f64, element by element.
fn naive(a: &AttentionAttrs, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, out: &[usize]) -> Vec<f64> {
    let r = out.len();
    let (s, dv) = (out[r - 2], out[r - 1]);
    let d = q.shape()[q.shape().len() - 1];
    let l = v.shape()[v.shape().len() - 2];
    let (qv, kv, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
    let mv = mask.map(|m| m.to_f64_vec());
    let batches: usize = out[..r - 2].iter().product();
    let mut result = Vec::new();
    for b in 0..batches {
        // The batch index, then (row, column) in the last two places.
        let mut idx = vec![0; r];
        let mut rest = b;
        for axis in (0..r - 2).rev() {
            idx[axis] = rest % out[axis];
            rest /= out[axis];
        }
        let cell = |i: usize, j: usize| {
            let mut idx = idx.clone();
            idx[r - 2] = i;
            idx[r - 1] = j;
            idx
        };
        for i in 0..s {
            let mut p: Vec<f64> = (0..l)
                .map(|j| {
                    let key = |c: usize| if a.keys_transposed { cell(c, j) } else { cell(j, c) };
                    let dot: f64 = (0..d).map(|c| at(q, &qv, &cell(i, c)) * at(k, &kv, &key(c))).sum();
                    let x = a.scale as f64 * dot;
                    match (a.mask, mask.zip(mv.as_ref())) {
                        (AttentionMask::Add, Some((m, mv))) => x + at(m, mv, &cell(i, j)),
                        (AttentionMask::Select { fill }, Some((m, mv))) if at(m, mv, &cell(i, j)) == 0.0 => fill as f64,
                        _ => x,
                    }
                })
                .collect();
            let max = p.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            p.iter_mut().for_each(|x| *x = (*x - max).exp());
            let sum: f64 = p.iter().sum();
            for c in 0..dv {
                result.push((0..l).map(|j| p[j] / sum * at(v, &vv, &cell(j, c))).sum());
            }
        }
    }
    result
}

fn check(a: AttentionAttrs, q: &[usize], k: &[usize], v: &[usize], mask: Option<Tensor>, out: &[usize], seed: u64) {
    let (q, k, v) = (random(DType::F32, q, seed), random(DType::F32, k, seed + 1), random(DType::F32, v, seed + 2));
    let op = Op::Attention(a.clone());
    let inputs = [Some(&q), Some(&k), Some(&v), mask.as_ref()];
    let n = if mask.is_some() { 4 } else { 3 };
    let got = run_op(&op, &inputs[..n], &[(DType::F32, out)]);
    assert_close(&got[0], &naive(&a, &q, &k, &v, mask.as_ref(), out), 1e-5);
}

/// A causal mask [1, 1, S, L]: key j is visible from query i when j <= i + L - S.
fn causal(s: usize, l: usize) -> Tensor {
    let keep: Vec<bool> = (0..s * l).map(|e| e % l <= e / l + l - s).collect();
    Tensor::from_bools(&[1, 1, s, l], &keep).unwrap()
}

#[test]
fn bert_shaped_with_an_additive_padding_mask() {
    // Batch 2, 3 heads, 7 queries and keys, depth 8; the second sequence's last
    // three keys masked out with the float minimum, as BERT's extended mask does.
    let mask: Vec<f32> = (0..2 * 7).map(|e| if e >= 7 && e % 7 >= 4 { f32::MIN } else { 0.0 }).collect();
    let mask = Tensor::from_vec(&[2, 1, 1, 7], mask).unwrap();
    let a = attrs(1.0 / 8f32.sqrt(), true, AttentionMask::Add);
    check(a, &[2, 3, 7, 8], &[2, 3, 8, 7], &[2, 3, 7, 8], Some(mask), &[2, 3, 7, 8], 10);
}

#[test]
fn gpt2_shaped_with_a_causal_select() {
    let a = attrs(0.125, true, AttentionMask::Select { fill: f32::MIN });
    check(a, &[1, 4, 9, 16], &[1, 4, 16, 9], &[1, 4, 9, 16], Some(causal(9, 9)), &[1, 4, 9, 16], 20);
    // Fewer queries than keys (a prefix already seen), keys untransposed.
    let a = attrs(0.25, false, AttentionMask::Select { fill: -1e9 });
    let causal_rows = Tensor::from_bytes(DType::Bool, &[1, 3, 11], causal(3, 11).bytes()).unwrap();
    check(a, &[2, 3, 5], &[2, 11, 5], &[2, 11, 6], Some(causal_rows), &[2, 3, 6], 30);
}

#[test]
fn random_masks_broadcast_batches_and_odd_sizes() {
    // k and v shared by every head ([1, L, D]), a random additive mask per query row.
    let mask = random(DType::F32, &[3, 5, 13], 40);
    let a = attrs(0.3, false, AttentionMask::Add);
    check(a, &[2, 3, 5, 7], &[1, 13, 7], &[13, 3], Some(mask), &[2, 3, 5, 3], 41);
    // No mask, no batch dims at all.
    check(attrs(1.0, true, AttentionMask::None), &[6, 4], &[4, 10], &[10, 2], None, &[6, 2], 50);
}

#[test]
fn long_keys_split_the_queries_into_blocks_on_several_threads() {
    // L = 3000 keys: a tile holds 5 query rows, so 40 queries make 8 blocks per
    // head; with 2 threads the blocks are shared between workers.
    let pool = crate::team::Team::new(2, "test").unwrap();
    pool.run(|| {
        let mask = random(DType::F32, &[1, 1, 1, 3000], 60);
        let a = attrs(0.05, true, AttentionMask::Add);
        check(a, &[1, 3, 40, 16], &[1, 3, 16, 3000], &[1, 3, 3000, 8], Some(mask), &[1, 3, 40, 8], 61);
        let a = attrs(0.125, true, AttentionMask::Select { fill: f32::MIN });
        check(a, &[2, 4, 64, 32], &[2, 4, 32, 64], &[2, 4, 64, 32], Some(causal(64, 64)), &[2, 4, 64, 32], 62);
    });
}

/// With several query blocks, a causal mask hides the later keys from the
/// earlier blocks, which then skip them; a fill too close to the scores for that
/// to be exact (-5) takes the full path. Both agree with the definition.
#[test]
fn causal_blocks_skip_the_keys_they_cannot_see() {
    for (seed, fill) in [f32::MIN, -1e9, f32::NEG_INFINITY, -5.0].into_iter().enumerate() {
        let a = attrs(0.5, true, AttentionMask::Select { fill });
        let seed = 90 + 3 * seed as u64;
        check(a, &[1, 1, 300, 8], &[1, 1, 8, 300], &[1, 1, 300, 4], Some(causal(300, 300)), &[1, 1, 300, 4], seed);
    }
    // A row that sees no key at all: every score is the fill, the softmax uniform.
    let mut keep = causal(40, 40).to_f64_vec();
    keep[..40].iter_mut().for_each(|k| *k = 0.0);
    let keep: Vec<bool> = keep.iter().map(|&k| k != 0.0).collect();
    let keep = Tensor::from_bools(&[1, 1, 40, 40], &keep).unwrap();
    check(
        attrs(1.0, true, AttentionMask::Select { fill: f32::MIN }),
        &[1, 1, 40, 8],
        &[1, 1, 8, 40],
        &[1, 1, 40, 8],
        Some(keep),
        &[1, 1, 40, 8],
        99,
    );
}

/// `[B, S, H, D]` ↔ `[B, H, S, D]`.
fn swap_heads(t: &Tensor) -> Tensor {
    let s = t.shape();
    let swapped = [s[0], s[2], s[1], s[3]];
    run_op(&Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, &[Some(t)], &[(t.dtype(), &swapped)]).remove(0)
}

/// Token-major attention on q `[B, S, H, D]`, k and v `[B, L, H, ..]` against the
/// definition on the same tensors made head-major.
fn check_token_major(scale: f32, mask: AttentionMask, sizes: [usize; 6], mask_values: Option<Tensor>, seed: u64) {
    let [b, s, l, h, d, dv] = sizes;
    let q = random(DType::F32, &[b, s, h, d], seed);
    let k = random(DType::F32, &[b, l, h, d], seed + 1);
    let v = random(DType::F32, &[b, l, h, dv], seed + 2);
    let token_major = AttentionAttrs { scale, keys_transposed: false, mask, layout: AttentionLayout::TokenMajor };
    let inputs = [Some(&q), Some(&k), Some(&v), mask_values.as_ref()];
    let n = if mask_values.is_some() { 4 } else { 3 };
    let got = run_op(&Op::Attention(token_major), &inputs[..n], &[(DType::F32, &[b, s, h, dv])]).remove(0);
    let (qh, kh, vh) = (swap_heads(&q), swap_heads(&k), swap_heads(&v));
    let want = naive(&attrs(scale, false, mask), &qh, &kh, &vh, mask_values.as_ref(), &[b, h, s, dv]);
    assert_close(&swap_heads(&got), &want, 1e-5);
}

#[test]
fn token_major_operands_read_and_write_the_projections_layout() {
    // BERT's padding mask [B, 1, 1, L] over 2 sequences, 3 heads; Dv ≠ D.
    let mask: Vec<f32> = (0..2 * 7).map(|e| if e >= 7 && e % 7 >= 4 { f32::MIN } else { 0.0 }).collect();
    let mask = Tensor::from_vec(&[2, 1, 1, 7], mask).unwrap();
    check_token_major(0.35, AttentionMask::Add, [2, 7, 7, 3, 8, 5], Some(mask), 200);
    // Fewer queries than keys, no mask.
    check_token_major(1.0, AttentionMask::None, [1, 3, 11, 2, 4, 4], None, 210);
}

#[test]
fn token_major_blocks_on_several_threads() {
    let pool = crate::team::Team::new(2, "test").unwrap();
    pool.run(|| {
        // GPT-2's causal mask: blocks skip the keys they cannot see.
        let select = AttentionMask::Select { fill: f32::MIN };
        check_token_major(0.125, select, [1, 64, 64, 4, 32, 32], Some(causal(64, 64)), 220);
        // L = 3000: several blocks of queries per head, shared between workers.
        let mask = random(DType::F32, &[1, 1, 1, 3000], 230);
        check_token_major(0.05, AttentionMask::Add, [2, 40, 3000, 3, 16, 8], Some(mask), 231);
    });
}

#[test]
fn token_major_shapes_that_do_not_fit_are_errors() {
    let layout = AttentionLayout::TokenMajor;
    let op = Op::Attention(AttentionAttrs { scale: 1.0, keys_transposed: false, mask: AttentionMask::None, layout });
    let (q, k) = (random(DType::F32, &[1, 4, 2, 8], 240), random(DType::F32, &[1, 6, 2, 8], 241));
    let v = random(DType::F32, &[1, 6, 3, 8], 242);
    let e = try_run_op(&op, &[Some(&q), Some(&k), Some(&v)], &[(DType::F32, &[1, 4, 2, 8])]).unwrap_err();
    assert!(e.to_string().contains("shapes do not fit"), "{e}");
    let flat = random(DType::F32, &[4, 8], 243);
    let e = try_run_op(&op, &[Some(&flat), Some(&k), Some(&v)], &[(DType::F32, &[4, 8])]).unwrap_err();
    assert!(e.to_string().contains("rank 4"), "{e}");
}

/// A block whose rows all hide every key: the softmax is uniform over the fill,
/// as the unfused chain gives.
#[test]
fn blocks_that_see_no_key_take_the_full_path() {
    let hidden = Tensor::from_bools(&[1, 1, 6, 5], &[false; 30]).unwrap();
    check(
        attrs(1.0, false, AttentionMask::Select { fill: -1e9 }),
        &[1, 2, 6, 4],
        &[1, 2, 5, 4],
        &[1, 2, 5, 3],
        Some(hidden),
        &[1, 2, 6, 3],
        250,
    );
}

/// The fused node computes what the chain it replaces computes.
#[test]
fn matches_the_unfused_chain() {
    let (q, kt, v) = (
        random(DType::F32, &[1, 2, 6, 8], 70),
        random(DType::F32, &[1, 2, 8, 6], 71),
        random(DType::F32, &[1, 2, 6, 8], 72),
    );
    let mask = random(DType::F32, &[1, 1, 1, 6], 73);
    let scores = &run_op(&Op::MatMul { activation: None }, &[Some(&q), Some(&kt)], &[(DType::F32, &[1, 2, 6, 6])])[0];
    let divisor = Tensor::scalar(8f32.sqrt());
    let scaled =
        &run_op(&Op::Binary(BinaryOp::Div), &[Some(scores), Some(&divisor)], &[(DType::F32, &[1, 2, 6, 6])])[0];
    let masked = &run_op(&Op::Binary(BinaryOp::Add), &[Some(scaled), Some(&mask)], &[(DType::F32, &[1, 2, 6, 6])])[0];
    let softmax = Op::Softmax { axis: -1, coerce_2d: false };
    let probs = &run_op(&softmax, &[Some(masked)], &[(DType::F32, &[1, 2, 6, 6])])[0];
    let want = &run_op(&Op::MatMul { activation: None }, &[Some(probs), Some(&v)], &[(DType::F32, &[1, 2, 6, 8])])[0];
    let op = Op::Attention(attrs(1.0 / 8f32.sqrt(), true, AttentionMask::Add));
    let got = &run_op(&op, &[Some(&q), Some(&kt), Some(&v), Some(&mask)], &[(DType::F32, &[1, 2, 6, 8])])[0];
    assert_close(got, &want.to_f64_vec(), 1e-6);
}

#[test]
fn bad_operands_are_errors_naming_them() {
    let q = random(DType::F32, &[2, 4], 80);
    let k = random(DType::F32, &[5, 4], 81);
    let v = random(DType::F32, &[5, 3], 82);
    let op = Op::Attention(attrs(1.0, false, AttentionMask::None));
    let wrong_out = try_run_op(&op, &[Some(&q), Some(&k), Some(&v)], &[(DType::F32, &[2, 4])]).unwrap_err();
    assert!(wrong_out.to_string().contains("shapes do not fit"), "{wrong_out}");
    let missing = Op::Attention(attrs(1.0, false, AttentionMask::Add));
    let e = try_run_op(&missing, &[Some(&q), Some(&k), Some(&v)], &[(DType::F32, &[2, 3])]).unwrap_err();
    assert!(e.to_string().contains("mask"), "{e}");
    // The operand that is not f32 is the one named, wherever it is.
    let f64_keys = random(DType::F64, &[5, 4], 83);
    let e = try_run_op(&op, &[Some(&q), Some(&f64_keys), Some(&v)], &[(DType::F32, &[2, 3])]).unwrap_err();
    assert_eq!(e.to_string(), CpuError::UnsupportedDType { op: OP, dtype: DType::F64 }.to_string());
}
