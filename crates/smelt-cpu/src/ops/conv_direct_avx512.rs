//! Direct f32 convolution for 2-D layers with a horizontal stride of 1 or 2, on
//! x86-64 CPUs with AVX-512F.
//!
//! im2col + GEMM is a poor fit for strided layers: the column matrix is a
//! gather at stride 2 (no contiguous vector loads), 2.25 times the input for a
//! 3×3 window, written and read back for every tile. Nor does the GEMM suit
//! pointwise layers on small maps: their 49 or 196 positions fill its 32-wide
//! panels badly. This kernel reads the input where it lies instead, with the
//! roles of the GEMM's operands swapped:
//!
//! - the accumulators are a tile of up to [`MAX_TILE`] output positions of one
//!   output row by 32 output channels (two 16-lane vectors per position);
//! - each step of the reduction (input channel, kernel row, kernel column) loads
//!   one row of the packed weights (32 output channels) and broadcasts each
//!   position's input element straight from the input: position `i` of the tile
//!   reads stride·`i` elements after position 0 for every step, so its address
//!   is a constant offset from one pointer per step, taken from a table.
//!
//! A pointwise layer (1×1, stride 1, no padding) is one row of all its
//! positions, so its tiles run on across the map's rows.
//!
//! Zero padding is materialised once per call (the input copied into a padded
//! buffer) so the kernel needs no bounds: that costs one pass over the input,
//! against im2col's 2.25.
//!
//! The tile is stored transposed into the NCHW output: the bias and a Relu or
//! Clip are applied in registers, the residual (if any) as the tile is written.

#![cfg(target_arch = "x86_64")]

use super::conv::SharedMut;
use std::arch::x86_64::*;

/// Output channels per weight panel and per tile: two 16-lane vectors.
const PANEL: usize = 32;
/// Most output positions per tile: 14 × 2 accumulators leave registers for the
/// two weight vectors (broadcasts are memory operands of the FMAs).
const MAX_TILE: usize = 14;
/// Tasks per thread, taken as threads come free.
const TASKS_PER_THREAD: usize = 4;
/// Bytes of packed weights a task cycles through for each output row: half of
/// a core's L2.
const GROUP_WEIGHTS: usize = 512 * 1024;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    super::sgemm_avx512::available()
}

/// Constant weights `[out_channels][depth]` (ONNX's `[M, C, kh, kw]`, depth
/// `C·kh·kw`) packed in panels of 32 output channels: panel `p` holds, for each
/// step of depth, the 32 weights of its channels (zero past the last channel).
#[derive(Debug)]
pub struct DirectWeights {
    data: Vec<f32>,
    out_channels: usize,
    depth: usize,
}

impl DirectWeights {
    /// `None` on CPUs without AVX-512F or when `w` is shorter than the matrix.
    pub fn new(w: &[f32], out_channels: usize, depth: usize) -> Option<DirectWeights> {
        if !available() || w.len() < out_channels * depth {
            return None;
        }
        let mut data = vec![0f32; out_channels.next_multiple_of(PANEL) * depth];
        for (p, panel) in data.chunks_exact_mut(PANEL * depth.max(1)).enumerate() {
            for j in 0..PANEL.min(out_channels.saturating_sub(p * PANEL)) {
                let row = &w[(p * PANEL + j) * depth..][..depth];
                for (q, &v) in row.iter().enumerate() {
                    panel[q * PANEL + j] = v;
                }
            }
        }
        Some(DirectWeights { data, out_channels, depth })
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * PANEL * self.depth..][..PANEL * self.depth]
    }
}

/// One call's shapes: NCHW input and output, one group, dilation 1, and a
/// horizontal stride of 1 or 2.
#[derive(Clone, Copy, Debug)]
pub struct DirectShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    /// 1 or 2.
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl DirectShape {
    /// Rows and columns of the input the windows read (padding included).
    fn span(&self) -> (usize, usize) {
        ((self.out_h - 1) * self.stride_h + self.kernel_h, (self.out_w - 1) * self.stride_w + self.kernel_w)
    }

    /// Whether some window reads outside the input: the input is then copied
    /// into a zero-padded buffer first.
    fn needs_padding(&self) -> bool {
        let (rows, cols) = self.span();
        self.pad_top > 0 || self.pad_left > 0 || rows > self.in_h || cols > self.in_w
    }

    fn depth(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// f32 elements of scratch a call needs: the padded input (when needed) and
    /// the table of the reduction's input offsets (as u32).
    pub fn scratch_len(&self) -> usize {
        let (rows, cols) = self.span();
        let padded = if self.needs_padding() { self.batch * self.in_channels * rows * cols } else { 0 };
        padded + self.depth()
    }

    /// Whether the kernel runs this shape: a stride it is built for, and input
    /// offsets that fit the u32 table.
    pub fn fits(&self) -> bool {
        let (rows, cols) = self.span();
        matches!(self.stride_w, 1 | 2)
            && self.out_h > 0
            && self.out_w > 0
            && (self.in_channels * rows.max(self.in_h) * cols.max(self.in_w)) < u32::MAX as usize
    }
}

/// What is applied to the sums, in this order: the bias (per output channel),
/// the residual (laid out as the output), and a clamp `[min, max]` (Relu, Clip;
/// infinite bounds for none). Other activations are the caller's to apply.
#[derive(Clone, Copy)]
pub struct DirectEpilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub min: f32,
    pub max: f32,
}

/// `y = epilogue(conv(x, weights))` for `shape`, on `threads` threads of the
/// current rayon pool. `scratch` holds at least `shape.scratch_len()` elements.
///
/// # Panics
/// When a slice is shorter than the shape needs.
pub fn conv(
    shape: &DirectShape,
    weights: &DirectWeights,
    x: &[f32],
    epilogue: DirectEpilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    let s = *shape;
    let (in_plane, out_plane) = (s.in_h * s.in_w, s.out_h * s.out_w);
    assert!(available() && weights.out_channels == s.out_channels && weights.depth == s.depth());
    assert!(x.len() >= s.batch * s.in_channels * in_plane && y.len() >= s.batch * s.out_channels * out_plane);
    assert!(epilogue.bias.is_none_or(|b| b.len() >= s.out_channels));
    assert!(epilogue.residual.is_none_or(|z| z.len() >= y.len()));
    assert!(s.fits() && scratch.len() >= s.scratch_len());
    if y.is_empty() || s.depth() == 0 {
        return;
    }
    let (table, rest) = scratch.split_at_mut(s.depth());
    let (input, rows, cols) = if s.needs_padding() {
        let (rows, cols) = s.span();
        let padded = &mut rest[..s.batch * s.in_channels * rows * cols];
        pad_input(&s, x, padded, rows, cols);
        (&*padded, rows, cols)
    } else {
        (x, s.in_h, s.in_w)
    };
    let table: &mut [u32] = bytemuck::cast_slice_mut(table);
    let mut q = 0;
    for c in 0..s.in_channels {
        for r in 0..s.kernel_h {
            for t in 0..s.kernel_w {
                table[q] = ((c * rows + r) * cols + t) as u32;
                q += 1;
            }
        }
    }
    let table = &*table;
    let panels = s.out_channels.div_ceil(PANEL);
    // A task is (image, group of panels, band of output rows); within it, each
    // output row runs through all the group's panels, so the input rows it reads
    // are reused from cache by every panel. A group's weights stay within half
    // of L2: 1×1 layers take all their panels at once (their input is the
    // larger operand), 3×3 layers with many channels one panel at a time.
    let per_group = (GROUP_WEIGHTS / (PANEL * s.depth() * 4)).clamp(1, panels);
    let groups = panels.div_ceil(per_group);
    let units = s.batch * groups;
    // Bands are runs of (output row, tile) pairs, row-major.
    let tiles = s.out_w.div_ceil(MAX_TILE);
    let row_tiles = s.out_h * tiles;
    let bands = (TASKS_PER_THREAD * threads).div_ceil(units).clamp(1, row_tiles);
    let tasks = units * bands;
    let y_at = SharedMut(y.as_mut_ptr());
    let run = |task: usize| {
        let (unit, band) = (task / bands, task % bands);
        let (n, group) = (unit / groups, unit % groups);
        let x_n = &input[n * s.in_channels * rows * cols..][..s.in_channels * rows * cols];
        let first_tile = band * row_tiles / bands;
        let group_panels = group * per_group..panels.min((group + 1) * per_group);
        for row_tile in first_tile..(band + 1) * row_tiles / bands {
            let (oh, t) = (row_tile / tiles, row_tile % tiles);
            let (w0, w1) = (t * s.out_w / tiles, (t + 1) * s.out_w / tiles);
            for p in group_panels.clone() {
                let at = (n * s.out_channels + p * PANEL) * out_plane + oh * s.out_w + w0;
                let out = TileOut {
                    // SAFETY (of the pointer arithmetic and of the tile): this task
                    // alone writes these positions of image n's channels in its
                    // panels; `at` and every output index are inside y (shape
                    // checked above). The offsets in `table` plus a tile's columns
                    // stay inside x_n (the windows' span).
                    y: unsafe { y_at.get().add(at) },
                    plane: out_plane,
                    channels: PANEL.min(s.out_channels - p * PANEL),
                    bias: epilogue.bias.map_or(std::ptr::null(), |b| b[p * PANEL..].as_ptr()),
                    residual: epilogue.residual.map_or(std::ptr::null(), |z| z[at..].as_ptr()),
                    min: epilogue.min,
                    max: epilogue.max,
                };
                let x_tile = x_n[(oh * s.stride_h * cols + w0 * s.stride_w)..].as_ptr();
                // On the task's first tile its panels come from memory: fetch
                // the next one while this one is multiplied.
                let next = p + 1 < group_panels.end && row_tile == first_tile;
                let prefetch = if next { weights.panel(p + 1).as_ptr() } else { std::ptr::null() };
                let w = (weights.panel(p).as_ptr(), prefetch);
                unsafe { tile(w1 - w0, s.stride_w, x_tile, table, w, out) };
            }
        }
    };
    if threads <= 1 || tasks == 1 {
        (0..tasks).for_each(run);
        return;
    }
    crate::team::for_each(tasks, run);
}

/// Copies each input plane into `rows`×`cols` with zeros where the windows
/// reach past the input.
fn pad_input(s: &DirectShape, x: &[f32], padded: &mut [f32], rows: usize, cols: usize) {
    let (h, w) = (s.in_h, s.in_w);
    crate::team::for_each_piece(padded, rows * cols, |plane, dst| {
        let src = &x[plane * h * w..][..h * w];
        for (r, dst_row) in dst.chunks_exact_mut(cols).enumerate() {
            let Some(ir) = r.checked_sub(s.pad_top).filter(|&ir| ir < h) else {
                dst_row.fill(0.0);
                continue;
            };
            let src_row = &src[ir * w..][..w];
            let left = s.pad_left.min(cols);
            dst_row[..left].fill(0.0);
            let copied = w.min(cols - left);
            dst_row[left..left + copied].copy_from_slice(&src_row[..copied]);
            dst_row[left + copied..].fill(0.0);
        }
    });
}

/// A tile's weight panel, and the panel to prefetch step by step (or null).
type Weights = (*const f32, *const f32);

/// Where one tile's 32 output channels go, and its epilogue.
#[derive(Clone, Copy)]
struct TileOut {
    /// Output channel 0 of the tile, position 0.
    y: *mut f32,
    /// Elements between output channels.
    plane: usize,
    /// Output channels inside the layer (the panel's zero rows are not stored).
    channels: usize,
    /// Bias of channel 0 (32 readable when `channels` is 32), or null.
    bias: *const f32,
    /// Residual of channel 0, position 0, laid out as `y`, or null.
    residual: *const f32,
    min: f32,
    max: f32,
}

/// Dispatches a tile of `width` positions at input stride `stride` to the
/// kernel instance of its size.
///
/// # Safety
/// As for [`kernel`].
unsafe fn tile(width: usize, stride: usize, x: *const f32, table: &[u32], w: Weights, out: TileOut) {
    macro_rules! go {
        ($($r:literal)*) => {
            match (width, stride) {
                $(($r, 1) => kernel::<$r, 1>(x, table, w, out),)*
                $(($r, 2) => kernel::<$r, 2>(x, table, w, out),)*
                _ => unreachable!("tiles are 1..={MAX_TILE} wide, strides 1 or 2"),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14)
}

/// The micro-kernel: `R` output positions by 32 output channels over the whole
/// reduction. Step `q` reads weights `w[32q..32q + 32]` and, for position `i`,
/// input element `x[table[q] + S·i]`.
///
/// # Safety
/// The CPU has AVX-512F; `w` holds `32·table.len()` values; every
/// `x + table[q] + S·i` is readable; `out` is valid for its channels × `R`
/// positions.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const S: usize>(x: *const f32, table: &[u32], w: Weights, out: TileOut) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut wq, mut pf) = w;
    for &offset in table {
        if !pf.is_null() {
            _mm_prefetch::<_MM_HINT_T1>(pf as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(pf.add(16) as *const i8);
            pf = pf.add(PANEL);
        }
        let xq = x.add(offset as usize);
        let w0 = _mm512_loadu_ps(wq);
        let w1 = _mm512_loadu_ps(wq.add(16));
        wq = wq.add(PANEL);
        for (i, row) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(*xq.add(S * i));
            row[0] = _mm512_fmadd_ps(a, w0, row[0]);
            row[1] = _mm512_fmadd_ps(a, w1, row[1]);
        }
    }
    store(acc, out)
}

/// Writes a finished tile transposed (position-major accumulators into
/// channel-major output): the bias added, each 16-channel half transposed in
/// registers, then per channel the residual (if any) and the clamp, and one
/// masked store of the tile's `R` positions. Stores element by element made
/// the store a sixth of a tile's time at 147 steps (the 7×7 stem).
#[inline(always)]
unsafe fn store<const R: usize>(acc: [[__m512; 2]; R], out: TileOut) {
    let positions: __mmask16 = ((1u32 << R) - 1) as __mmask16;
    let (lo, hi) = (_mm512_set1_ps(out.min), _mm512_set1_ps(out.max));
    for v in 0..2 {
        let first = 16 * v;
        if first >= out.channels {
            break;
        }
        let mut rows = [_mm512_setzero_ps(); 16];
        for (row, a) in rows.iter_mut().zip(&acc) {
            *row = a[v];
        }
        let columns = transpose16(rows);
        for (j, &column) in columns.iter().enumerate().take(out.channels - first) {
            let c = first + j;
            let mut r = column;
            if !out.bias.is_null() {
                r = _mm512_add_ps(r, _mm512_set1_ps(*out.bias.add(c)));
            }
            if !out.residual.is_null() {
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(positions, out.residual.add(c * out.plane)));
            }
            // max(lo, r) then min(hi, r) return r when it is NaN, as the
            // graph's Relu and Clip do.
            r = _mm512_min_ps(hi, _mm512_max_ps(lo, r));
            _mm512_mask_storeu_ps(out.y.add(c * out.plane), positions, r);
        }
    }
}

/// The transpose of a 16×16 block held as 16 row vectors: element `c` of row
/// `r` becomes element `r` of row `c`. Interleaves pairs of rows by 32-bit
/// elements, then by 64-bit pairs, then moves 128-bit lanes twice.
#[inline(always)]
unsafe fn transpose16(mut r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let (pd, ps) = (_mm512_castps_pd, _mm512_castpd_ps);
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
        r[4 * i + 1] = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
        r[4 * i + 2] = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
        r[4 * i + 3] = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
    }
    for i in 0..4 {
        t[i] = _mm512_shuffle_f32x4::<0x88>(r[i], r[i + 4]);
        t[i + 4] = _mm512_shuffle_f32x4::<0xdd>(r[i], r[i + 4]);
        t[i + 8] = _mm512_shuffle_f32x4::<0x88>(r[i + 8], r[i + 12]);
        t[i + 12] = _mm512_shuffle_f32x4::<0xdd>(r[i + 8], r[i + 12]);
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[i + 8]);
        r[i + 8] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[i + 8]);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !available() {
            return;
        }
        let block: Vec<f32> = (0..256).map(|e| e as f32).collect();
        // SAFETY: the CPU has AVX-512F; every load and store is of 16 elements
        // inside a 256-element buffer.
        let got = unsafe {
            let mut rows = [_mm512_setzero_ps(); 16];
            for (r, row) in rows.iter_mut().enumerate() {
                *row = _mm512_loadu_ps(block[16 * r..].as_ptr());
            }
            let mut got = vec![0f32; 256];
            for (c, column) in transpose16(rows).iter().enumerate() {
                _mm512_storeu_ps(got[16 * c..].as_mut_ptr(), *column);
            }
            got
        };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(got[16 * c + r], block[16 * r + c], "row {r}, column {c}");
            }
        }
    }
}
