//! Element-wise knowledge of the small integer tensors that shape arithmetic
//! passes around (`Shape → Gather → Unsqueeze → Concat → Reshape`).
//!
//! `Shape(x)` of an input `[batch, 3, 224, 224]` is not a constant, but three of
//! its four elements are known. Tracking them element by element lets
//! `Gather(Shape(x), 1)` fold to the constant 3 while `Gather(Shape(x), 0)` stays.

use crate::consts::tensor_from_i64;
use smelt_ir::{DType, Fact, Op, Shape, Tensor};

/// Constants longer than this are data, not shapes, and are not tracked.
const MAX_TRACKED_LEN: usize = 64;

/// A scalar or 1-D tensor whose elements are each known (`Some`) or not (`None`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DimsValue {
    pub dtype: DType,
    /// Rank 0 (then `elems` has one element) rather than rank 1.
    pub scalar: bool,
    pub elems: Vec<Option<i64>>,
}

impl DimsValue {
    fn vector(dtype: DType, elems: Vec<Option<i64>>) -> DimsValue {
        DimsValue { dtype, scalar: false, elems }
    }

    /// A small integer constant of rank 0 or 1.
    pub(crate) fn from_constant(tensor: &Tensor) -> Option<DimsValue> {
        let small = tensor.rank() <= 1 && tensor.len() <= MAX_TRACKED_LEN;
        if !small || !tensor.dtype().is_int() {
            return None;
        }
        let elems = tensor.to_i64_vec().into_iter().map(Some).collect();
        Some(DimsValue { dtype: tensor.dtype(), scalar: tensor.rank() == 0, elems })
    }

    /// What a value's fact says: its constant, or the dims shape inference recorded.
    pub(crate) fn from_fact(fact: &Fact) -> Option<DimsValue> {
        if let Some(tensor) = &fact.constant {
            return DimsValue::from_constant(tensor);
        }
        let dims = fact.dims_value.as_ref()?;
        let scalar = fact.shape.rank() == Some(0);
        if scalar && dims.len() != 1 {
            return None;
        }
        // Shape inference stores negative values (Reshape's -1) as the bit pattern of
        // the i64 in `Dim::Fixed`; the `as` cast restores them.
        let elems = dims.iter().map(|d| d.fixed().map(|n| n as i64)).collect();
        Some(DimsValue { dtype: fact.dtype, scalar, elems })
    }

    /// The tensor, once every element is known.
    pub(crate) fn to_tensor(&self) -> Option<Tensor> {
        let values: Vec<i64> = self.elems.iter().copied().collect::<Option<_>>()?;
        let shape: &[usize] = if self.scalar { &[] } else { &[values.len()] };
        Some(tensor_from_i64(self.dtype, shape, &values))
    }

    fn known(&self) -> Option<Vec<i64>> {
        self.elems.iter().copied().collect()
    }
}

/// What is known of one input of a shape-arithmetic node.
#[derive(Clone, Debug)]
pub(crate) enum Operand {
    /// An omitted optional input.
    Absent,
    /// A value none of whose elements is known.
    Opaque,
    Known(DimsValue),
}

/// What can be said about the single output of a shape-arithmetic node, given what
/// is known of its inputs and the shape of its first input. `None` when the op is
/// not shape arithmetic or nothing useful is known.
pub(crate) fn propagate(op: &Op, inputs: &[Operand], first_shape: Option<&Shape>) -> Option<DimsValue> {
    let input = |i: usize| match inputs.get(i) {
        Some(Operand::Known(value)) => Some(value),
        _ => None,
    };
    // An optional input: `Some(None)` when omitted, `None` when present but unknown.
    let optional = |i: usize| match inputs.get(i) {
        None | Some(Operand::Absent) => Some(None),
        Some(Operand::Known(value)) => Some(Some(value)),
        Some(Operand::Opaque) => None,
    };
    match op {
        Op::Shape { start, end } => {
            let dims = first_shape?.dims()?;
            let rank = dims.len() as i64;
            let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
            let (start, end) = (clamp(*start), clamp(end.unwrap_or(rank)));
            let elems = dims.get(start..end.max(start))?.iter().map(|d| d.fixed().map(|n| n as i64)).collect();
            Some(DimsValue::vector(DType::I64, elems))
        }
        Op::Size => {
            let dims = first_shape?.as_fixed()?;
            let size = dims.iter().product::<usize>() as i64;
            Some(DimsValue { dtype: DType::I64, scalar: true, elems: vec![Some(size)] })
        }
        Op::Identity => input(0).cloned(),
        Op::Cast { to } if *to != DType::Bool => Some(DimsValue { dtype: *to, ..input(0)?.clone() }),
        Op::Gather { axis: 0 | -1 } => gather(input(0)?, input(1)?),
        Op::Unsqueeze => {
            let data = input(0)?;
            let to_vector = data.scalar && matches!(input(1)?.known()?.as_slice(), [0] | [-1]);
            to_vector.then(|| DimsValue::vector(data.dtype, data.elems.clone()))
        }
        Op::Squeeze => {
            // Every valid Squeeze of a one-element vector (axes [0], [-1], [] or
            // omitted) gives a scalar, so the axes need not be known.
            let data = input(0)?;
            let to_scalar = !data.scalar && data.elems.len() == 1;
            to_scalar.then(|| DimsValue { scalar: true, ..data.clone() })
        }
        Op::Concat { axis: 0 | -1 } => {
            let parts: Vec<&DimsValue> = (0..inputs.len()).map(input).collect::<Option<_>>()?;
            let first = parts.first()?;
            let compatible = parts.iter().all(|p| !p.scalar && p.dtype == first.dtype);
            compatible.then(|| DimsValue::vector(first.dtype, parts.iter().flat_map(|p| p.elems.clone()).collect()))
        }
        Op::Slice => slice(input(0)?, input(1)?, input(2)?, optional(3)?, optional(4)?),
        _ => None,
    }
}

fn gather(data: &DimsValue, indices: &DimsValue) -> Option<DimsValue> {
    if data.scalar {
        return None;
    }
    let len = data.elems.len() as i64;
    let elems = indices
        .known()?
        .into_iter()
        .map(|i| {
            let i = if i < 0 { i + len } else { i };
            // Out-of-range indices are left for the runtime to report.
            (0..len).contains(&i).then(|| data.elems[i as usize])
        })
        .collect::<Option<_>>()?;
    Some(DimsValue { dtype: data.dtype, scalar: indices.scalar, elems })
}

/// ONNX Slice on a 1-D tensor, with its clamping rules for out-of-range bounds.
fn slice(
    data: &DimsValue,
    starts: &DimsValue,
    ends: &DimsValue,
    axes: Option<&DimsValue>,
    steps: Option<&DimsValue>,
) -> Option<DimsValue> {
    if data.scalar {
        return None;
    }
    let [start] = starts.known()?[..] else { return None };
    let [end] = ends.known()?[..] else { return None };
    if let Some(axes) = axes {
        if !matches!(axes.known()?.as_slice(), [0] | [-1]) {
            return None;
        }
    }
    let step = match steps {
        None => 1,
        Some(steps) => match steps.known()?[..] {
            [s] if s != 0 => s,
            _ => return None,
        },
    };
    let len = data.elems.len() as i64;
    if len == 0 {
        return Some(data.clone());
    }
    let wrap = |i: i64| if i < 0 { i.saturating_add(len) } else { i };
    let (start, end) = if step > 0 {
        (wrap(start).clamp(0, len), wrap(end).clamp(0, len))
    } else {
        (wrap(start).clamp(0, len - 1), wrap(end).clamp(-1, len - 1))
    };
    let mut elems = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        elems.push(data.elems[i as usize]);
        i += step;
    }
    Some(DimsValue::vector(data.dtype, elems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::Dim;

    fn ints(values: &[i64]) -> Operand {
        Operand::Known(DimsValue::vector(DType::I64, values.iter().copied().map(Some).collect()))
    }

    fn scalar(value: i64) -> Operand {
        Operand::Known(DimsValue { dtype: DType::I64, scalar: true, elems: vec![Some(value)] })
    }

    fn shape_of(shape: &Shape) -> Operand {
        Operand::Known(propagate(&Op::Shape { start: 0, end: None }, &[Operand::Opaque], Some(shape)).unwrap())
    }

    fn shape_of_input() -> Shape {
        Shape::new(vec![Dim::Sym("batch".into()), Dim::Fixed(3), Dim::Fixed(224), Dim::Unknown])
    }

    #[test]
    fn shape_keeps_fixed_dims_and_honours_start_end() {
        let full = propagate(&Op::Shape { start: 0, end: None }, &[Operand::Opaque], Some(&shape_of_input())).unwrap();
        assert_eq!(full.elems, vec![None, Some(3), Some(224), None]);
        let middle =
            propagate(&Op::Shape { start: 1, end: Some(-1) }, &[Operand::Opaque], Some(&shape_of_input())).unwrap();
        assert_eq!(middle.to_tensor().unwrap().to_i64_vec(), vec![3, 224]);
    }

    #[test]
    fn gather_of_a_fixed_dim_is_known_even_if_others_are_not() {
        let shape = shape_of(&shape_of_input());
        let dim1 = propagate(&Op::Gather { axis: 0 }, &[shape.clone(), scalar(1)], None).unwrap();
        assert!(dim1.scalar);
        assert_eq!(dim1.to_tensor().unwrap(), Tensor::scalar(3i64));
        let dim0 = propagate(&Op::Gather { axis: 0 }, &[shape.clone(), scalar(0)], None).unwrap();
        assert_eq!(dim0.elems, vec![None]);
        assert!(propagate(&Op::Gather { axis: 0 }, &[shape, scalar(9)], None).is_none());
    }

    #[test]
    fn unsqueeze_concat_builds_a_reshape_target() {
        let batch = Operand::Known(DimsValue { dtype: DType::I64, scalar: true, elems: vec![None] });
        let batch_vec = Operand::Known(propagate(&Op::Unsqueeze, &[batch, ints(&[0])], None).unwrap());
        let target = propagate(&Op::Concat { axis: 0 }, &[batch_vec, ints(&[-1]), ints(&[64])], None).unwrap();
        assert_eq!(target.elems, vec![None, Some(-1), Some(64)]);
        assert!(target.to_tensor().is_none());
    }

    #[test]
    fn slice_follows_onnx_clamping() {
        let data = ints(&[10, 20, 30, 40]);
        let run = |starts, ends, steps| {
            propagate(&Op::Slice, &[data.clone(), ints(starts), ints(ends), Operand::Absent, steps], None)
                .and_then(|d| d.known())
        };
        assert_eq!(run(&[1], &[i64::MAX], Operand::Absent), Some(vec![20, 30, 40]));
        assert_eq!(run(&[-2], &[4], Operand::Absent), Some(vec![30, 40]));
        assert_eq!(run(&[-1], &[i64::MIN], ints(&[-1])), Some(vec![40, 30, 20, 10]));
        assert_eq!(run(&[0], &[4], ints(&[2])), Some(vec![10, 30]));
        assert_eq!(run(&[3], &[1], Operand::Absent), Some(vec![]));
        // Steps computed at run time could be anything.
        assert_eq!(run(&[0], &[4], Operand::Opaque), None);
    }

    #[test]
    fn squeeze_and_cast() {
        let one = propagate(&Op::Squeeze, &[ints(&[7]), Operand::Absent], None).unwrap();
        assert!(one.scalar);
        let cast = propagate(&Op::Cast { to: DType::I32 }, &[Operand::Known(one)], None).unwrap();
        assert_eq!(cast.to_tensor().unwrap(), Tensor::scalar(7i32));
        assert!(propagate(&Op::Cast { to: DType::Bool }, &[ints(&[1])], None).is_none());
    }

    #[test]
    fn constants_and_facts_are_sources() {
        let c = Tensor::from_vec(&[2], vec![4i32, 5]).unwrap();
        assert_eq!(DimsValue::from_constant(&c).unwrap().elems, vec![Some(4), Some(5)]);
        let floats = Tensor::from_vec(&[1], vec![1.0f32]).unwrap();
        assert!(DimsValue::from_constant(&floats).is_none());

        let mut fact = Fact::new(DType::I64, Shape::fixed(&[3]));
        fact.dims_value = Some(vec![Dim::Sym("batch".into()), Dim::Fixed(8), Dim::Fixed(-1i64 as usize)]);
        assert_eq!(DimsValue::from_fact(&fact).unwrap().elems, vec![None, Some(8), Some(-1)]);
    }
}
