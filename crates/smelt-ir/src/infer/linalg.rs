//! Matrix products: MatMul (numpy semantics), Gemm and fused attention.

use super::dims::{broadcast_dims, check_broadcasts_to, unify};
use super::{dims_of_rank, Args};
use crate::{AttentionAttrs, AttentionLayout, AttentionMask, DType, Dim, Fact, Shape};

/// MatMul, with the bias and the residual input `Z` that fusion adds: the bias
/// broadcasts to the output, `Z` has its dtype and shape.
pub(super) fn matmul(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["A", "B", "bias", "Z"], 2)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    let shape = matmul_shape(&a.req(0).shape, &a.req(1).shape)?;
    if let Some(bias) = a.opt(2) {
        check_broadcasts_to(&bias.shape, &shape, "bias")?;
    }
    let y = Fact::new(dtype, shape);
    if let Some(z) = a.opt(3) {
        super::conv::check_residual(z, &y)?;
    }
    Ok(vec![y])
}

/// numpy matmul: 1-D operands gain a dim that the result then drops, leading dims
/// broadcast.
pub(super) fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let (Some(ad), Some(bd)) = (a.dims(), b.dims()) else { return Ok(Shape::unknown()) };
    if ad.is_empty() || bd.is_empty() {
        return Err(format!("operands must have rank 1 or more, got A {a} and B {b}"));
    }
    let (m, ka, a_batch) = match ad.len() {
        1 => (None, &ad[0], &ad[..0]),
        r => (Some(&ad[r - 2]), &ad[r - 1], &ad[..r - 2]),
    };
    let (kb, n, b_batch) = match bd.len() {
        1 => (&bd[0], None, &bd[..0]),
        r => (&bd[r - 2], Some(&bd[r - 1]), &bd[..r - 2]),
    };
    if unify(ka, kb).is_none() {
        return Err(format!("inner dimensions differ: A {a} has K = {ka}, B {b} has K = {kb}"));
    }
    let mut out = broadcast_dims(a_batch, b_batch)
        .ok_or_else(|| format!("batch dimensions of A {a} and B {b} do not broadcast"))?;
    out.extend(m.cloned());
    out.extend(n.cloned());
    Ok(Shape::new(out))
}

/// `softmax(scale · q·kᵀ ⊕ mask) · v`: two products, so the shape rules are
/// MatMul's for `q·kᵀ` and then for `· v`; the mask must broadcast to the scores.
pub(super) fn attention(attrs: &AttentionAttrs, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["Q", "K", "V", "mask"], 3)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    if !dtype.is_float() {
        return Err(format!("Q, K and V must be floating point, got {dtype}"));
    }
    let (q, k, v) = (&a.req(0).shape, &a.req(1).shape, &a.req(2).shape);
    let token_major = attrs.layout == AttentionLayout::TokenMajor;
    if token_major && attrs.keys_transposed {
        return Err("token-major attention takes K untransposed, [B, L, H, D]".into());
    }
    for (shape, name) in [(q, "Q"), (k, "K"), (v, "V")] {
        match shape.dims() {
            Some(d) if token_major && d.len() != 4 => {
                return Err(format!("token-major {name} must have rank 4 ([B, S, H, D]), got shape {shape}"))
            }
            Some(d) if d.len() < 2 => return Err(format!("{name} must have rank 2 or more, got shape {shape}")),
            _ => {}
        }
    }
    // Token-major operands are the head-major ones with axes 1 and 2 exchanged.
    let (q, k, v) = if token_major { (&swap_heads(q), &swap_heads(k), &swap_heads(v)) } else { (q, k, v) };
    let keys_as_rhs = if attrs.keys_transposed { k.clone() } else { swap_last_two(k) };
    let scores = matmul_shape(q, &keys_as_rhs).map_err(|e| format!("Q·Kᵀ: {e}"))?;
    let out = matmul_shape(&scores, v).map_err(|e| format!("scores·V: {e}"))?;
    match (attrs.mask, a.opt(3)) {
        (AttentionMask::None, None) => {}
        (AttentionMask::None, Some(_)) => return Err("a mask input is given, but the mask kind is none".into()),
        (_, None) => return Err("the mask input is missing".into()),
        (AttentionMask::Add, Some(mask)) if mask.dtype != dtype => {
            return Err(format!("an additive mask must have the dtype of Q ({dtype}), got {}", mask.dtype))
        }
        (AttentionMask::Select { .. }, Some(mask)) if mask.dtype != DType::Bool => {
            return Err(format!("a selecting mask must be bool, got {}", mask.dtype))
        }
        (_, Some(mask)) => check_broadcasts_to(&mask.shape, &scores, "mask")?,
    }
    if token_major {
        // The batch and head dims of the three operands must agree exactly: the
        // kernel walks them with one set of strides.
        let lead = |s: &Shape| s.dims().map(|d| d[..2].to_vec());
        if let (Some(q2), Some(k2), Some(v2)) = (lead(q), lead(k), lead(v)) {
            let same = |a: &[Dim], b: &[Dim]| a.iter().zip(b).all(|(x, y)| unify(x, y).is_some());
            if !same(&q2, &k2) || !same(&q2, &v2) {
                return Err(format!(
                    "token-major Q, K and V must share their batch and head dims, got Q [B, H] = {q2:?}, \
                     K {k2:?}, V {v2:?}"
                ));
            }
        }
        let out = if out.rank().is_some() { swap_heads(&out) } else { Shape::of_rank(4) };
        return Ok(vec![Fact::new(dtype, out)]);
    }
    Ok(vec![Fact::new(dtype, out)])
}

/// A rank-4 shape with axes 1 and 2 exchanged (`[B, S, H, D]` ↔ `[B, H, S, D]`);
/// other ranks are left as they are.
fn swap_heads(shape: &Shape) -> Shape {
    match shape.dims() {
        Some(d) if d.len() == 4 => Shape::new(vec![d[0].clone(), d[2].clone(), d[1].clone(), d[3].clone()]),
        _ => shape.clone(),
    }
}

/// The shape with its last two dims exchanged (rank ≥ 2, or unknown).
fn swap_last_two(shape: &Shape) -> Shape {
    match shape.dims() {
        Some(d) => {
            let mut d = d.to_vec();
            let r = d.len();
            d.swap(r - 2, r - 1);
            Shape::new(d)
        }
        None => Shape::unknown(),
    }
}

pub(super) fn gemm(trans_a: bool, trans_b: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["A", "B", "C"], 2)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    let (sa, sb) = (&a.req(0).shape, &a.req(1).shape);
    let da = dims_of_rank(sa, 2, "A")?;
    let db = dims_of_rank(sb, 2, "B")?;
    let orient = |d: Option<&[Dim]>, t: bool| match d {
        Some(d) if t => (d[1].clone(), d[0].clone()),
        Some(d) => (d[0].clone(), d[1].clone()),
        None => (Dim::Unknown, Dim::Unknown),
    };
    let (m, ka) = orient(da, trans_a);
    let (kb, n) = orient(db, trans_b);
    if unify(&ka, &kb).is_none() {
        return Err(format!(
            "inner dimensions differ: A {sa}{} has K = {ka}, B {sb}{} has K = {kb}",
            if trans_a { " (transposed)" } else { "" },
            if trans_b { " (transposed)" } else { "" },
        ));
    }
    let shape = Shape::new(vec![m, n]);
    if let Some(c) = a.opt(2) {
        check_broadcasts_to(&c.shape, &shape, "C")?;
    }
    Ok(vec![Fact::new(dtype, shape)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{AttentionAttrs, AttentionLayout, AttentionMask, DType, Op, Shape};

    fn mm() -> Op {
        Op::MatMul { activation: None }
    }

    fn gemm(ta: bool, tb: bool) -> Op {
        Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb, activation: None }
    }

    #[test]
    fn matmul_keeps_symbolic_batch() {
        let out = one(&mm(), &[&f32(shape!["batch", 128, 768]), &f32(shape![768, 3072])]);
        assert_eq!(out.shape, shape!["batch", 128, 3072]);
    }

    #[test]
    fn attention_matmuls() {
        let q = f32(shape!["batch", 12, "seq", 64]);
        let kt = f32(shape!["batch", 12, 64, "seq"]);
        let scores = one(&mm(), &[&q, &kt]);
        assert_eq!(scores.shape, shape!["batch", 12, "seq", "seq"]);
        let v = f32(shape!["batch", 12, "seq", 64]);
        assert_eq!(one(&mm(), &[&scores, &v]).shape, shape!["batch", 12, "seq", 64]);
    }

    #[test]
    fn matmul_vectors_and_broadcast_batches() {
        assert_eq!(one(&mm(), &[&f32(shape![3]), &f32(shape![3])]).shape, shape![]);
        assert_eq!(one(&mm(), &[&f32(shape![3]), &f32(shape![2, 3, 4])]).shape, shape![2, 4]);
        assert_eq!(one(&mm(), &[&f32(shape![5, 2, 3]), &f32(shape![3])]).shape, shape![5, 2]);
        assert_eq!(one(&mm(), &[&f32(shape![2, 1, 4, 3]), &f32(shape![5, 3, 6])]).shape, shape![2, 5, 4, 6]);
        assert_eq!(one(&mm(), &[&f32(Shape::unknown()), &f32(shape![3, 4])]).shape, Shape::unknown());
    }

    #[test]
    fn matmul_mismatch_names_k() {
        let e = err(&mm(), &[&f32(shape![2, 3]), &f32(shape![4, 5])]);
        assert!(e.contains("K = 3") && e.contains("K = 4"), "{e}");
        assert!(err(&mm(), &[&f32(shape![2, 2, 3]), &f32(shape![3, 3, 4])]).contains("batch"));
        assert!(err(&mm(), &[&f32(shape![]), &f32(shape![3])]).contains("rank 1"));
    }

    fn attention(keys_transposed: bool, mask: AttentionMask) -> Op {
        Op::Attention(AttentionAttrs { scale: 0.125, keys_transposed, mask, layout: AttentionLayout::HeadMajor })
    }

    fn token_major(mask: AttentionMask) -> Op {
        Op::Attention(AttentionAttrs {
            scale: 0.125,
            keys_transposed: false,
            mask,
            layout: AttentionLayout::TokenMajor,
        })
    }

    #[test]
    fn token_major_attention_keeps_heads_inside_positions() {
        let q = f32(shape!["batch", "seq", 12, 64]);
        let k = f32(shape!["batch", "keys", 12, 64]);
        let v = f32(shape!["batch", "keys", 12, 32]);
        let mask = f32(shape!["batch", 1, 1, "keys"]);
        let out = one(&token_major(AttentionMask::Add), &[&q, &k, &v, &mask]);
        assert_eq!(out.shape, shape!["batch", "seq", 12, 32]);
        let unknown = one(&token_major(AttentionMask::None), &[&f32(Shape::unknown()), &k, &v]);
        assert_eq!(unknown.shape.rank(), Some(4));
    }

    #[test]
    fn token_major_attention_rejects_what_its_kernel_cannot_walk() {
        let q = f32(shape![2, 7, 4, 8]);
        let k = f32(shape![2, 5, 4, 8]);
        let v = f32(shape![2, 5, 4, 3]);
        let e = err(&token_major(AttentionMask::None), &[&f32(shape![7, 4, 8]), &k, &v]);
        assert!(e.contains("rank 4") && e.contains("Q"), "{e}");
        let e = err(&token_major(AttentionMask::None), &[&q, &k, &f32(shape![1, 5, 4, 3])]);
        assert!(e.contains("batch and head"), "{e}");
        let transposed = Op::Attention(AttentionAttrs {
            scale: 1.0,
            keys_transposed: true,
            mask: AttentionMask::None,
            layout: AttentionLayout::TokenMajor,
        });
        assert!(err(&transposed, &[&q, &f32(shape![2, 4, 8, 5]), &v]).contains("untransposed"));
        // The mask broadcasts to the head-major scores [B, H, S, L].
        let e = err(&token_major(AttentionMask::Add), &[&q, &k, &v, &f32(shape![2, 7, 1, 5])]);
        assert!(e.contains("mask"), "{e}");
    }

    #[test]
    fn attention_shapes_follow_its_two_products() {
        let q = f32(shape!["batch", 12, "seq", 64]);
        let kt = f32(shape!["batch", 12, 64, "seq"]);
        let k = f32(shape!["batch", 12, "seq", 64]);
        let v = f32(shape!["batch", 12, "seq", 32]);
        let mask = f32(shape!["batch", 1, 1, "seq"]);
        let out = one(&attention(true, AttentionMask::Add), &[&q, &kt, &v, &mask]);
        assert_eq!(out.shape, shape!["batch", 12, "seq", 32]);
        assert_eq!(one(&attention(false, AttentionMask::None), &[&q, &k, &v]).shape, out.shape);
        let causal = fact(DType::Bool, shape![1, 1, "seq", "seq"]);
        let select = AttentionMask::Select { fill: -1e9 };
        assert_eq!(one(&attention(false, select), &[&q, &k, &v, &causal]).shape, out.shape);
    }

    #[test]
    fn attention_rejects_mismatches_by_name() {
        let q = f32(shape![2, 4, 8]);
        let k = f32(shape![2, 5, 8]);
        let v = f32(shape![2, 5, 3]);
        assert!(err(&attention(false, AttentionMask::None), &[&q, &f32(shape![2, 5, 7]), &v]).contains("Q·Kᵀ"));
        assert!(err(&attention(false, AttentionMask::None), &[&q, &k, &f32(shape![2, 6, 3])]).contains("scores·V"));
        let e = err(&attention(false, AttentionMask::Add), &[&q, &k, &v, &f32(shape![2, 4, 6])]);
        assert!(e.contains("mask") && e.contains("does not broadcast"), "{e}");
        let e = err(&attention(false, AttentionMask::Select { fill: 0.0 }), &[&q, &k, &v, &f32(shape![4, 5])]);
        assert!(e.contains("bool"), "{e}");
        assert!(err(&attention(false, AttentionMask::Add), &[&q, &k, &v]).contains("missing"));
        assert!(err(&attention(false, AttentionMask::None), &[&f32(shape![8]), &k, &v]).contains("rank 2"));
    }

    #[test]
    fn gemm_transposes() {
        let a = f32(shape![3, "m"]);
        let b = f32(shape![10, 3]);
        assert_eq!(one(&gemm(true, true), &[&a, &b, &f32(shape![10])]).shape, shape!["m", 10]);
        assert_eq!(one(&gemm(false, false), &[&f32(shape![4, 5]), &f32(shape![5, 6])]).shape, shape![4, 6]);
        let e = err(&gemm(false, false), &[&f32(shape![4, 5]), &f32(shape![6, 5])]);
        assert!(e.contains("K = 5") && e.contains("K = 6"), "{e}");
        assert!(err(&gemm(false, false), &[&f32(shape![4, 5]), &f32(shape![5, 6]), &f32(shape![5])]).contains("C"));
        assert!(err(&gemm(false, false), &[&f32(shape![4, 5, 1]), &f32(shape![5, 6])]).contains("rank 2"));
    }
}
