//! Strided copies: the one inner loop that Transpose, Slice, Expand, Tile and Pad
//! share.
//!
//! A copy is described per output dimension by its length and by how far one step
//! along it moves in the source and in the destination, in elements (0 repeats an
//! element, a negative stride walks backwards). Before copying, dimensions of length
//! 1 are dropped and neighbours that step through memory as one are merged, so the
//! innermost loop runs over the longest stretch it can. Then one of four inner
//! kernels is picked:
//! - contiguous on both sides: one `memcpy` per run;
//! - source stride 0 (broadcast): fill the run with one element;
//! - destination contiguous and some other dimension contiguous in the source (a
//!   transpose): a blocked 2-D copy, so both sides move along whole cache lines;
//! - anything else: an element loop.
//!
//! Elements move as `[u8; N]`, which has alignment 1, so one monomorphised loop
//! serves every dtype of that size whatever the buffer's alignment.

use super::dims::{self, Dims, SignedDims};
use crate::team;
use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};

/// Where element `[0, .., 0]` of a strided operand lies and how far one step along
/// each dimension moves, both in elements.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub offset: usize,
    pub strides: &'a [isize],
}

/// A copy of this many bytes or more into a contiguous destination is split
/// across threads; below it rayon's hand-off costs more than it saves.
const PARALLEL_BYTES: usize = 1 << 18;

/// The dimensions of a copy after simplification, inline up to rank 8.
type Axes = SmallVec<[Axis; 8]>;

/// One dimension of a copy after simplification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    len: usize,
    src: isize,
    dst: isize,
}

/// Whether moving this many bytes is worth splitting across threads.
pub fn worth_parallel(bytes: usize) -> bool {
    bytes >= PARALLEL_BYTES && team::threads() > 1
}

/// Row-major strides of `shape`, as the signed strides [`Strided`] takes.
pub fn row_major(shape: &[usize]) -> SignedDims {
    dims::strides_of(shape).into_iter().map(|s| s as isize).collect()
}

/// Copies the elements of `src` addressed by `src_at` over `shape` into `dst`, which
/// holds exactly `shape` in row-major order. Large copies run on several threads.
pub fn copy_to_contiguous(
    op: &'static str,
    elem_size: usize,
    shape: &[usize],
    dst: &mut [u8],
    src: &[u8],
    src_at: Strided,
) -> Result<()> {
    let count: usize = shape.iter().product();
    if dst.len() != count * elem_size {
        return Err(CpuError::invalid(
            op,
            format!("output holds {} bytes, not the {} of {shape:?} elements", dst.len(), count * elem_size),
        ));
    }
    let dst_strides = row_major(shape);
    let dst_at = Strided { offset: 0, strides: &dst_strides };
    let parallel = worth_parallel(dst.len());
    dispatch(op, elem_size, shape, dst, dst_at, src, src_at, parallel)
}

/// Copies the elements of `src` addressed by `src_at` to the elements of `dst`
/// addressed by `dst_at`, over `shape`. Runs on the calling thread.
pub fn copy(
    op: &'static str,
    elem_size: usize,
    shape: &[usize],
    dst: &mut [u8],
    dst_at: Strided,
    src: &[u8],
    src_at: Strided,
) -> Result<()> {
    dispatch(op, elem_size, shape, dst, dst_at, src, src_at, false)
}

/// Copies `src` to `dst` (same length), on several threads when large.
pub fn copy_bytes(op: &'static str, dst: &mut [u8], src: &[u8]) -> Result<()> {
    if dst.len() != src.len() {
        return Err(CpuError::invalid(op, format!("output holds {} bytes but the input {}", dst.len(), src.len())));
    }
    if worth_parallel(dst.len()) {
        let chunk = dst.len().div_ceil(team::threads() * 4);
        team::for_each_piece(dst, chunk, |i, d| d.copy_from_slice(&src[i * chunk..][..d.len()]));
    } else {
        dst.copy_from_slice(src);
    }
    Ok(())
}

/// Fills `dst` with copies of the element `value` (whose length is the element size).
pub fn fill(dst: &mut [u8], value: &[u8]) {
    fn fill_as<const N: usize>(dst: &mut [u8], value: &[u8])
    where
        [u8; N]: bytemuck::Pod,
    {
        match (bytemuck::try_cast_slice_mut::<u8, [u8; N]>(dst), <[u8; N]>::try_from(value)) {
            (Ok(dst), Ok(v)) => dst.fill(v),
            (Err(_), _) | (_, Err(_)) => dst.chunks_mut(N).for_each(|c| c.copy_from_slice(&value[..c.len()])),
        }
    }
    match value.len() {
        0 => {}
        1 => dst.fill(value[0]),
        2 => fill_as::<2>(dst, value),
        4 => fill_as::<4>(dst, value),
        8 => fill_as::<8>(dst, value),
        n => dst.chunks_mut(n).for_each(|c| c.copy_from_slice(&value[..c.len()])),
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    op: &'static str,
    elem_size: usize,
    shape: &[usize],
    dst: &mut [u8],
    dst_at: Strided,
    src: &[u8],
    src_at: Strided,
    parallel: bool,
) -> Result<()> {
    if shape.len() != dst_at.strides.len() || shape.len() != src_at.strides.len() {
        return Err(CpuError::invalid(
            op,
            format!(
                "strided copy of rank {} given {} destination and {} source strides",
                shape.len(),
                dst_at.strides.len(),
                src_at.strides.len()
            ),
        ));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    match elem_size {
        1 => run::<1>(op, shape, dst, dst_at, src, src_at, parallel),
        2 => run::<2>(op, shape, dst, dst_at, src, src_at, parallel),
        4 => run::<4>(op, shape, dst, dst_at, src, src_at, parallel),
        8 => run::<8>(op, shape, dst, dst_at, src, src_at, parallel),
        16 => run::<16>(op, shape, dst, dst_at, src, src_at, parallel),
        0 => Ok(()),
        n => {
            // An element of unusual size is a contiguous run of n bytes: one more,
            // innermost dimension.
            let scale = |s: &[isize]| s.iter().map(|&s| s * n as isize).chain([1]).collect::<SignedDims>();
            let (dst_strides, src_strides) = (scale(dst_at.strides), scale(src_at.strides));
            let shape: Dims = shape.iter().copied().chain([n]).collect();
            let dst_at = Strided { offset: dst_at.offset * n, strides: &dst_strides };
            let src_at = Strided { offset: src_at.offset * n, strides: &src_strides };
            run::<1>(op, &shape, dst, dst_at, src, src_at, parallel)
        }
    }
}

fn run<const N: usize>(
    op: &'static str,
    shape: &[usize],
    dst: &mut [u8],
    dst_at: Strided,
    src: &[u8],
    src_at: Strided,
    parallel: bool,
) -> Result<()>
where
    [u8; N]: bytemuck::Pod,
{
    let (Ok(dst), Ok(src)) =
        (bytemuck::try_cast_slice_mut::<u8, [u8; N]>(dst), bytemuck::try_cast_slice::<u8, [u8; N]>(src))
    else {
        return Err(CpuError::invalid(op, format!("buffer length is not a multiple of the element size {N}")));
    };
    check_bounds(op, "destination", shape, dst_at, dst.len())?;
    check_bounds(op, "source", shape, src_at, src.len())?;
    let axes = simplify(shape, src_at.strides, dst_at.strides);
    let (dst_off, src_off) = (dst_at.offset as isize, src_at.offset as isize);
    match axes.first() {
        // Only with a destination that is exactly `shape` in row-major order: then a
        // range of the outermost dimension is a contiguous range of `dst`.
        Some(first) if parallel && dst_off == 0 && first.dst as usize * first.len == dst.len() => {
            let rows_per_chunk = first.len.div_ceil(team::threads() * 4).max(1);
            let step = first.dst as usize;
            team::for_each_piece(dst, rows_per_chunk * step, |c, chunk| {
                let mut sub = axes.clone();
                sub[0].len = chunk.len() / step;
                let start = (c * rows_per_chunk) as isize;
                walk(&sub, chunk, 0, src, src_off + start * first.src);
            });
        }
        _ => walk(&axes, dst, dst_off, src, src_off),
    }
    Ok(())
}

/// Fails unless every element `at` addresses over `shape` lies in a buffer of `len`
/// elements, so the copy loops cannot index out of bounds.
fn check_bounds(op: &'static str, what: &str, shape: &[usize], at: Strided, len: usize) -> Result<()> {
    let (mut lo, mut hi) = (at.offset as i128, at.offset as i128);
    for (&n, &s) in shape.iter().zip(at.strides) {
        let reach = (n as i128 - 1) * s as i128;
        if reach < 0 {
            lo += reach;
        } else {
            hi += reach;
        }
    }
    if lo < 0 || hi >= len as i128 {
        return Err(CpuError::invalid(
            op,
            format!("strided {what} spans elements {lo}..={hi} of a buffer of {len} elements"),
        ));
    }
    Ok(())
}

/// Drops dimensions of length 1 and merges each dimension into its outer neighbour
/// when one step of the outer equals a full sweep of the inner on both sides.
fn simplify(shape: &[usize], src: &[isize], dst: &[isize]) -> Axes {
    let mut axes = Axes::new();
    for ((&len, &src), &dst) in shape.iter().zip(src).zip(dst) {
        if len == 1 {
            continue;
        }
        let axis = Axis { len, src, dst };
        match axes.last_mut() {
            Some(outer) if outer.src == src * len as isize && outer.dst == dst * len as isize => {
                outer.len *= len;
                outer.src = src;
                outer.dst = dst;
            }
            _ => axes.push(axis),
        }
    }
    axes
}

/// The inner loop chosen for a copy; the remaining axes are walked around it.
#[derive(Clone, Copy)]
enum Inner {
    /// Contiguous on both sides.
    Run(usize),
    /// Source stride 0, destination contiguous.
    Fill(usize),
    /// Destination contiguous along `last`, source contiguous along `tile`.
    Blocked { tile: Axis, last: Axis },
    /// Any strides.
    Strided(Axis),
}

fn walk<T: Copy>(axes: &[Axis], dst: &mut [T], dst_off: isize, src: &[T], src_off: isize) {
    let Some(&last) = axes.last() else {
        dst[dst_off as usize] = src[src_off as usize];
        return;
    };
    let rest = &axes[..axes.len() - 1];
    let tile = rest.iter().rposition(|a| a.src == 1);
    let inner = match tile {
        _ if last.src == 1 && last.dst == 1 => Inner::Run(last.len),
        _ if last.src == 0 && last.dst == 1 => Inner::Fill(last.len),
        Some(t) if last.dst == 1 => Inner::Blocked { tile: rest[t], last },
        _ => Inner::Strided(last),
    };
    let outer: Axes = match inner {
        Inner::Blocked { .. } => {
            let t = tile.expect("Blocked is only chosen with a tile axis");
            rest.iter().enumerate().filter(|&(i, _)| i != t).map(|(_, a)| *a).collect()
        }
        _ => Axes::from_slice(rest),
    };

    let mut index: Dims = smallvec![0; outer.len()];
    let (mut d, mut s) = (dst_off, src_off);
    loop {
        let (du, su) = (d as usize, s as usize);
        match inner {
            Inner::Run(n) => dst[du..du + n].copy_from_slice(&src[su..su + n]),
            Inner::Fill(n) => dst[du..du + n].fill(src[su]),
            Inner::Blocked { tile, last } => blocked(dst, d, src, s, tile, last),
            Inner::Strided(a) => strided(dst, d, src, s, a),
        }
        // Advance the odometer over the outer axes; stop when it wraps around.
        let mut k = outer.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            index[k] += 1;
            d += outer[k].dst;
            s += outer[k].src;
            if index[k] < outer[k].len {
                break;
            }
            index[k] = 0;
            d -= outer[k].dst * outer[k].len as isize;
            s -= outer[k].src * outer[k].len as isize;
        }
    }
}

fn strided<T: Copy>(dst: &mut [T], d: isize, src: &[T], s: isize, a: Axis) {
    if a.dst == 1 {
        let run = &mut dst[d as usize..d as usize + a.len];
        for (k, out) in run.iter_mut().enumerate() {
            *out = src[(s + k as isize * a.src) as usize];
        }
    } else {
        for k in 0..a.len as isize {
            dst[(d + k * a.dst) as usize] = src[(s + k * a.src) as usize];
        }
    }
}

/// A 2-D transpose in square tiles, staged through a small buffer: each tile is
/// read as contiguous source lines along `tile` and written as contiguous
/// destination lines along `last`. Reading the source across lines directly would
/// touch one cache line per element at a large stride, and strides that are
/// multiples of 4 KiB map every one of those lines to the same L1 set.
fn blocked<T: Copy>(dst: &mut [T], d: isize, src: &[T], s: isize, tile: Axis, last: Axis) {
    const B: usize = 32;
    // buf[b][a] holds source element (a, b) of the current tile.
    let mut buf = [[src[s as usize]; B]; B];
    for a0 in (0..tile.len).step_by(B) {
        let na = B.min(tile.len - a0);
        for b0 in (0..last.len).step_by(B) {
            let nb = B.min(last.len - b0);
            for (b, line) in buf[..nb].iter_mut().enumerate() {
                let from = (s + a0 as isize + (b0 + b) as isize * last.src) as usize; // tile.src == 1
                line[..na].copy_from_slice(&src[from..from + na]);
            }
            for a in 0..na {
                let row = (d + (a0 + a) as isize * tile.dst) as usize + b0;
                for (out, line) in dst[row..row + nb].iter_mut().zip(&buf[..nb]) {
                    *out = line[a];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one element at a time, by multi-index.
    fn naive(es: usize, shape: &[usize], dst: &mut [u8], dst_at: Strided, src: &[u8], src_at: Strided) {
        let count: usize = shape.iter().product();
        for flat in 0..count {
            let (mut rem, mut d, mut s) = (flat, dst_at.offset as isize, src_at.offset as isize);
            for k in (0..shape.len()).rev() {
                let i = (rem % shape[k]) as isize;
                rem /= shape[k];
                d += i * dst_at.strides[k];
                s += i * src_at.strides[k];
            }
            let (d, s) = (d as usize * es, s as usize * es);
            dst[d..d + es].copy_from_slice(&src[s..s + es]);
        }
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
    }

    fn check(es: usize, in_shape: &[usize], perm: &[usize]) {
        let src = bytes(in_shape.iter().product::<usize>() * es, 3);
        let in_strides = row_major(in_shape);
        let shape: Vec<usize> = perm.iter().map(|&p| in_shape[p]).collect();
        let src_strides: Vec<isize> = perm.iter().map(|&p| in_strides[p]).collect();
        let at = Strided { offset: 0, strides: &src_strides };
        let mut got = vec![0u8; src.len()];
        copy_to_contiguous("Test", es, &shape, &mut got, &src, at).unwrap();
        let mut want = vec![0u8; src.len()];
        let dst_strides = row_major(&shape);
        naive(es, &shape, &mut want, Strided { offset: 0, strides: &dst_strides }, &src, at);
        assert_eq!(got, want, "es {es} shape {in_shape:?} perm {perm:?}");
    }

    #[test]
    fn permutations_match_the_naive_copy() {
        for es in [1, 2, 3, 4, 8, 16] {
            check(es, &[5, 7], &[1, 0]);
            check(es, &[33, 70], &[1, 0]);
            check(es, &[2, 3, 4], &[2, 0, 1]);
            check(es, &[2, 3, 4], &[2, 1, 0]);
            check(es, &[2, 5, 3, 4], &[0, 2, 1, 3]);
            check(es, &[2, 3, 5, 4], &[0, 1, 3, 2]);
            check(es, &[1, 3, 1, 4], &[3, 2, 1, 0]);
            check(es, &[3, 0, 4], &[2, 1, 0]);
            check(es, &[], &[]);
        }
    }

    #[test]
    fn large_copies_split_across_threads_correctly() {
        check(4, &[4, 129, 12, 64], &[0, 2, 1, 3]);
        check(4, &[2, 12, 130, 64], &[0, 1, 3, 2]);
        check(1, &[700, 513], &[1, 0]);
    }

    #[test]
    fn broadcast_negative_and_strided_destinations() {
        let src = bytes(4 * 6, 9);
        // Expand [3,1] -> [2,3,4]; reversed rows; a sub-box of a larger destination.
        // (shape, source strides, source offset, destination strides, destination offset)
        type Case<'a> = (&'a [usize], &'a [isize], usize, &'a [isize], usize);
        let cases: [Case; 3] = [
            (&[2, 3, 4], &[0, 1, 0], 0, &[12, 4, 1], 0),
            (&[2, 3], &[-1, 2], 1, &[3, 1], 0),
            (&[2, 3], &[3, 1], 0, &[5, 1], 6),
        ];
        for (shape, src_strides, src_off, dst_strides, dst_off) in cases {
            let src_at = Strided { offset: src_off, strides: src_strides };
            let dst_at = Strided { offset: dst_off, strides: dst_strides };
            let mut got = vec![0u8; 4 * 24];
            let mut want = got.clone();
            copy("Test", 4, shape, &mut got, dst_at, &src, src_at).unwrap();
            naive(4, shape, &mut want, dst_at, &src, src_at);
            assert_eq!(got, want, "shape {shape:?} strides {src_strides:?}");
        }
    }

    #[test]
    fn out_of_bounds_strides_are_errors() {
        let src = [0u8; 8];
        let mut dst = [0u8; 8];
        let at = Strided { offset: 0, strides: &[2] };
        assert!(copy_to_contiguous("Test", 1, &[8], &mut dst, &src, at).is_err());
        let back = Strided { offset: 2, strides: &[-1] };
        assert!(copy_to_contiguous("Test", 1, &[8], &mut dst, &src, back).is_err());
    }

    #[test]
    fn fill_repeats_the_value() {
        let mut buf = [0u8; 12];
        fill(&mut buf, &[1, 2, 3]);
        assert_eq!(buf, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
        fill(&mut buf, &[7, 8, 9, 10]);
        assert_eq!(buf, [7, 8, 9, 10, 7, 8, 9, 10, 7, 8, 9, 10]);
    }
}
