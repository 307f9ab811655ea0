//! Normalisations: the output has the input's shape; parameters are checked
//! against the axes they scale.

use super::dims::{check_broadcasts_to, norm_axis, unify};
use super::Args;
use crate::{DType, Dim, Fact, Shape};

/// Checks that a per-channel parameter is `[C]` where its shape is known.
fn check_per_channel(p: &Fact, c: &Dim, what: &str) -> Result<(), String> {
    if let Some(d) = p.shape.dims() {
        if d.len() != 1 || unify(&d[0], c).is_none() {
            return Err(format!("{what} must be [{c}] (one value per channel), got {}", p.shape));
        }
    }
    Ok(())
}

/// The channel dim of an `[N, C, ...]` input.
fn channels(x: &Shape) -> Result<Dim, String> {
    match x.dims() {
        Some(d) if d.len() < 2 => Err(format!("input must be [N, C, ...], got {x}")),
        Some(d) => Ok(d[1].clone()),
        None => Ok(Dim::Unknown),
    }
}

pub(super) fn batch_norm(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "scale", "B", "input_mean", "input_var"], 5)?;
    let x = a.req(0);
    let c = channels(&x.shape)?;
    for i in 1..5 {
        check_per_channel(a.req(i), &c, a.name(i))?;
    }
    // Training-mode exporters may list running_mean and running_var as outputs.
    let stat = Fact::new(a.req(3).dtype, Shape::new(vec![c]));
    Ok(vec![Fact::new(x.dtype, x.shape.clone()), stat.clone(), stat])
}

pub(super) fn layer_norm(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "Scale", "B"], 2)?;
    let x = a.req(0);
    let dtype = a.same_dtype(&[0, 1, 2])?;
    // Mean and InvStdDev are stored in `stash_type`, whose default (the only value
    // Smelt imports) is float32.
    let stats = match x.shape.dims() {
        None => Shape::unknown(),
        Some(d) => {
            let axis = norm_axis(axis, d.len(), "axis")?;
            let normalized = Shape::new(d[axis..].to_vec());
            for i in [1, 2] {
                if let Some(p) = a.opt(i) {
                    check_broadcasts_to(&p.shape, &normalized, a.name(i))?;
                }
            }
            let mut s = d[..axis].to_vec();
            s.extend(std::iter::repeat_n(Dim::Fixed(1), d.len() - axis));
            Shape::new(s)
        }
    };
    Ok(vec![Fact::new(dtype, x.shape.clone()), Fact::new(DType::F32, stats.clone()), Fact::new(DType::F32, stats)])
}

pub(super) fn instance_norm(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "scale", "B"], 3)?;
    let x = a.req(0);
    let c = channels(&x.shape)?;
    check_per_channel(a.req(1), &c, "scale")?;
    check_per_channel(a.req(2), &c, "B")?;
    Ok(vec![Fact::new(a.same_dtype(&[0, 1, 2])?, x.shape.clone())])
}

pub(super) fn group_norm(num_groups: usize, per_channel: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "scale", "bias"], 3)?;
    let x = a.req(0);
    let c = channels(&x.shape)?;
    if num_groups == 0 {
        return Err("num_groups must be positive".into());
    }
    if let Dim::Fixed(n) = c {
        if n % num_groups != 0 {
            return Err(format!("{n} channels of X {} do not divide into {num_groups} groups", x.shape));
        }
    }
    // Opset 21 scales each channel; opset 18 scales each group.
    let expect = if per_channel { c } else { Dim::Fixed(num_groups) };
    check_per_channel(a.req(1), &expect, "scale")?;
    check_per_channel(a.req(2), &expect, "bias")?;
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn lp_norm(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    let x = a.req(0);
    if let Some(r) = x.shape.rank() {
        norm_axis(axis, r, "axis")?;
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Op};

    #[test]
    fn layer_norm_outputs() {
        let op = Op::LayerNormalization { axis: -1, epsilon: 1e-5 };
        let x = f32(shape!["batch", "seq", 768]);
        let out = run(&op, &[&x, &f32(shape![768]), &f32(shape![768])], 3);
        assert_eq!(out[0].shape, x.shape);
        assert_eq!(out[1].shape, shape!["batch", "seq", 1]);
        assert_eq!(out[2].dtype, DType::F32);
        let half = fact(DType::F16, shape![2, 3, 4]);
        let out = run(&Op::LayerNormalization { axis: 1, epsilon: 1e-5 }, &[&half, &fact(DType::F16, shape![3, 4])], 2);
        assert_eq!(out[0].dtype, DType::F16);
        assert_eq!(out[1].shape, shape![2, 1, 1]);
        assert_eq!(out[1].dtype, DType::F32);
        let e = err(&op, &[&x, &f32(shape![512])]);
        assert!(e.contains("Scale") && e.contains("512"), "{e}");
    }

    #[test]
    fn batch_instance_and_group_norm() {
        let x = f32(shape!["N", 64, 56, 56]);
        let c = f32(shape![64]);
        let bn = Op::BatchNormalization { epsilon: 1e-5 };
        assert_eq!(one(&bn, &[&x, &c, &c, &c, &c]).shape, x.shape);
        assert!(err(&bn, &[&x, &c, &c, &c, &f32(shape![32])]).contains("input_var"));
        let inn = Op::InstanceNormalization { epsilon: 1e-5 };
        assert_eq!(one(&inn, &[&x, &c, &c]).shape, x.shape);
        let gn = Op::GroupNormalization { epsilon: 1e-5, num_groups: 8, per_channel: true };
        assert_eq!(one(&gn, &[&x, &c, &c]).shape, x.shape);
        let gn18 = Op::GroupNormalization { epsilon: 1e-5, num_groups: 8, per_channel: false };
        let g = f32(shape![8]);
        assert_eq!(one(&gn18, &[&x, &g, &g]).shape, x.shape);
        let bad = Op::GroupNormalization { epsilon: 1e-5, num_groups: 7, per_channel: true };
        assert!(err(&bad, &[&x, &c, &c]).contains("7 groups"));
        let lp = Op::LpNormalization { axis: 1, p: 2 };
        assert_eq!(one(&lp, &[&x]).shape, x.shape);
    }
}
