//! The per-channel halves of a Winograd block: gathering and transforming the
//! input patches, and transforming and writing out the output tiles, 16 tiles at
//! a time with one tile per vector lane.
//!
//! The transforms are cheap once the tiles sit in registers; what costs is
//! getting them there. With AVX-512 each α×α patch element of 16 tiles is one
//! masked gather straight from the input planes (the mask zeroes the padding),
//! so no patch is copied through memory and no element is bounds-checked on
//! its own. Elsewhere the same code gathers element by element.

use super::tile_map::TileMap;
#[cfg(target_arch = "x86_64")]
use super::tile_map::MAX_BLOCK_TILES;
use super::{WinogradShape, WinogradTile, F2_AT, F2_BT, F4_AT, F4_BT, LANES};

/// One value per tile of a lane group.
pub(super) type Lanes = [f32; LANES];

/// A block's input: the NCHW planes the patches are gathered from.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub x: &'a [f32],
    pub shape: &'a WinogradShape,
    /// The AVX-512 gather may run: the CPU has it and every element offset
    /// fits its i32 lanes.
    pub simd: bool,
}

/// `L · x · Lᵀ` for a lane group, where `L` (P×Q) is a compile-time constant:
/// the loops unroll, zero coefficients drop out and ±1 need no multiply.
#[inline(always)]
pub(super) fn transform<const P: usize, const Q: usize>(l: &[[f32; Q]; P], x: &[[Lanes; Q]; Q]) -> [[Lanes; P]; P] {
    // Columns: t[a][j] = Σ_i L[a][i] · x[i][j].
    let mut t = [[x[0][0]; Q]; P];
    for (a, ta) in t.iter_mut().enumerate() {
        for (j, tj) in ta.iter_mut().enumerate() {
            *tj = combine(&l[a], |i| x[i][j]);
        }
    }
    // Rows: y[a][b] = Σ_j t[a][j] · L[b][j].
    let mut y = [[x[0][0]; P]; P];
    for (ya, ta) in y.iter_mut().zip(&t) {
        for (yab, lb) in ya.iter_mut().zip(l) {
            *yab = combine(lb, |j| ta[j]);
        }
    }
    y
}

/// `Σ_i coefs[i] · v(i)` in order of i, skipping zero coefficients and
/// multiplying by none of ±1; the rows of the transform matrices all have a
/// nonzero coefficient.
#[inline(always)]
fn combine<const Q: usize>(coefs: &[f32; Q], v: impl Fn(usize) -> Lanes) -> Lanes {
    let lanewise = |mut a: Lanes, b: Lanes, f: fn(f32, f32) -> f32| {
        a.iter_mut().zip(b).for_each(|(a, b)| *a = f(*a, b));
        a
    };
    let scaled = |x: Lanes, c: f32| x.map(|v| v * c);
    let mut acc: Option<Lanes> = None;
    for (i, &c) in coefs.iter().enumerate() {
        acc = match (acc, c) {
            (_, 0.0) => acc,
            (None, 1.0) => Some(v(i)),
            (None, _) => Some(scaled(v(i), c)),
            (Some(a), 1.0) => Some(lanewise(a, v(i), |a, b| a + b)),
            (Some(a), -1.0) => Some(lanewise(a, v(i), |a, b| a - b)),
            (Some(a), _) => Some(lanewise(a, scaled(v(i), c), |a, b| a + b)),
        };
    }
    acc.expect("a transform row has a nonzero coefficient")
}

/// V for input channel `c`: every tile of `map` gathered (zero outside the
/// plane) and transformed by `Bᵀ · B`; element ξ of the block's tile t goes to
/// `dst[ξ·dst_stride + t]`.
///
/// The transform matrices are picked inside the vectorised code, not passed in:
/// only as constants there do their zeros and ones drop out of the arithmetic.
pub(super) fn input_channel(
    tile: WinogradTile,
    input: Input,
    c: usize,
    map: &TileMap,
    dst: &mut [f32],
    dst_stride: usize,
) {
    // `simd` is never set on other architectures.
    if input.simd {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `simd` is set only where the CPU has AVX-512 (see `Input`).
            unsafe { input_channel_avx512(tile, input, c, map, dst, dst_stride) };
            return;
        }
    }
    super::super::wide::run(|| match tile {
        WinogradTile::F2 => input_portable(&F2_BT, input, c, map, dst, dst_stride),
        WinogradTile::F4 => input_portable(&F4_BT, input, c, map, dst, dst_stride),
    })
}

#[inline(always)]
fn input_portable<const A: usize>(
    bt: &[[f32; A]; A],
    input: Input,
    c: usize,
    map: &TileMap,
    dst: &mut [f32],
    dst_stride: usize,
) {
    for (j0, lanes) in map.groups() {
        let v = transform(bt, &gather_portable(input, c, map, j0, lanes));
        store(&v, dst, dst_stride, j0, lanes);
    }
}

/// Writes lane group `j0..j0 + lanes` of `v`, element (a, b) to row a·P + b of `dst`.
#[inline(always)]
fn store<const P: usize>(v: &[[Lanes; P]; P], dst: &mut [f32], stride: usize, j0: usize, lanes: usize) {
    for (a, va) in v.iter().enumerate() {
        for (b, vab) in va.iter().enumerate() {
            let row = &mut dst[(a * P + b) * stride + j0..];
            if lanes == LANES {
                row[..LANES].copy_from_slice(vab);
            } else {
                row[..lanes].copy_from_slice(&vab[..lanes]);
            }
        }
    }
}

/// The α×α patches of tiles `j0..j0 + lanes` of channel `c`, element by element.
#[inline(always)]
fn gather_portable<const A: usize>(input: Input, c: usize, map: &TileMap, j0: usize, lanes: usize) -> [[Lanes; A]; A] {
    let s = input.shape;
    let in_plane = s.in_h * s.in_w;
    let mut out = [[[0f32; LANES]; A]; A];
    for l in 0..lanes {
        let t = j0 + l;
        let plane = &input.x[(map.image[t] as usize * s.in_channels + c) * in_plane..][..in_plane];
        for (i, out_i) in out.iter_mut().enumerate() {
            let r = map.in_row[t] + i as i32;
            if r < 0 || r as usize >= s.in_h {
                continue;
            }
            let row = &plane[r as usize * s.in_w..][..s.in_w];
            for (j, out_ij) in out_i.iter_mut().enumerate() {
                let col = map.in_col[t] + j as i32;
                if col >= 0 && (col as usize) < s.in_w {
                    out_ij[l] = row[col as usize];
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn input_channel_avx512(
    tile: WinogradTile,
    input: Input,
    c: usize,
    map: &TileMap,
    dst: &mut [f32],
    dst_stride: usize,
) {
    match tile {
        WinogradTile::F2 => input_gathered(&F2_BT, input, c, map, dst, dst_stride),
        WinogradTile::F4 => input_gathered(&F4_BT, input, c, map, dst, dst_stride),
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn input_gathered<const A: usize>(
    bt: &[[f32; A]; A],
    input: Input,
    c: usize,
    map: &TileMap,
    dst: &mut [f32],
    dst_stride: usize,
) {
    use std::arch::x86_64::*;
    for (j0, lanes) in map.groups() {
        // SAFETY: only called from `input_channel_avx512`, which has the features.
        let patches = unsafe { gather_avx512::<A>(input, c, map, j0, lanes) };
        let v = transform(bt, &patches);
        let live = live_lanes(lanes);
        for (a, va) in v.iter().enumerate() {
            for (b, &vab) in va.iter().enumerate() {
                let row = &mut dst[(a * A + b) * dst_stride + j0..];
                assert!(row.len() >= lanes);
                // SAFETY: the live lanes are inside `row` (asserted); the
                // masked store writes no others.
                unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr(), live, from_lanes(vab)) };
            }
        }
    }
}

/// The mask of a lane group's first `lanes` lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn live_lanes(lanes: usize) -> u16 {
    if lanes >= LANES {
        !0
    } else {
        ((1u32 << lanes) - 1) as u16
    }
}

/// The α×α patches of tiles `j0..j0 + lanes` of channel `c`: one masked gather
/// per patch element, the mask clearing lanes past `lanes` and positions in the
/// padding.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn gather_avx512<const A: usize>(
    input: Input,
    c: usize,
    map: &TileMap,
    j0: usize,
    lanes: usize,
) -> [[Lanes; A]; A] {
    use std::arch::x86_64::*;
    let s = input.shape;
    let (in_h, in_w) = (s.in_h as i32, s.in_w as i32);
    let in_plane = in_h * in_w;
    // Offsets in `x` (Input::simd guarantees that every offset inside the input
    // fits an i32).
    // SAFETY: this function's features are `corners`'.
    let (row, col, corner) = unsafe {
        corners(&map.in_row, &map.in_col, &map.image, j0, in_w, in_plane * s.in_channels as i32, c as i32 * in_plane)
    };
    let live = live_lanes(lanes);
    // Lanes whose patch row i (column j) is inside the plane: 0 <= r < H as
    // one unsigned comparison.
    let mut rows_in = [0 as __mmask16; A];
    let mut cols_in = [0 as __mmask16; A];
    for i in 0..A {
        let step = _mm512_set1_epi32(i as i32);
        rows_in[i] = live & _mm512_cmplt_epu32_mask(_mm512_add_epi32(row, step), _mm512_set1_epi32(in_h));
        cols_in[i] = _mm512_cmplt_epu32_mask(_mm512_add_epi32(col, step), _mm512_set1_epi32(in_w));
    }
    let mut out = [[[0f32; LANES]; A]; A];
    for (i, out_i) in out.iter_mut().enumerate() {
        for (j, out_ij) in out_i.iter_mut().enumerate() {
            let offsets = _mm512_add_epi32(corner, _mm512_set1_epi32(i as i32 * in_w + j as i32));
            // SAFETY: a lane is gathered only where its row and column are
            // inside the plane of an image the batch has, so its offset lies
            // inside `x`; masked-off lanes are not read.
            let v = unsafe {
                _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), rows_in[i] & cols_in[j], offsets, input.x.as_ptr())
            };
            *out_ij = to_lanes(v);
        }
    }
    out
}

/// A lane group's tiles on one plane of every image (tile map rows `rows`,
/// columns `cols`, images `images`, from tile `j0`): their first rows and
/// columns, and each tile's corner offset
/// `image·image_stride + plane_offset + row·width + col`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn corners(
    rows: &[i32; MAX_BLOCK_TILES],
    cols: &[i32; MAX_BLOCK_TILES],
    images: &[i32; MAX_BLOCK_TILES],
    j0: usize,
    width: i32,
    image_stride: i32,
    plane_offset: i32,
) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    assert!(j0 + LANES <= MAX_BLOCK_TILES);
    // SAFETY: 16 lanes from j0 are inside the arrays (asserted).
    let (row, col, image) = unsafe {
        (
            _mm512_loadu_si512(rows.as_ptr().add(j0).cast()),
            _mm512_loadu_si512(cols.as_ptr().add(j0).cast()),
            _mm512_loadu_si512(images.as_ptr().add(j0).cast()),
        )
    };
    let corner = _mm512_add_epi32(
        _mm512_mullo_epi32(image, _mm512_set1_epi32(image_stride)),
        _mm512_add_epi32(
            _mm512_mullo_epi32(row, _mm512_set1_epi32(width)),
            _mm512_add_epi32(col, _mm512_set1_epi32(plane_offset)),
        ),
    );
    (row, col, corner)
}

/// The lanes of an AVX-512 vector.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn to_lanes(v: std::arch::x86_64::__m512) -> Lanes {
    // SAFETY: same size, and any bits are valid for both.
    unsafe { std::mem::transmute(v) }
}

/// An AVX-512 vector of the lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn from_lanes(v: Lanes) -> std::arch::x86_64::__m512 {
    // SAFETY: as for `to_lanes`.
    unsafe { std::mem::transmute(v) }
}

/// Where a block's output tiles go: the NCHW output and its shape.
#[derive(Clone, Copy)]
pub(super) struct Output<'a> {
    pub y: *mut f32,
    pub shape: &'a WinogradShape,
    /// The AVX-512 scatter may run: the CPU has it and every element offset of
    /// `y` fits its i32 lanes.
    pub simd: bool,
}

/// What an output transform does to each value before it is stored: `bias`
/// added, then clamped to `[min, max]` (a fused Relu or Clip; ±∞ for neither).
/// NaN passes through, as in the graph's Relu and Clip.
#[derive(Clone, Copy, Debug)]
pub(super) struct OutputFinish {
    pub bias: f32,
    pub min: f32,
    pub max: f32,
}

impl OutputFinish {
    #[inline(always)]
    pub(super) fn apply(self, x: f32) -> f32 {
        let x = x + self.bias;
        let x = if x < self.min { self.min } else { x };
        if x > self.max {
            self.max
        } else {
            x
        }
    }
}

/// Output channel `k`: every tile of `map` transformed from M by `Aᵀ · A`
/// (element ξ of tile t at `m[ξ·m_stride + t]`), `finish` applied, and written
/// into its image's plane k, clipped to the plane.
///
/// # Safety
/// `out.y` holds `batch · K · out_h · out_w` elements and no other thread
/// touches plane k of any image while this runs.
pub(super) unsafe fn output_channel(
    tile: WinogradTile,
    m: &[f32],
    m_stride: usize,
    k: usize,
    finish: OutputFinish,
    map: &TileMap,
    out: Output,
) {
    // `simd` is never set on other architectures.
    if out.simd {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `simd` is set only where the CPU has AVX-512; the rest is
            // the caller's contract.
            unsafe { output_channel_avx512(tile, m, m_stride, k, finish, map, out) };
            return;
        }
    }
    // SAFETY: passed on from the caller.
    super::super::wide::run(|| unsafe {
        match tile {
            WinogradTile::F2 => output_tiles(&F2_AT, m, m_stride, k, finish, map, out),
            WinogradTile::F4 => output_tiles(&F4_AT, m, m_stride, k, finish, map, out),
        }
    })
}

/// [`output_channel`] for one transform.
#[inline(always)]
unsafe fn output_tiles<const M: usize, const A: usize>(
    at: &[[f32; A]; M],
    m: &[f32],
    m_stride: usize,
    k: usize,
    finish: OutputFinish,
    map: &TileMap,
    out: Output,
) {
    let s = out.shape;
    let out_plane = s.out_h * s.out_w;
    for (j0, lanes) in map.groups() {
        let mut x = [[[0f32; LANES]; A]; A];
        for (i, x_i) in x.iter_mut().enumerate() {
            for (j, x_ij) in x_i.iter_mut().enumerate() {
                let src = &m[(i * A + j) * m_stride + j0..];
                if lanes == LANES {
                    x_ij.copy_from_slice(&src[..LANES]);
                } else {
                    x_ij[..lanes].copy_from_slice(&src[..lanes]);
                }
            }
        }
        let mut tiles = transform(at, &x);
        for v in tiles.iter_mut().flatten().flatten() {
            *v = finish.apply(*v);
        }
        for l in 0..lanes {
            let t = j0 + l;
            let (oy, ox) = (map.out_row[t] as usize, map.out_col[t] as usize);
            let (rows, cols) = (M.min(s.out_h - oy), M.min(s.out_w - ox));
            // SAFETY: (image, k) is a plane of `y` (the caller's contract)
            // and the rows and columns are clipped to it.
            unsafe {
                let plane = out.y.add((map.image[t] as usize * s.out_channels + k) * out_plane);
                for (r, tile_row) in tiles.iter().enumerate().take(rows) {
                    let dst = plane.add((oy + r) * s.out_w + ox);
                    for (col, v) in tile_row.iter().enumerate().take(cols) {
                        *dst.add(col) = v[l];
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn output_channel_avx512(
    tile: WinogradTile,
    m: &[f32],
    m_stride: usize,
    k: usize,
    finish: OutputFinish,
    map: &TileMap,
    out: Output,
) {
    // SAFETY: passed on from the caller.
    unsafe {
        match tile {
            WinogradTile::F2 => output_scattered(&F2_AT, m, m_stride, k, finish, map, out),
            WinogradTile::F4 => output_scattered(&F4_AT, m, m_stride, k, finish, map, out),
        }
    }
}

/// [`output_channel`] with AVX-512: the transformed tiles leave the registers
/// through masked scatters, one per tile element, the mask clipping lanes past
/// the group and rows and columns past the plane, so partial tiles need no
/// separate path.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn output_scattered<const M: usize, const A: usize>(
    at: &[[f32; A]; M],
    m: &[f32],
    m_stride: usize,
    k: usize,
    finish: OutputFinish,
    map: &TileMap,
    out: Output,
) {
    use std::arch::x86_64::*;
    let s = out.shape;
    let (out_h, out_w) = (s.out_h as i32, s.out_w as i32);
    let out_plane = out_h * out_w;
    for (j0, lanes) in map.groups() {
        let live = live_lanes(lanes);
        let mut x = [[[0f32; LANES]; A]; A];
        for (i, x_i) in x.iter_mut().enumerate() {
            for (j, x_ij) in x_i.iter_mut().enumerate() {
                let src = &m[(i * A + j) * m_stride + j0..];
                assert!(src.len() >= lanes);
                // SAFETY: the live lanes are inside `src` (asserted); the
                // masked load reads no others.
                *x_ij = to_lanes(unsafe { _mm512_maskz_loadu_ps(live, src.as_ptr()) });
            }
        }
        let tiles = transform(at, &x);
        // SAFETY: this function runs with `corners`' features.
        let (row, col, corner) = unsafe {
            corners(
                &map.out_row,
                &map.out_col,
                &map.image,
                j0,
                out_w,
                out_plane * s.out_channels as i32,
                k as i32 * out_plane,
            )
        };
        let bias = _mm512_set1_ps(finish.bias);
        let (min, max) = (_mm512_set1_ps(finish.min), _mm512_set1_ps(finish.max));
        for (r, tile_row) in tiles.iter().enumerate() {
            let step = _mm512_set1_epi32(r as i32);
            let row_in = live & _mm512_cmplt_epu32_mask(_mm512_add_epi32(row, step), _mm512_set1_epi32(out_h));
            for (c, &v) in tile_row.iter().enumerate() {
                let step = _mm512_set1_epi32(c as i32);
                let col_in = _mm512_cmplt_epu32_mask(_mm512_add_epi32(col, step), _mm512_set1_epi32(out_w));
                let offsets = _mm512_add_epi32(corner, _mm512_set1_epi32(r as i32 * out_w + c as i32));
                // `max(min, v)`, then `min(max, v)`: each returns its second
                // operand, v, when either is NaN, as `apply`'s comparisons do.
                let v = _mm512_add_ps(from_lanes(v), bias);
                let v = _mm512_min_ps(max, _mm512_max_ps(min, v));
                // SAFETY: a lane is written only where its row and column are
                // inside plane k of one of the batch's images (the caller's
                // contract makes those ours alone).
                unsafe { _mm512_mask_i32scatter_ps::<4>(out.y, row_in & col_in, offsets, v) };
            }
        }
    }
}
