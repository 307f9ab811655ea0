//! Fused scaled dot-product attention, `softmax(scale · q·kᵀ ⊕ mask) · v`.
//!
//! The work is cut into tasks of one batch entry (one head) and a block of query
//! rows. A task computes its block's scores `[rows, L]` into a tile of its
//! worker's scratch, masks them and takes the softmax in place, then multiplies
//! the tile by `v` straight into its output rows. Only a tile of scores exists at
//! a time (at most [`TILE_ELEMENTS`] per worker, so it stays in L2), instead of
//! the `[.., S, L]` score tensor written and read by four separate nodes.
//!
//! Rounding matches the unfused chain to within the scale's: `q·kᵀ` is the same
//! GEMM, the scale is applied as GEMM's alpha (a multiply where the chain may
//! divide), the mask and the softmax are the same arithmetic as `Add`/`Where` and
//! `Softmax`.

use crate::ops::gemm::{gemm_raw, sgemm, Layout, Parallelism};
use crate::ops::layout;
use crate::ops::reduce::softmax::{row_max, row_sum, SoftFloat, EXP_FLUSH_BELOW};
use crate::team;
use crate::{CpuError, Result, Scratch};
use smallvec::SmallVec;
use smelt_ir::{AttentionAttrs, AttentionLayout, AttentionMask, DType, TensorView, TensorViewMut};
use std::sync::atomic::{AtomicUsize, Ordering};

const OP: &str = "Attention";

/// Scores per worker tile: 16 Ki floats (64 KiB) stays in L2 beside the keys and
/// values the task reads.
const TILE_ELEMENTS: usize = 16 * 1024;

/// Below this many multiply-adds in all, one thread does everything: handing
/// tasks to other threads costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 18;

type Strides = SmallVec<[usize; 6]>;

/// Where each batch entry's matrices start in every operand.
struct Batches {
    /// Output batch dims (the broadcast of q's, k's and v's; `[B, H]` token-major).
    dims: Strides,
    /// Per operand (q, k, v, mask, output), the element stride of each output
    /// batch dim (0 where the operand broadcasts).
    strides: [Strides; 5],
}

impl Batches {
    /// Element offsets of batch entry `b` in q, k, v, the mask and the output.
    fn offsets(&self, mut b: usize) -> [usize; 5] {
        let mut offsets = [0; 5];
        for (axis, &dim) in self.dims.iter().enumerate().rev() {
            let i = b % dim;
            b /= dim;
            for (offset, strides) in offsets.iter_mut().zip(&self.strides) {
                *offset += i * strides[axis];
            }
        }
        offsets
    }
}

/// The problem's sizes, checked against every operand's shape.
struct Geometry {
    batches: Batches,
    /// Query rows, keys, the q/k depth and v's width.
    s: usize,
    l: usize,
    d: usize,
    dv: usize,
    /// Elements from one row of a head's q, v and output to the next: `D`, `Dv`
    /// and `Dv` head-major, `H` times that token-major.
    q_row: usize,
    v_row: usize,
    out_row: usize,
    /// kᵀ (`D`×`L`) as laid out in k's buffer.
    keys: Layout,
    /// Mask element (i, j) of a batch entry is at `i·row + j·col` past its offset.
    mask: Layout,
}

pub fn eval(
    attrs: &AttentionAttrs,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    scratch: &mut Scratch,
) -> Result<()> {
    let input = |i: usize, name: &str| {
        inputs.get(i).copied().flatten().ok_or_else(|| CpuError::invalid(OP, format!("input {name} is missing")))
    };
    let (q, k, v) = (input(0, "Q")?, input(1, "K")?, input(2, "V")?);
    let mask = match attrs.mask {
        AttentionMask::None => None,
        _ => Some(input(3, "mask")?),
    };
    let [out] = outputs else { return Err(CpuError::invalid(OP, "expects one output")) };
    if let Some(other) = [&q, &k, &v].into_iter().find(|t| t.dtype != DType::F32) {
        return Err(CpuError::UnsupportedDType { op: OP, dtype: other.dtype });
    }
    let geometry = geometry(attrs, &q, &k, &v, mask.as_ref(), out.shape)?;
    let mask = match (attrs.mask, mask) {
        (AttentionMask::Add, Some(m)) if m.dtype == DType::F32 => Mask::Add(m.as_slice::<f32>()?),
        (AttentionMask::Select { fill }, Some(m)) if m.dtype == DType::Bool => Mask::Select(m.data, fill),
        (AttentionMask::None, _) => Mask::None,
        (_, m) => {
            let dtype = m.map_or(DType::F32, |m| m.dtype);
            return Err(CpuError::invalid(OP, format!("the mask's dtype {dtype} does not fit its kind")));
        }
    };
    let operands = Operands { q: q.as_slice()?, k: k.as_slice()?, v: v.as_slice()?, mask, scale: attrs.scale };
    run(&geometry, &operands, out.as_mut_slice()?, scratch);
    Ok(())
}

/// Sizes and strides from the shapes, with an error naming the operand that does
/// not fit (shape inference has checked them; this keeps the kernel safe alone).
fn geometry(
    attrs: &AttentionAttrs,
    q: &TensorView,
    k: &TensorView,
    v: &TensorView,
    mask: Option<&TensorView>,
    out: &[usize],
) -> Result<Geometry> {
    let mut g = match attrs.layout {
        AttentionLayout::HeadMajor => head_major(attrs, q.shape, k.shape, v.shape, out)?,
        AttentionLayout::TokenMajor => token_major(attrs, q.shape, k.shape, v.shape, out)?,
    };
    if let Some(m) = mask {
        // The mask broadcasts to the scores [.., S, L]: strides over all of them.
        let batch = g.batches.dims.len();
        let mut scores: Strides = g.batches.dims.clone();
        scores.extend([g.s, g.l]);
        let strides = broadcast_strides(m.shape, &scores, 1).ok_or_else(|| {
            CpuError::invalid(OP, format!("mask {:?} does not broadcast to the scores {scores:?}", m.shape))
        })?;
        g.mask = Layout { row: strides[batch], col: strides[batch + 1] };
        g.batches.strides[3] = strides[..batch].iter().copied().collect();
    }
    Ok(g)
}

fn shapes_do_not_fit(q: &[usize], k: &[usize], v: &[usize], out: &[usize]) -> CpuError {
    CpuError::invalid(OP, format!("shapes do not fit: Q {q:?}, K {k:?}, V {v:?}, output {out:?}"))
}

/// Each head's matrices contiguous, batch dims leading and broadcasting.
fn head_major(attrs: &AttentionAttrs, q: &[usize], k: &[usize], v: &[usize], out: &[usize]) -> Result<Geometry> {
    let matrix = |shape: &[usize], name: &str| match shape {
        [batch @ .., rows, cols] => Ok((batch.len(), *rows, *cols)),
        _ => Err(CpuError::invalid(OP, format!("{name} must have rank 2 or more, got {shape:?}"))),
    };
    let (_, s, d) = matrix(q, "Q")?;
    let (_, k_rows, k_cols) = matrix(k, "K")?;
    let (kd, l) = if attrs.keys_transposed { (k_rows, k_cols) } else { (k_cols, k_rows) };
    let (_, vl, dv) = matrix(v, "V")?;
    let (out_batch, out_s, out_dv) = matrix(out, "the output")?;
    if kd != d || vl != l || out_s != s || out_dv != dv {
        return Err(shapes_do_not_fit(q, k, v, out));
    }
    let dims: Strides = out[..out_batch].iter().copied().collect();
    let operand = |shape: &[usize], name: &str| -> Result<Strides> {
        let batch = &shape[..shape.len() - 2];
        broadcast_strides(batch, &dims, shape[shape.len() - 2] * shape[shape.len() - 1])
            .ok_or_else(|| CpuError::invalid(OP, format!("{name} {shape:?} does not broadcast to output {out:?}")))
    };
    let strides = [operand(q, "Q")?, operand(k, "K")?, operand(v, "V")?, no_mask(&dims), operand(out, "the output")?];
    let keys = if attrs.keys_transposed { Layout::row_major(l) } else { Layout::row_major(d).transposed() };
    let batches = Batches { dims, strides };
    Ok(Geometry { batches, s, l, d, dv, q_row: d, v_row: dv, out_row: dv, keys, mask: Layout { row: 0, col: 0 } })
}

/// q `[B, S, H, D]`, k `[B, L, H, D]`, v `[B, L, H, Dv]`, output `[B, S, H, Dv]`:
/// the batch entries are `[B, H]`, and a head's rows are `H` vectors apart.
fn token_major(attrs: &AttentionAttrs, q: &[usize], k: &[usize], v: &[usize], out: &[usize]) -> Result<Geometry> {
    let (&[b, s, h, d], &[kb, l, kh, kd], &[vb, vl, vh, dv], &[ob, os, oh, odv]) = (q, k, v, out) else {
        return Err(CpuError::invalid(
            OP,
            format!("token-major Q, K, V and output must have rank 4, got {q:?}, {k:?}, {v:?}, {out:?}"),
        ));
    };
    if attrs.keys_transposed
        || [kb, vb, ob] != [b; 3]
        || [kh, vh, oh] != [h; 3]
        || kd != d
        || vl != l
        || os != s
        || odv != dv
    {
        return Err(shapes_do_not_fit(q, k, v, out));
    }
    let dims: Strides = SmallVec::from_slice(&[b, h]);
    let per = |rows: usize, width: usize| -> Strides { SmallVec::from_slice(&[rows * h * width, width]) };
    let strides = [per(s, d), per(l, d), per(l, dv), no_mask(&dims), per(s, dv)];
    let keys = Layout { row: 1, col: h * d };
    let batches = Batches { dims, strides };
    let (q_row, v_row, out_row) = (h * d, h * dv, h * dv);
    Ok(Geometry { batches, s, l, d, dv, q_row, v_row, out_row, keys, mask: Layout { row: 0, col: 0 } })
}

/// Batch strides of an absent mask.
fn no_mask(dims: &Strides) -> Strides {
    SmallVec::from_elem(0, dims.len())
}

/// Per dim of `target`, the element stride of `shape` (aligned to its end, each
/// element `inner` elements long) or 0 where `shape` broadcasts; `None` when it
/// does not broadcast to `target`.
fn broadcast_strides(shape: &[usize], target: &[usize], inner: usize) -> Option<Strides> {
    let extra = shape.len().saturating_sub(target.len());
    if shape[..extra].iter().any(|&d| d != 1) {
        return None;
    }
    let shape = &shape[extra..];
    let pad = target.len() - shape.len();
    let mut strides: Strides = SmallVec::from_elem(0, target.len());
    let mut step = inner;
    for (i, &d) in shape.iter().enumerate().rev() {
        match (d, target[pad + i]) {
            (1, _) => {}
            (d, t) if d == t => strides[pad + i] = step,
            _ => return None,
        }
        step *= d;
    }
    Some(strides)
}

/// The mask's values.
#[derive(Clone, Copy)]
enum Mask<'a> {
    None,
    Add(&'a [f32]),
    /// Bools (one byte each) and the fill where they are false.
    Select(&'a [u8], f32),
}

struct Operands<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: Mask<'a>,
    scale: f32,
}

/// Query rows per task: as many as fit a tile (at most [`MAX_BLOCK_ROWS`] where a
/// selecting mask may hide keys from whole blocks), and fewer when that leaves
/// too few tasks to share between the threads. Every block packs the keys and
/// values it reads again, so without a selecting mask blocks are as tall as a
/// tile allows.
fn block_rows(g: &Geometry, batch_count: usize, threads: usize, selecting: bool) -> usize {
    let cap = if selecting { MAX_BLOCK_ROWS } else { usize::MAX };
    let fit = (TILE_ELEMENTS / g.l.max(1)).clamp(1, cap);
    let wanted_tasks = threads * 4;
    let per_batch = wanted_tasks.div_ceil(batch_count.max(1));
    fit.min(g.s.div_ceil(per_batch).max(1))
}

/// A multiple of the GEMM's 12-row tile, small enough that a causal mask hides
/// keys from most blocks (at 128 queries: blocks of 48, 48 and 32 rows see 48,
/// 96 and 128 keys, two thirds of the work) with no more row tiles than one
/// block of 128 has.
const MAX_BLOCK_ROWS: usize = 48;

fn run(g: &Geometry, ops: &Operands, out: &mut [f32], scratch: &mut Scratch) {
    let batch_count: usize = g.batches.dims.iter().product();
    if batch_count == 0 || g.s == 0 || g.dv == 0 {
        return;
    }
    if g.l == 0 {
        // No keys: the product with an empty probability row is zero, as the
        // unfused `[S, 0] · [0, Dv]` MatMul gives.
        out.fill(0.0);
        return;
    }
    let work = batch_count * g.s * g.l * (g.d + g.dv);
    let threads = if work < PARALLEL_MIN_WORK { 1 } else { team::threads().max(1) };
    let rows = block_rows(g, batch_count, threads, matches!(ops.mask, Mask::Select(..)));
    let blocks = g.s.div_ceil(rows);
    let tasks = batch_count * blocks;
    let workers = threads.min(tasks);
    let tile = rows * g.l;
    // Keys whose kᵀ rows are not contiguous (token-major k) are copied out per
    // block beside the tile: the product would otherwise gather them one by one.
    let key_copy = if g.keys.col == 1 { 0 } else { g.d * g.l };
    let piece = tile + key_copy;
    let tiles = scratch.f32s(piece * workers);

    let out = SendPtr(out.as_mut_ptr());
    let run_task = |t: usize, piece: &mut [f32]| {
        let (tile, key_copy) = piece.split_at_mut(tile);
        let (b, start) = (t / blocks, (t % blocks) * rows);
        // SAFETY: `out` holds the output the geometry was checked against, and
        // task t alone writes rows [start, start + n) of batch entry b's matrix:
        // distinct (entry, row) pairs are distinct elements in either layout.
        unsafe { attend_block(g, ops, b, start, rows.min(g.s - start), (tile, key_copy), out) }
    };
    if workers <= 1 {
        (0..tasks).for_each(|t| run_task(t, tiles));
        return;
    }
    // Each worker owns a tile and takes the next task as it comes free.
    let next = AtomicUsize::new(0);
    team::for_each_piece(tiles, piece, |_, tile| loop {
        let t = next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        run_task(t, tile);
    });
}

/// The output, which tasks write disjoint rows of.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each task writes only its own rows (see `run`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows `start .. start + n` of batch entry `b`: scores into `tile`, mask and
/// softmax in place, then `tile · v` into those rows of the output.
///
/// Keys that a selecting mask hides from every row of the block past some point
/// (a causal mask hides all keys after the block's last row) are skipped: only
/// the first `keys` columns are computed. That is exact when each row's largest
/// score exceeds the fill by [`VANISHING_BELOW_MAX`], below which the softmax's
/// exponential is exactly zero, so the skipped columns would add exactly zero;
/// a block where some row falls short is computed in full.
///
/// # Safety
/// `out` must be the whole output `g` describes, and no other thread may touch
/// these rows of it during the call.
unsafe fn attend_block(
    g: &Geometry,
    ops: &Operands,
    b: usize,
    start: usize,
    n: usize,
    (tile, key_copy): (&mut [f32], &mut [f32]),
    out: SendPtr,
) {
    let [q_at, k_at, v_at, mask_at, out_at] = g.batches.offsets(b);
    let mask_rows = mask_at + start * g.mask.row;
    let q_rows = q_at + start * g.q_row;
    let mut keys = match ops.mask {
        Mask::Select(keep, _) => (0..n).map(|i| kept_prefix(keep, mask_rows + i * g.mask.row, g.mask.col, g.l)).max(),
        _ => None,
    }
    .unwrap_or(g.l);
    let rows = Rows { q_at: q_rows, k_at, mask_at: mask_rows, n };
    if keys < g.l && !masked_scores(g, ops, &rows, keys, tile, key_copy) {
        keys = g.l;
    }
    if keys == g.l {
        masked_scores(g, ops, &rows, keys, tile, key_copy);
    }
    let scores = &mut tile[..n * keys];
    crate::ops::wide::run(|| scores.chunks_exact_mut(keys).for_each(softmax_in_place));
    let v = &ops.v[v_at..];
    let (p, v_layout, out_layout) =
        (Layout::row_major(keys), Layout { row: g.v_row, col: 1 }, Layout { row: g.out_row, col: 1 });
    assert!(v_layout.span(keys, g.dv) <= v.len(), "Attention: V overruns its buffer");
    let out = out.get().add(out_at + start * g.out_row);
    gemm_raw(n, g.dv, keys, scores.as_ptr(), p, v.as_ptr(), v_layout, out, out_layout, 1.0, 0.0, Parallelism::None);
}

/// Columns up to and including the last key that `keep` (a mask row starting at
/// `at`, `col` apart) keeps: the keys the row can see.
fn kept_prefix(keep: &[u8], at: usize, col: usize, keys: usize) -> usize {
    (0..keys).rev().find(|&j| keep[at + j * col] != 0).map_or(0, |j| j + 1)
}

/// A block of query rows: where its first row starts in q and in the mask, where
/// its head's keys start, and how many rows it has.
struct Rows {
    q_at: usize,
    k_at: usize,
    mask_at: usize,
    n: usize,
}

/// The scaled and masked scores of a block's query rows against the first `keys`
/// keys, into `tile` as `n` rows of `keys`. With fewer than all keys, returns
/// whether every row's maximum is more than [`VANISHING_BELOW_MAX`] above the
/// selecting mask's fill (the skipped columns then vanish from the softmax).
/// `key_copy` (empty where kᵀ's rows are contiguous) receives kᵀ first.
fn masked_scores(
    g: &Geometry,
    ops: &Operands,
    rows: &Rows,
    keys: usize,
    tile: &mut [f32],
    key_copy: &mut [f32],
) -> bool {
    let Rows { q_at, k_at, mask_at: mask_rows, n } = *rows;
    let scores = &mut tile[..n * keys];
    if keys == 0 {
        // Every row of the block hides every key: each row's softmax is then
        // over the fill alone, which only the full computation gives.
        return false;
    }
    let (k, k_layout) = if key_copy.is_empty() {
        (&ops.k[k_at..], g.keys)
    } else {
        let kt = &mut key_copy[..g.d * keys];
        copy_keys(g, ops.k, k_at, keys, kt);
        (&*kt, Layout::row_major(keys))
    };
    let (q, q_layout, s_layout) = (&ops.q[q_at..], Layout { row: g.q_row, col: 1 }, Layout::row_major(keys));
    sgemm(n, keys, g.d, q, q_layout, k, k_layout, scores, s_layout, ops.scale, 0.0, Parallelism::None);
    let partial = keys < g.l;
    crate::ops::wide::run(|| {
        let mut exact = true;
        for (i, row) in scores.chunks_exact_mut(keys).enumerate() {
            let at = mask_rows + i * g.mask.row;
            match ops.mask {
                Mask::None => {}
                Mask::Add(m) if g.mask.col == 1 => row.iter_mut().zip(&m[at..at + keys]).for_each(|(x, m)| *x += m),
                Mask::Add(m) => row.iter_mut().enumerate().for_each(|(j, x)| *x += m[at + j * g.mask.col]),
                Mask::Select(keep, fill) => {
                    row.iter_mut()
                        .enumerate()
                        .filter(|(j, _)| keep[at + j * g.mask.col] == 0)
                        .for_each(|(_, x)| *x = fill);
                    // Not `>=`: a NaN maximum must take the full path too.
                    exact &= !partial || fill < row_max(row) - VANISHING_BELOW_MAX;
                }
            }
        }
        exact
    })
}

/// kᵀ's first `keys` columns (`D`×`keys`, row-major) out of k's buffer, laid out
/// as `g.keys` says, by the blocked 2-D copy Transpose uses.
fn copy_keys(g: &Geometry, k: &[f32], k_at: usize, keys: usize, out: &mut [f32]) {
    let src_strides = [g.keys.row as isize, g.keys.col as isize];
    let dst_strides = [keys as isize, 1];
    let src = layout::Strided { offset: k_at, strides: &src_strides };
    let dst = layout::Strided { offset: 0, strides: &dst_strides };
    let copied = layout::copy(OP, 4, &[g.d, keys], bytemuck::cast_slice_mut(out), dst, bytemuck::cast_slice(k), src);
    debug_assert!(copied.is_ok(), "kᵀ copy of rank 2 with rank-2 strides");
}

/// Scores this far below their row's maximum get exactly zero from the softmax:
/// its exponential flushes below e^-87 ([`EXP_FLUSH_BELOW`]), and one more
/// keeps rounding in `score - max` from crossing that line.
const VANISHING_BELOW_MAX: f32 = -EXP_FLUSH_BELOW + 1.0;

/// The softmax of a row, written over it (as `Softmax` computes it).
#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    let m = row_max(row);
    for x in row.iter_mut() {
        *x = (*x - m).exp_fast();
    }
    let inv = 1.0 / row_sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests;
