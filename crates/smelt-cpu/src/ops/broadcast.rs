//! numpy-style broadcasting for elementwise kernels, and the work splitting they share.
//!
//! [`Broadcast`] turns "N inputs broadcast to one output shape" into a loop over
//! *segments*: stretches of consecutive output elements along which every input
//! either advances by one element or stays on one element. Adjacent dimensions that
//! broadcast the same way are merged first, so the common cases are one long segment
//! (same shapes), a segment per row (a bias along the last axis), or a segment per
//! channel plane (`[N, C, H, W]` with `[C, 1, 1]`). Kernels write one tight loop per
//! segment kind and leave the index arithmetic here.

use super::dims::Dims;
use crate::team;
use smallvec::{smallvec, SmallVec};
use std::ops::Range;

/// One entry per input, on the stack up to 4 inputs.
type PerInput<T> = SmallVec<[T; 4]>;

/// Output elements above which kernels split their work across the rayon pool.
pub const PARALLEL_MIN_ELEMENTS: usize = 32 * 1024;

/// The shape all of `shapes` broadcast to, or `None` when two dims disagree and
/// neither is 1.
pub fn broadcast_shape(shapes: &[&[usize]]) -> Option<Dims> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out: Dims = smallvec![1; rank];
    for shape in shapes {
        let pad = rank - shape.len();
        for (o, &d) in out[pad..].iter_mut().zip(shape.iter()) {
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// How each input of an elementwise op maps onto the output, with dims collapsed.
#[derive(Clone, Debug)]
pub struct Broadcast {
    /// Collapsed output dims, outermost first; never empty. The last one is the
    /// segment length.
    dims: Dims,
    /// `strides[k][d]`: elements input k moves per step of collapsed dim d (0 on
    /// dims it is broadcast along).
    strides: PerInput<Dims>,
    /// Stride of each input along the innermost dim: 0 (repeat one element) or 1.
    inner_strides: PerInput<usize>,
    len: usize,
}

impl Broadcast {
    /// Plans the iteration of `inputs` broadcast to `out_shape`. Fails when an input
    /// has more dims than the output or a dim that is neither 1 nor the output's.
    pub fn new(out_shape: &[usize], inputs: &[&[usize]]) -> Result<Broadcast, String> {
        let rank = out_shape.len();
        // Per input, its stride along each output dim (0 when broadcast).
        let mut full: PerInput<Dims> = SmallVec::with_capacity(inputs.len());
        for (k, shape) in inputs.iter().enumerate() {
            if shape.len() > rank {
                return Err(format!("input {k} of shape {shape:?} has more dims than the output {out_shape:?}"));
            }
            let pad = rank - shape.len();
            let mut strides: Dims = smallvec![0; rank];
            let mut step = 1;
            for d in (0..shape.len()).rev() {
                let (n, o) = (shape[d], out_shape[pad + d]);
                if n == o {
                    strides[pad + d] = if n == 1 { 0 } else { step };
                } else if n != 1 {
                    return Err(format!("input {k} of shape {shape:?} does not broadcast to the output {out_shape:?}"));
                }
                step *= n;
            }
            full.push(strides);
        }
        let len: usize = out_shape.iter().product();

        // Drop size-1 dims, then merge each dim into the next-outer one when every
        // input steps through both as one contiguous (or one repeated) range.
        let mut dims = Dims::new();
        let mut strides: PerInput<Dims> = smallvec![Dims::new(); inputs.len()];
        for d in 0..rank {
            if out_shape[d] == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && full.iter().zip(&strides).all(|(f, s)| *s.last().unwrap_or(&0) == f[d] * out_shape[d]);
            if let (true, Some(last)) = (mergeable, dims.last_mut()) {
                *last *= out_shape[d];
                for (f, s) in full.iter().zip(strides.iter_mut()) {
                    if let Some(last) = s.last_mut() {
                        *last = f[d];
                    }
                }
            } else {
                dims.push(out_shape[d]);
                for (f, s) in full.iter().zip(strides.iter_mut()) {
                    s.push(f[d]);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            for s in strides.iter_mut() {
                s.push(0);
            }
        }
        let inner_strides = strides.iter().map(|s| *s.last().unwrap_or(&0)).collect();
        Ok(Broadcast { dims, strides, inner_strides, len })
    }

    /// Output elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of a full segment (the innermost collapsed dim).
    pub fn inner(&self) -> usize {
        *self.dims.last().unwrap_or(&1)
    }

    /// Per input, its step along a segment: 1 (contiguous) or 0 (one repeated element).
    pub fn inner_strides(&self) -> &[usize] {
        &self.inner_strides
    }

    /// Whether input `k` is laid out exactly like the output (no broadcasting at all).
    pub fn is_identity(&self, k: usize) -> bool {
        self.dims.len() == 1 && self.inner_strides[k] == 1
    }

    /// Calls `f(out_start, offsets, len)` for each segment of the output elements in
    /// `range`, in order: output elements `out_start..out_start + len` read input k
    /// from `offsets[k]`, advancing by `inner_strides()[k]`.
    /// Segments are whole rows of the innermost dim except where `range` cuts one.
    pub fn for_each_segment(&self, range: Range<usize>, mut f: impl FnMut(usize, &[usize], usize)) {
        let end = range.end.min(self.len);
        let mut pos = range.start;
        if pos >= end {
            return;
        }
        let inner = self.inner();
        let outer = &self.dims[..self.dims.len() - 1];
        // Odometer over the outer dims, started at the row holding `pos`.
        let mut idx: Dims = smallvec![0; outer.len()];
        let mut row = pos / inner;
        for d in (0..outer.len()).rev() {
            idx[d] = row % outer[d];
            row /= outer[d];
        }
        let mut base: PerInput<usize> =
            self.strides.iter().map(|s| idx.iter().zip(s).map(|(i, st)| i * st).sum()).collect();
        let mut offsets: PerInput<usize> = smallvec![0; self.strides.len()];
        while pos < end {
            let col = pos % inner;
            let n = (inner - col).min(end - pos);
            for ((o, b), s) in offsets.iter_mut().zip(&base).zip(&self.inner_strides) {
                *o = b + col * s;
            }
            f(pos, &offsets, n);
            pos += n;
            if pos >= end {
                break;
            }
            // Next row: advance the odometer, updating each input's base offset.
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                for (b, s) in base.iter_mut().zip(&self.strides) {
                    *b += s[d];
                }
                if idx[d] < outer[d] {
                    break;
                }
                for (b, s) in base.iter_mut().zip(&self.strides) {
                    *b -= s[d] * outer[d];
                }
                idx[d] = 0;
            }
        }
    }
}

/// Calls `f(start, chunk)` over `out` cut into consecutive chunks, `chunk` being
/// `out[start..start + chunk.len()]`: one chunk when `out` is small, else several run
/// on the rayon pool.
pub fn for_each_chunk<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    chunks_dyn(out, &f)
}

/// The body of [`for_each_chunk`], behind `dyn` so rayon's machinery is instantiated
/// once per element type rather than once per kernel.
fn chunks_dyn<T: Send>(out: &mut [T], f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    let n = out.len();
    if n < PARALLEL_MIN_ELEMENTS || team::threads() <= 1 {
        f(0, out);
        return;
    }
    // A few chunks per thread for balance; multiples of 64 keep chunks cache-line aligned.
    let pieces = team::threads() * 4;
    let chunk = n.div_ceil(pieces).max(PARALLEL_MIN_ELEMENTS / 4).next_multiple_of(64);
    team::for_each_piece(out, chunk, |i, c| f(i * chunk, c));
}

/// Calls `f(rows, chunk)` over `out` cut into blocks of whole rows of `row_len`
/// elements, `chunk` holding the output of `rows`; parallel when the total `work`
/// (roughly, elements touched) is large. A zero `row_len` yields nothing.
pub fn for_each_row_block<T: Send>(
    out: &mut [T],
    row_len: usize,
    work: usize,
    f: impl Fn(Range<usize>, &mut [T]) + Sync,
) {
    row_blocks_dyn(out, row_len, work, &f)
}

/// The body of [`for_each_row_block`], behind `dyn` like [`chunks_dyn`].
fn row_blocks_dyn<T: Send>(out: &mut [T], row_len: usize, work: usize, f: &(dyn Fn(Range<usize>, &mut [T]) + Sync)) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    if work < PARALLEL_MIN_ELEMENTS || rows < 2 || team::threads() <= 1 {
        f(0..rows, out);
        return;
    }
    let pieces = team::threads() * 4;
    let min_rows = (PARALLEL_MIN_ELEMENTS / 4 * rows).div_ceil(work.max(1)).max(1);
    let block = rows.div_ceil(pieces).max(min_rows);
    team::for_each_piece(out, block * row_len, |i, c| {
        let first = i * block;
        f(first..first + c.len() / row_len, c)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (output index, input offsets) pair the plan produces, element by element.
    fn expand(b: &Broadcast, range: Range<usize>) -> Vec<(usize, Vec<usize>)> {
        let mut out = Vec::new();
        b.for_each_segment(range, |start, offs, n| {
            for i in 0..n {
                out.push((start + i, offs.iter().zip(b.inner_strides()).map(|(o, s)| o + i * s).collect()));
            }
        });
        out
    }

    /// The same pairs computed the obvious way.
    fn naive(out_shape: &[usize], inputs: &[&[usize]]) -> Vec<(usize, Vec<usize>)> {
        let len: usize = out_shape.iter().product();
        (0..len)
            .map(|flat| {
                let mut idx = vec![0; out_shape.len()];
                let mut r = flat;
                for d in (0..out_shape.len()).rev() {
                    idx[d] = r % out_shape[d];
                    r /= out_shape[d];
                }
                let offs = inputs
                    .iter()
                    .map(|s| {
                        let pad = out_shape.len() - s.len();
                        let mut off = 0;
                        for d in 0..s.len() {
                            let i = if s[d] == 1 { 0 } else { idx[pad + d] };
                            off = off * s[d] + i;
                        }
                        off
                    })
                    .collect();
                (flat, offs)
            })
            .collect()
    }

    #[test]
    fn shapes_broadcast_like_numpy() {
        let shape = |shapes: &[&[usize]]| broadcast_shape(shapes).map(|s| s.to_vec());
        assert_eq!(shape(&[&[2, 1, 4], &[3, 1]]), Some(vec![2, 3, 4]));
        assert_eq!(shape(&[&[], &[5]]), Some(vec![5]));
        assert_eq!(shape(&[&[0, 3], &[1, 3]]), Some(vec![0, 3]));
        assert_eq!(shape(&[&[2], &[3]]), None);
        assert_eq!(shape(&[]), Some(vec![]));
    }

    #[test]
    fn segments_match_naive_indexing() {
        let cases: Vec<(Vec<usize>, Vec<Vec<usize>>)> = vec![
            (vec![2, 3, 4], vec![vec![2, 1, 4], vec![3, 1]]),
            (vec![2, 3, 4], vec![vec![2, 3, 4], vec![2, 3, 4]]),
            (vec![2, 3, 4], vec![vec![], vec![4]]),
            (vec![2, 3, 4, 5], vec![vec![3, 1, 1], vec![2, 3, 4, 5], vec![1, 1, 4, 1]]),
            (vec![4, 1, 3], vec![vec![4, 1, 1], vec![1, 1, 3]]),
            (vec![1], vec![vec![], vec![1]]),
            (vec![], vec![vec![], vec![]]),
            (vec![5, 2], vec![vec![5, 1], vec![1, 2]]),
        ];
        for (out, ins) in cases {
            let refs: Vec<&[usize]> = ins.iter().map(|s| s.as_slice()).collect();
            let b = Broadcast::new(&out, &refs).unwrap();
            let len = b.len();
            assert_eq!(expand(&b, 0..len), naive(&out, &refs), "{out:?} {ins:?}");
            // Ranges that cut rows.
            for start in 0..len {
                for end in start..=len {
                    assert_eq!(expand(&b, start..end), naive(&out, &refs)[start..end].to_vec());
                }
            }
        }
    }

    #[test]
    fn common_patterns_collapse() {
        let same = Broadcast::new(&[8, 16, 32], &[&[8, 16, 32], &[8, 16, 32]]).unwrap();
        assert_eq!(same.inner(), 8 * 16 * 32);
        assert!(same.is_identity(0) && same.is_identity(1));
        let bias = Broadcast::new(&[8, 16, 32], &[&[8, 16, 32], &[32]]).unwrap();
        assert_eq!((bias.inner(), bias.inner_strides()), (32, &[1usize, 1][..]));
        let chan = Broadcast::new(&[2, 3, 4, 5], &[&[2, 3, 4, 5], &[3, 1, 1]]).unwrap();
        assert_eq!((chan.inner(), chan.inner_strides()), (20, &[1usize, 0][..]));
    }

    #[test]
    fn zero_size_and_bad_shapes() {
        let b = Broadcast::new(&[2, 0, 3], &[&[2, 1, 3], &[0, 1]]).unwrap();
        assert!(b.is_empty());
        assert!(expand(&b, 0..10).is_empty());
        assert!(Broadcast::new(&[2, 3], &[&[3, 3]]).is_err());
        assert!(Broadcast::new(&[3], &[&[2, 3]]).is_err());
    }

    #[test]
    fn chunks_cover_the_output_once() {
        let mut v = vec![0u32; 100_003];
        for_each_chunk(&mut v, |start, c| {
            for (i, x) in c.iter_mut().enumerate() {
                *x += (start + i) as u32;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
        let mut rows = vec![0u32; 7 * 10_000];
        let work = rows.len();
        for_each_row_block(&mut rows, 7, work, |r, c| {
            assert_eq!(c.len(), r.len() * 7);
            for (i, x) in c.iter_mut().enumerate() {
                *x += (r.start * 7 + i) as u32;
            }
        });
        assert!(rows.iter().enumerate().all(|(i, &x)| x == i as u32));
    }
}
