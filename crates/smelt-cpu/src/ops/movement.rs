//! Shape and data-movement ops. None of them computes on element values, so each
//! works on bytes and element sizes: one code path serves every dtype.
//!
//! The copies that walk strided views (Transpose, Slice, Expand, Tile, Pad) share
//! the inner loops of [`super::layout`].

mod concat;
mod expand;
mod one_hot;
mod pad;
mod slice;
mod transpose;
mod trilu;

#[cfg(test)]
pub(crate) mod testing;

use super::dims::{self, Dims, IntValues};
use super::layout;
use crate::{CpuError, Result};
use smelt_ir::{DType, Op, Tensor, TensorView, TensorViewMut};

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    match op {
        Op::Reshape { allowzero } => reshape(*allowzero, inputs, outputs),
        Op::Flatten { axis } => flatten(*axis, inputs, outputs),
        Op::Squeeze => squeeze(inputs, outputs),
        Op::Unsqueeze => unsqueeze(inputs, outputs),
        Op::Transpose { perm } => transpose::transpose(perm.as_deref(), inputs, outputs),
        Op::Concat { axis } => concat::concat(*axis, inputs, outputs),
        Op::Split { axis, num_outputs } => concat::split(*axis, *num_outputs, inputs, outputs),
        Op::Slice => slice::slice(inputs, outputs),
        Op::Expand => expand::expand(inputs, outputs),
        Op::Tile => expand::tile(inputs, outputs),
        Op::Pad { mode } => pad::pad(*mode, inputs, outputs),
        Op::Shape { start, end } => shape(*start, *end, inputs, outputs),
        Op::Size => size(inputs, outputs),
        Op::ConstantOfShape { value } => constant_of_shape(value, inputs, outputs),
        Op::Range => range(inputs, outputs),
        Op::Trilu { upper } => trilu::trilu(*upper, inputs, outputs),
        Op::OneHot { axis } => one_hot::one_hot(*axis, inputs, outputs),
        other => Err(CpuError::invalid(other.name(), "is not a data-movement op")),
    }
}

/// Input `index`, which the op requires.
pub(crate) fn required<'a>(
    op: &'static str,
    inputs: &[Option<TensorView<'a>>],
    index: usize,
) -> Result<TensorView<'a>> {
    optional(op, inputs, index)?.ok_or_else(|| CpuError::invalid(op, format!("input {index} is required but missing")))
}

/// Input `index` if present.
pub(crate) fn optional<'a>(
    op: &'static str,
    inputs: &[Option<TensorView<'a>>],
    index: usize,
) -> Result<Option<TensorView<'a>>> {
    inputs.get(index).copied().flatten().map(|input| checked(op, index, input)).transpose()
}

/// `input` after checking that its buffer holds exactly its shape, which the
/// kernels' indexing relies on.
fn checked<'a>(op: &'static str, index: usize, input: TensorView<'a>) -> Result<TensorView<'a>> {
    let bytes = input.len() * input.dtype.size();
    if input.data.len() == bytes {
        Ok(input)
    } else {
        Err(CpuError::invalid(
            op,
            format!(
                "input {index} holds {} bytes, but {:?} {} needs {bytes}",
                input.data.len(),
                input.shape,
                input.dtype
            ),
        ))
    }
}

/// The values of an integer input such as `axes` or `pads` (int64 or int32).
pub(crate) fn int_values(op: &'static str, what: &str, t: TensorView) -> Result<IntValues> {
    match t.dtype {
        DType::I64 | DType::I32 => Ok(dims::i64_values(t)),
        other => Err(CpuError::invalid(op, format!("{what} must be int64 or int32, got {other}"))),
    }
}

/// `axis` in `[-rank, rank)` as an index.
pub(crate) fn normalize_axis(op: &'static str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if (-r..r).contains(&axis) {
        Ok(axis.rem_euclid(r) as usize)
    } else {
        Err(CpuError::invalid(op, format!("axis {axis} is out of range for rank {rank}")))
    }
}

/// Output `index`, after checking it has the dtype and shape this kernel computes.
pub(crate) fn output_at<'o, 'a>(
    op: &'static str,
    outputs: &'o mut [TensorViewMut<'a>],
    index: usize,
    dtype: DType,
    shape: &[usize],
) -> Result<&'o mut TensorViewMut<'a>> {
    let count = outputs.len();
    let out = outputs
        .get_mut(index)
        .ok_or_else(|| CpuError::invalid(op, format!("output {index} is missing (the node has {count})")))?;
    if out.dtype != dtype {
        return Err(CpuError::invalid(op, format!("output {index} is {}, but the inputs give {dtype}", out.dtype)));
    }
    if out.shape != shape {
        return Err(CpuError::invalid(
            op,
            format!("output {index} has shape {:?}, but the inputs give {shape:?}", out.shape),
        ));
    }
    let bytes = shape.iter().product::<usize>() * dtype.size();
    if out.data.len() != bytes {
        return Err(CpuError::invalid(
            op,
            format!("output {index} holds {} bytes, but {shape:?} {dtype} needs {bytes}", out.data.len()),
        ));
    }
    Ok(out)
}

/// The first output, checked like [`output_at`].
pub(crate) fn output<'o, 'a>(
    op: &'static str,
    outputs: &'o mut [TensorViewMut<'a>],
    dtype: DType,
    shape: &[usize],
) -> Result<&'o mut TensorViewMut<'a>> {
    output_at(op, outputs, 0, dtype, shape)
}

/// The single value of a one-element integer input such as Trilu's `k`.
pub(crate) fn scalar_int(op: &'static str, what: &str, t: TensorView) -> Result<i64> {
    match int_values(op, what, t)?[..] {
        [v] => Ok(v),
        ref vs => Err(CpuError::invalid(op, format!("{what} must hold one value, got {}", vs.len()))),
    }
}

/// A same-size copy under a new shape: what Reshape, Flatten, Squeeze and Unsqueeze
/// all come down to once the output shape is known.
fn copy_as(op: &'static str, data: TensorView, outputs: &mut [TensorViewMut], shape: &[usize]) -> Result<()> {
    let out = output(op, outputs, data.dtype, shape)?;
    layout::copy_bytes(op, out.data, data.data)
}

fn reshape(allowzero: bool, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Reshape";
    let data = required(OP, inputs, 0)?;
    let spec = int_values(OP, "shape", required(OP, inputs, 1)?)?;
    let mut shape = Dims::with_capacity(spec.len());
    let mut inferred = None;
    for (i, &v) in spec.iter().enumerate() {
        match v {
            0 if !allowzero => shape.push(*data.shape.get(i).ok_or_else(|| {
                CpuError::invalid(
                    OP,
                    format!("shape[{i}] is 0 (copy the input's), but the input has rank {}", data.rank()),
                )
            })?),
            -1 if inferred.is_some() => {
                return Err(CpuError::invalid(OP, format!("shape {spec:?} has more than one -1")));
            }
            -1 => {
                inferred = Some(i);
                shape.push(1);
            }
            v if v < 0 => return Err(CpuError::invalid(OP, format!("shape[{i}] is {v}"))),
            v => shape.push(v as usize),
        }
    }
    let total = data.len();
    // Counts in u128: shape values come from the model and may be absurdly large.
    let count = |dims: &[usize]| dims.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
    if let Some(i) = inferred {
        let known = count(&shape);
        if known == 0 {
            return Err(CpuError::invalid(
                OP,
                format!("cannot infer the -1 in {spec:?}: the other dims hold 0 elements"),
            ));
        }
        let missing = total as u128 / known;
        if missing * known != total as u128 {
            return Err(CpuError::invalid(OP, format!("cannot reshape {:?} to {spec:?}", data.shape)));
        }
        shape[i] = missing as usize;
    }
    if count(&shape) != total as u128 {
        return Err(CpuError::invalid(OP, format!("cannot reshape {:?} ({total} elements) to {shape:?}", data.shape)));
    }
    copy_as(OP, data, outputs, &shape)
}

fn flatten(axis: i64, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Flatten";
    let data = required(OP, inputs, 0)?;
    // Unlike most axes, Flatten's may equal the rank: everything goes to the outer dim.
    let rank = data.rank() as i64;
    if !(-rank..=rank).contains(&axis) {
        return Err(CpuError::invalid(OP, format!("axis {axis} is out of range for rank {rank}")));
    }
    let axis = (if axis < 0 { axis + rank } else { axis }) as usize;
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis..].iter().product();
    copy_as(OP, data, outputs, &[outer, inner])
}

/// Normalised, duplicate-free axes from an `axes` input, for a tensor of `rank`.
fn axes_of(op: &'static str, axes: &[i64], rank: usize) -> Result<Dims> {
    let mut out = Dims::with_capacity(axes.len());
    for &a in axes {
        let a = normalize_axis(op, a, rank)?;
        if out.contains(&a) {
            return Err(CpuError::invalid(op, format!("axes {axes:?} name axis {a} twice")));
        }
        out.push(a);
    }
    Ok(out)
}

fn squeeze(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Squeeze";
    let data = required(OP, inputs, 0)?;
    // An empty `axes` means no axes were given, as in onnxruntime.
    let shape: Dims = match optional(OP, inputs, 1)?.filter(|axes| !axes.is_empty()) {
        None => data.shape.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes = axes_of(OP, &int_values(OP, "axes", axes)?, data.rank())?;
            if let Some(&a) = axes.iter().find(|&&a| data.shape[a] != 1) {
                return Err(CpuError::invalid(
                    OP,
                    format!("axis {a} has size {}, not 1, in shape {:?}", data.shape[a], data.shape),
                ));
            }
            data.shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        }
    };
    copy_as(OP, data, outputs, &shape)
}

fn unsqueeze(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Unsqueeze";
    let data = required(OP, inputs, 0)?;
    let axes = int_values(OP, "axes", required(OP, inputs, 1)?)?;
    let rank = data.rank() + axes.len();
    let axes = axes_of(OP, &axes, rank)?;
    let mut dims = data.shape.iter();
    let shape: Dims =
        (0..rank).map(|i| if axes.contains(&i) { 1 } else { *dims.next().expect("rank counts every dim") }).collect();
    copy_as(OP, data, outputs, &shape)
}

fn shape(start: i64, end: Option<i64>, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Shape";
    let data = required(OP, inputs, 0)?;
    let rank = data.rank() as i64;
    // Out-of-range start/end are clamped, not errors.
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let (start, end) = (clamp(start), clamp(end.unwrap_or(rank)));
    let dims: IntValues = data.shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
    let out = output(OP, outputs, DType::I64, &[dims.len()])?;
    out.data.copy_from_slice(bytemuck::cast_slice(&dims[..]));
    Ok(())
}

fn size(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Size";
    let data = required(OP, inputs, 0)?;
    let out = output(OP, outputs, DType::I64, &[])?;
    out.data.copy_from_slice(&(data.len() as i64).to_le_bytes());
    Ok(())
}

fn constant_of_shape(value: &Tensor, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "ConstantOfShape";
    let dims = int_values(OP, "shape", required(OP, inputs, 0)?)?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| CpuError::invalid(OP, format!("shape {dims:?} has a negative dim"))))
        .collect::<Result<Dims>>()?;
    if value.len() != 1 {
        return Err(CpuError::invalid(OP, format!("value must hold one element, got {}", value.len())));
    }
    let out = output(OP, outputs, value.dtype(), &shape)?;
    layout::fill(out.data, value.bytes());
    Ok(())
}

fn range(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    const OP: &str = "Range";
    let [start, limit, delta] = [0, 1, 2].map(|i| required(OP, inputs, i));
    let (start, limit, delta) = (start?, limit?, delta?);
    for (what, t) in [("start", start), ("limit", limit), ("delta", delta)] {
        if t.len() != 1 || t.dtype != start.dtype {
            return Err(CpuError::invalid(
                OP,
                format!("{what} must be one {} element, got {} {:?}", start.dtype, t.dtype, t.shape),
            ));
        }
    }
    let dtype = start.dtype;
    let first = |t: TensorView| t.to_f64_vec()[0];
    if dtype.is_float() {
        let (s, l, d) = (first(start), first(limit), first(delta));
        if d == 0.0 || !d.is_finite() {
            return Err(CpuError::invalid(OP, format!("delta is {d}")));
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        let out = output(OP, outputs, dtype, &[n])?;
        smelt_ir::dispatch_dtype!(dtype, T => {
            let out = out.as_mut_slice::<T>()?;
            for (i, v) in out.iter_mut().enumerate() {
                *v = <T as smelt_ir::Element>::from_f64(s + i as f64 * d);
            }
        });
        return Ok(());
    }
    if !dtype.is_int() {
        return Err(CpuError::UnsupportedDType { op: OP, dtype });
    }
    // Integers exactly, in i128 so that no i64/u64 start, limit or step overflows.
    let as_i128 = |t: TensorView| match t.dtype {
        DType::U64 => t.as_slice::<u64>().map(|v| v[0] as i128),
        _ => Ok(t.to_i64_vec()[0] as i128),
    };
    let (s, l, d) = (as_i128(start)?, as_i128(limit)?, as_i128(delta)?);
    if d == 0 {
        return Err(CpuError::invalid(OP, "delta is 0"));
    }
    let span = l - s;
    let n = (span / d + i128::from(span % d != 0 && (span < 0) == (d < 0))).max(0) as usize;
    let out = output(OP, outputs, dtype, &[n])?;
    smelt_ir::dispatch_dtype!(dtype, T => {
        for (i, v) in out.as_mut_slice::<T>()?.iter_mut().enumerate() {
            // Every value lies between start and limit, both of type T, so it fits.
            let x = s + i as i128 * d;
            *v = num_traits::cast::<i128, T>(x)
                .ok_or_else(|| CpuError::invalid(OP, format!("value {x} does not fit {dtype}")))?;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn reshape_infers_and_copies() {
        let mut rng = Rng::new(1);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[2, 3, 4]);
            let cases: [(&[i64], &[usize], bool); 5] = [
                (&[4, -1], &[4, 6], false),
                (&[0, 0, -1], &[2, 3, 4], false),
                (&[24], &[24], false),
                (&[-1, 2, 0], &[3, 2, 4], false),
                (&[1, 2, 1, 12], &[1, 2, 1, 12], true),
            ];
            for (spec, want, allowzero) in cases {
                let got = run1(&Op::Reshape { allowzero }, &[Some(&x), Some(&i64s(spec))], dtype, want).unwrap();
                assert_eq!(got.bytes(), x.bytes());
            }
        }
        let empty = random(&mut rng, DType::F32, &[0, 3]);
        let got = run1(&Op::Reshape { allowzero: true }, &[Some(&empty), Some(&i64s(&[3, 0]))], DType::F32, &[3, 0]);
        assert_eq!(got.unwrap().shape(), &[3, 0]);
        let x = random(&mut rng, DType::F32, &[2, 3]);
        for bad in
            [&[4, -1][..], &[-1, -1], &[5], &[0, 0, 0], &[-2, 3], &[i64::MAX, 4, -1], &[i64::MAX, i64::MAX, i64::MAX]]
        {
            let err = run1(&Op::Reshape { allowzero: false }, &[Some(&x), Some(&i64s(bad))], DType::F32, &[6]);
            assert!(err.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reshape_checks_the_given_output_shape() {
        let x = random(&mut Rng::new(2), DType::F32, &[2, 3]);
        let err = run1(&Op::Reshape { allowzero: false }, &[Some(&x), Some(&i64s(&[3, 2]))], DType::F32, &[2, 3]);
        assert!(err.unwrap_err().to_string().contains("[3, 2]"));
    }

    #[test]
    fn flatten_squeeze_unsqueeze_shapes() {
        let mut rng = Rng::new(3);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[2, 1, 3, 1]);
            for (axis, want) in
                [(0, [1, 6]), (1, [2, 3]), (2, [2, 3]), (3, [6, 1]), (4, [6, 1]), (-1, [6, 1]), (-4, [1, 6])]
            {
                let got = run1(&Op::Flatten { axis }, &[Some(&x)], dtype, &want).unwrap();
                assert_eq!(got.bytes(), x.bytes());
            }
            assert!(run1(&Op::Flatten { axis: 5 }, &[Some(&x)], dtype, &[6, 1]).is_err());

            let got = run1(&Op::Squeeze, &[Some(&x)], dtype, &[2, 3]).unwrap();
            assert_eq!(got.bytes(), x.bytes());
            let got = run1(&Op::Squeeze, &[Some(&x), Some(&i64s(&[]))], dtype, &[2, 3]).unwrap();
            assert_eq!(got.bytes(), x.bytes());
            let got = run1(&Op::Squeeze, &[Some(&x), Some(&i64s(&[-1]))], dtype, &[2, 1, 3]).unwrap();
            assert_eq!(got.bytes(), x.bytes());
            assert!(run1(&Op::Squeeze, &[Some(&x), Some(&i64s(&[0]))], dtype, &[1, 3, 1]).is_err());
            assert!(run1(&Op::Squeeze, &[Some(&x), Some(&i64s(&[1, -3]))], dtype, &[2, 3, 1]).is_err());

            let axes = i32s(&[0, -1, 3]);
            let got = run1(&Op::Unsqueeze, &[Some(&x), Some(&axes)], dtype, &[1, 2, 1, 1, 3, 1, 1]).unwrap();
            assert_eq!(got.bytes(), x.bytes());
            assert!(run1(&Op::Unsqueeze, &[Some(&x), Some(&i64s(&[7]))], dtype, &[2, 1, 3, 1, 1]).is_err());
            assert!(run1(&Op::Unsqueeze, &[Some(&x), Some(&i64s(&[1, 1]))], dtype, &[2, 1, 1, 1, 3, 1]).is_err());
        }
    }

    #[test]
    fn shape_and_size() {
        let x = random(&mut Rng::new(4), DType::F16, &[2, 3, 0, 5]);
        for (start, end, want) in [
            (0, None, vec![2, 3, 0, 5]),
            (1, Some(-1), vec![3, 0]),
            (-10, Some(10), vec![2, 3, 0, 5]),
            (3, Some(1), vec![]),
            (-1, None, vec![5]),
        ] {
            let got = run1(&Op::Shape { start, end }, &[Some(&x)], DType::I64, &[want.len()]).unwrap();
            assert_eq!(got.to_i64_vec(), want);
        }
        let got = run1(&Op::Size, &[Some(&x)], DType::I64, &[]).unwrap();
        assert_eq!(got.to_i64_vec(), vec![0]);
        let y = random(&mut Rng::new(4), DType::Bool, &[2, 3]);
        assert_eq!(run1(&Op::Size, &[Some(&y)], DType::I64, &[]).unwrap().to_i64_vec(), vec![6]);
    }

    #[test]
    fn constant_of_shape_fills_any_dtype() {
        let values = [
            Tensor::scalar(2.5f32),
            Tensor::from_slice(&[1], &[-7i64]).unwrap(),
            Tensor::from_bools(&[1], &[true]).unwrap(),
            Tensor::scalar(smelt_ir::half::f16::from_f32(1.5)),
            Tensor::scalar(3u8),
        ];
        for value in values {
            let op = Op::ConstantOfShape { value: value.clone() };
            let got = run1(&op, &[Some(&i64s(&[2, 3]))], value.dtype(), &[2, 3]).unwrap();
            assert_eq!(got.bytes(), value.bytes().repeat(6));
            let got = run1(&op, &[Some(&i64s(&[]))], value.dtype(), &[]).unwrap();
            assert_eq!(got.bytes(), value.bytes());
            let got = run1(&op, &[Some(&i64s(&[4, 0]))], value.dtype(), &[4, 0]).unwrap();
            assert!(got.bytes().is_empty());
        }
        let op = Op::ConstantOfShape { value: Tensor::scalar(0f32) };
        assert!(run1(&op, &[Some(&i64s(&[-1]))], DType::F32, &[0]).is_err());
    }

    #[test]
    fn range_counts_and_values() {
        let f = |v: f32| Tensor::scalar(v);
        let got = run1(&Op::Range, &[Some(&f(1.0)), Some(&f(5.0)), Some(&f(1.5))], DType::F32, &[3]).unwrap();
        assert_eq!(got.to_f64_vec(), vec![1.0, 2.5, 4.0]);
        let got = run1(&Op::Range, &[Some(&f(10.0)), Some(&f(6.0)), Some(&f(-3.0))], DType::F32, &[2]).unwrap();
        assert_eq!(got.to_f64_vec(), vec![10.0, 7.0]);
        let got = run1(&Op::Range, &[Some(&f(1.0)), Some(&f(0.0)), Some(&f(1.0))], DType::F32, &[0]).unwrap();
        assert!(got.is_empty());

        let i = |v: i64| Tensor::scalar(v);
        for (s, l, d, want) in [
            (0, 10, 3, vec![0, 3, 6, 9]),
            (10, -2, -4, vec![10, 6, 2]),
            (10, -3, -4, vec![10, 6, 2, -2]),
            (5, 5, 1, vec![]),
            (0, 3, -1, vec![]),
        ] {
            let got = run1(&Op::Range, &[Some(&i(s)), Some(&i(l)), Some(&i(d))], DType::I64, &[want.len()]).unwrap();
            assert_eq!(got.to_i64_vec(), want, "{s}..{l} step {d}");
        }
        let i16s = |v: i16| Tensor::scalar(v);
        let got = run1(&Op::Range, &[Some(&i16s(-3)), Some(&i16s(3)), Some(&i16s(2))], DType::I16, &[3]).unwrap();
        assert_eq!(got.to_i64_vec(), vec![-3, -1, 1]);
        let h = |v: f32| Tensor::scalar(smelt_ir::half::f16::from_f32(v));
        let got = run1(&Op::Range, &[Some(&h(0.0)), Some(&h(2.0)), Some(&h(0.5))], DType::F16, &[4]).unwrap();
        assert_eq!(got.to_f64_vec(), vec![0.0, 0.5, 1.0, 1.5]);
        assert!(run1(&Op::Range, &[Some(&i(0)), Some(&i(3)), Some(&i(0))], DType::I64, &[0]).is_err());
        assert!(run1(&Op::Range, &[Some(&i(0)), Some(&f(3.0)), Some(&i(1))], DType::I64, &[3]).is_err());
    }
}
