//! numpy broadcasting as strides: an operand's strides over the output's dims,
//! zero where it is broadcast, right-aligned into a fixed rank for the kernels.

/// Row-major strides of `shape` in elements.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Strides of `input` read at each index of `out` (rank `out.len()`), or `None`
/// when `input` does not broadcast to `out`.
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Option<Vec<usize>> {
    if input.len() > out.len() {
        return None;
    }
    let own = contiguous_strides(input);
    let pad = out.len() - input.len();
    let mut strides = vec![0; out.len()];
    for (d, &n) in input.iter().enumerate() {
        let o = out[pad + d];
        if n == o {
            strides[pad + d] = own[d];
        } else if n != 1 {
            return None;
        }
    }
    Some(strides)
}

/// `values` right-aligned into `rank` slots, padded in front with `fill`.
pub fn right_align(values: &[usize], rank: usize, fill: usize) -> Option<Vec<u32>> {
    if values.len() > rank {
        return None;
    }
    let mut out = vec![fill as u32; rank - values.len()];
    for &v in values {
        out.push(u32::try_from(v).ok()?);
    }
    Some(out)
}

/// Merges adjacent output dims where every operand is contiguous across the pair
/// (or broadcast across both), so high-rank shapes fit the kernels' fixed rank.
/// Returns the merged output dims and each operand's merged strides.
pub fn coalesce(out: &[usize], operands: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<usize>> = vec![Vec::new(); operands.len()];
    for d in 0..out.len() {
        if out[d] == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && operands.iter().zip(&strides).all(|(s, m)| {
                let prev = *m.last().expect("same length as dims");
                s[d] * out[d] == prev || (prev == 0 && s[d] == 0)
            });
        if mergeable {
            let last = dims.len() - 1;
            dims[last] *= out[d];
            for (m, s) in strides.iter_mut().zip(operands) {
                let l = m.len() - 1;
                m[l] = s[d];
            }
        } else {
            dims.push(out[d]);
            for (m, s) in strides.iter_mut().zip(operands) {
                m.push(s[d]);
            }
        }
    }
    (dims, strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_merging() {
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]).unwrap(), vec![0, 1, 0]);
        assert!(broadcast_strides(&[3], &[2, 4]).is_none());
        let a = contiguous_strides(&[2, 3, 4]);
        let b = broadcast_strides(&[4], &[2, 3, 4]).unwrap();
        let (dims, s) = coalesce(&[2, 3, 4], &[a, b]);
        assert_eq!(dims, vec![6, 4]);
        assert_eq!(s, vec![vec![4, 1], vec![0, 1]]);
        let (dims, s) = coalesce(&[1, 5, 1], &[vec![5, 1, 1]]);
        assert_eq!((dims, s), (vec![5], vec![vec![1]]));
    }
}
