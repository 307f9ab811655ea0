//! A batch's tensors: the requests' tensors of one input stacked along the batch
//! dimension (dim 0), and a model output cut back into each request's rows.

use smelt_ir::Tensor;

/// Stacks `parts` along dim 0. They share a datatype and every dim but the first.
pub fn concat_batch(name: &str, parts: Vec<Tensor>) -> Result<Tensor, String> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else { return Err(format!("no tensors to batch for '{name}'")) };
    let rest: Vec<Tensor> = parts.collect();
    if rest.is_empty() {
        return Ok(first);
    }
    let dtype = first.dtype();
    let Some((&rows, inner)) = first.shape().split_first() else {
        return Err(format!("'{name}' has no batch dimension to batch along"));
    };
    let mut total = rows;
    let mut bytes = Vec::with_capacity(first.bytes().len() * (rest.len() + 1));
    bytes.extend_from_slice(first.bytes());
    for part in &rest {
        if part.dtype() != dtype || part.shape().get(1..) != Some(inner) {
            return Err(format!(
                "'{name}' tensors of shapes {:?} ({}) and {:?} ({}) cannot be batched together",
                first.shape(),
                dtype.name(),
                part.shape(),
                part.dtype().name()
            ));
        }
        total += part.shape()[0];
        bytes.extend_from_slice(part.bytes());
    }
    let mut shape = first.shape().to_vec();
    shape[0] = total;
    Tensor::from_bytes(dtype, &shape, &bytes).map_err(|e| format!("batching '{name}': {e}"))
}

/// Cuts `tensor` along dim 0 into pieces of `rows[i]` rows each; the rows must
/// add up to its first dimension.
pub fn split_batch(name: &str, tensor: Tensor, rows: &[usize]) -> Result<Vec<Tensor>, String> {
    if rows.len() == 1 {
        return match tensor.shape().first() {
            Some(&n) if n == rows[0] => Ok(vec![tensor]),
            _ => Err(format!(
                "output '{name}' has shape {:?}; its first dimension should be the batch size {}",
                tensor.shape(),
                rows[0]
            )),
        };
    }
    let total: usize = rows.iter().sum();
    let Some((&n, inner)) = tensor.shape().split_first() else {
        return Err(format!("output '{name}' is a scalar; a batched model must give it a batch dimension"));
    };
    if n != total {
        return Err(format!(
            "output '{name}' has shape {:?}; its first dimension should be the batch size {total}",
            tensor.shape()
        ));
    }
    let row_bytes = tensor.bytes().len().checked_div(n).unwrap_or(0);
    let mut pieces = Vec::with_capacity(rows.len());
    let mut at = 0;
    for &r in rows {
        let mut shape = Vec::with_capacity(inner.len() + 1);
        shape.push(r);
        shape.extend_from_slice(inner);
        let piece = &tensor.bytes()[at * row_bytes..(at + r) * row_bytes];
        pieces.push(Tensor::from_bytes(tensor.dtype(), &shape, piece).map_err(|e| format!("'{name}': {e}"))?);
        at += r;
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_gives_the_parts_back() {
        let a = Tensor::from_vec(&[1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let b = Tensor::from_vec(&[2, 3], vec![4.0f32, 5.0, 6.0, 7.0, 8.0, 9.0]).unwrap();
        let batch = concat_batch("x", vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(batch.shape(), &[3, 3]);
        assert_eq!(batch.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let parts = split_batch("y", batch, &[1, 2]).unwrap();
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn mismatches_are_errors_naming_the_tensor() {
        let a = Tensor::from_vec(&[1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let b = Tensor::from_vec(&[1, 2], vec![4.0f32, 5.0]).unwrap();
        let err = concat_batch("x", vec![a.clone(), b]).unwrap_err();
        assert!(err.contains("'x'"), "{err}");
        let err = split_batch("y", a.clone(), &[2, 2]).unwrap_err();
        assert!(err.contains("output 'y'") && err.contains("batch size 4"), "{err}");
        let err = split_batch("y", a, &[2]).unwrap_err();
        assert!(err.contains("batch size 2"), "{err}");
    }
}
