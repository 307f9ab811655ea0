//! Pooling: MaxPool (with the optional Indices output), AveragePool, LpPool,
//! GlobalAveragePool and GlobalMaxPool, over any number of spatial dims.
//!
//! Windows follow ONNX: window `o` of a dim starts at `o·stride - pad_begin` and
//! takes `kernel` cells `dilation` apart. Cells outside the input are padding:
//! they never win a max, add nothing to a sum, and count in an average's divisor
//! only with `count_include_pad` and only up to the end padding (the extra cells
//! `ceil_mode` reaches past it never count).

use super::dims::{explicit_pads, per_dim, Dims};
use super::operands::{expect_dtype, expect_shape, first_output, required};
use crate::team;
use crate::{CpuError, Result, Scratch};
use half::{bf16, f16};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{AutoPad, DType, Element, Op, PoolAttrs, TensorView, TensorViewMut};

pub fn eval(
    op: &Op,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    scratch: &mut Scratch,
) -> Result<()> {
    let name = op.name();
    let x = required(name, inputs, 0)?;
    if x.rank() < 3 {
        return Err(CpuError::invalid(name, format!("X must be [N, C, spatial..], got {:?}", x.shape)));
    }
    match op {
        Op::MaxPool(attrs) => max_pool(attrs, x, outputs, scratch),
        Op::AveragePool(attrs) => {
            let geo = PoolGeometry::new(name, attrs, x.shape, scratch)?;
            let kind = if attrs.count_include_pad { Reduction::AverageWithPad } else { Reduction::Average };
            float_pool(name, &geo, kind, x, first_output(name, outputs)?)
        }
        Op::LpPool { attrs, p } => {
            if *p < 1 {
                return Err(CpuError::invalid(name, format!("p must be >= 1, got {p}")));
            }
            let geo = PoolGeometry::new(name, attrs, x.shape, scratch)?;
            float_pool(name, &geo, Reduction::Lp(*p as i32), x, first_output(name, outputs)?)
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let geo = PoolGeometry::global(x.shape, scratch);
            let y = first_output(name, outputs)?;
            if *op == Op::GlobalMaxPool {
                max_pool_typed(name, &geo, x, y, None, 0)
            } else {
                float_pool(name, &geo, Reduction::Average, x, y)
            }
        }
        other => Err(CpuError::invalid(other.name(), "is not a pooling op")),
    }
}

// ── geometry ───────────────────────────────────────────────────────────────

/// The window one output position covers along one dim.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Window {
    /// Input index of the first cell inside the input.
    first: usize,
    /// Cells inside the input (`dilation` apart from `first`).
    valid: usize,
    /// Cells inside the input or its declared padding.
    counted: usize,
}

/// Shapes and windows of one pooling call over `planes` = N·C independent planes.
#[derive(Debug)]
struct PoolGeometry<'s> {
    planes: usize,
    input: Dims,
    output: Dims,
    dilations: Dims,
    /// The window of each output index of each dim, dim after dim (see
    /// [`PoolGeometry::windows`]), in the run's scratch memory: the tables are as
    /// long as the output's dims.
    windows: &'s [Window],
    out_shape: Dims,
}

/// Output size of one dim with explicit pads, ceil_mode included.
fn explicit_output(
    input: usize,
    span: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil: bool,
) -> Option<usize> {
    let room = (input + pad_begin + pad_end).checked_sub(span)?;
    if !ceil {
        return Some(room / stride + 1);
    }
    let mut out = room.div_ceil(stride) + 1;
    // The last window must start inside the input or its begin padding.
    if (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Some(out)
}

impl<'s> PoolGeometry<'s> {
    fn new(op: &'static str, attrs: &PoolAttrs, x: &[usize], scratch: &'s mut Scratch) -> Result<PoolGeometry<'s>> {
        let rank = x.len() - 2;
        let kernel = &attrs.kernel_shape;
        if kernel.len() != rank || kernel.contains(&0) {
            return Err(CpuError::invalid(op, format!("kernel_shape {kernel:?} does not fit X {x:?}")));
        }
        let strides = per_dim(op, "strides", &attrs.strides, rank, 1)?;
        let dilations = per_dim(op, "dilations", &attrs.dilations, rank, 1)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(CpuError::invalid(op, "strides and dilations must be positive"));
        }
        let (mut begin, mut end) = explicit_pads(op, &attrs.pads, rank)?;
        let input = Dims::from_slice(&x[2..]);
        let mut output = Dims::with_capacity(rank);
        for d in 0..rank {
            let span = (kernel[d] - 1) * dilations[d] + 1;
            let out = match attrs.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let out = input[d].div_ceil(strides[d]);
                    let total = ((out.max(1) - 1) * strides[d] + span).saturating_sub(input[d]);
                    begin[d] = if attrs.auto_pad == AutoPad::SameUpper { total / 2 } else { total - total / 2 };
                    end[d] = total - begin[d];
                    Some(out)
                }
                AutoPad::Valid => {
                    begin[d] = 0;
                    end[d] = 0;
                    explicit_output(input[d], span, strides[d], 0, 0, attrs.ceil_mode)
                }
                AutoPad::NotSet => explicit_output(input[d], span, strides[d], begin[d], end[d], attrs.ceil_mode),
            };
            output.push(out.ok_or_else(|| {
                CpuError::invalid(op, format!("the dilated kernel {kernel:?} is larger than the padded input {x:?}"))
            })?);
        }
        let windows = scratch.slice::<Window>(output.iter().sum());
        let mut table_start = 0;
        for d in 0..rank {
            let table = &mut windows[table_start..table_start + output[d]];
            table_start += output[d];
            for (o, window) in table.iter_mut().enumerate() {
                let start = (o * strides[d]) as isize - begin[d] as isize;
                let (mut valid, mut counted, mut first) = (0, 0, None);
                for j in 0..kernel[d] {
                    let pos = start + (j * dilations[d]) as isize;
                    if pos >= 0 && (pos as usize) < input[d] {
                        first.get_or_insert(pos as usize);
                        valid += 1;
                    }
                    if pos < (input[d] + end[d]) as isize {
                        counted += 1;
                    }
                }
                *window = Window { first: first.unwrap_or(0), valid, counted };
            }
        }
        let out_shape = x[..2].iter().chain(&output).copied().collect();
        Ok(PoolGeometry { planes: x[0] * x[1], input, output, dilations, windows, out_shape })
    }

    /// One window covering each whole plane.
    fn global(x: &[usize], scratch: &'s mut Scratch) -> PoolGeometry<'s> {
        let input = Dims::from_slice(&x[2..]);
        let rank = input.len();
        let windows = scratch.slice::<Window>(rank);
        for (window, &n) in windows.iter_mut().zip(&input) {
            *window = Window { first: 0, valid: n, counted: n };
        }
        let out_shape = x[..2].iter().copied().chain(std::iter::repeat_n(1, rank)).collect();
        PoolGeometry {
            planes: x[0] * x[1],
            input,
            output: smallvec![1; rank],
            dilations: smallvec![1; rank],
            windows,
            out_shape,
        }
    }

    /// The windows of dim `d`, one per output index.
    fn windows(&self, d: usize) -> &[Window] {
        let start: usize = self.output[..d].iter().sum();
        &self.windows[start..start + self.output[d]]
    }

    fn in_size(&self) -> usize {
        self.input.iter().product()
    }

    fn out_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Feeds every output position's window of one plane to `r`: its cells inside
    /// the input (row-major in-plane offsets), then the end of the window. 1-D and
    /// 2-D windows walk nested loops; more dims an odometer.
    fn visit_windows<R: WindowReducer>(&self, r: &mut R) {
        match self.input.len() {
            1 => {
                let d = self.dilations[0];
                for (o, w) in self.windows(0).iter().enumerate() {
                    (0..w.valid).for_each(|t| r.cell(w.first + t * d));
                    r.finish(o, w.counted);
                }
            }
            2 => {
                let (iw, dy, dx) = (self.input[1], self.dilations[0], self.dilations[1]);
                let mut o = 0;
                for wy in self.windows(0) {
                    for wx in self.windows(1) {
                        for t in 0..wy.valid {
                            let row = (wy.first + t * dy) * iw + wx.first;
                            (0..wx.valid).for_each(|u| r.cell(row + u * dx));
                        }
                        r.finish(o, wy.counted * wx.counted);
                        o += 1;
                    }
                }
            }
            _ => self.visit_windows_nd(r),
        }
    }

    fn visit_windows_nd<R: WindowReducer>(&self, r: &mut R) {
        let rank = self.input.len();
        let strides = super::dims::strides_of(&self.input);
        let windows: SmallVec<[&[Window]; 8]> = (0..rank).map(|d| self.windows(d)).collect();
        let mut o: Dims = smallvec![0; rank];
        let mut t: Dims = smallvec![0; rank];
        let mut ws: SmallVec<[Window; 8]> = smallvec![Window { first: 0, valid: 0, counted: 0 }; rank];
        for out in 0..self.out_size() {
            for d in 0..rank {
                ws[d] = windows[d][o[d]];
            }
            if ws.iter().all(|w| w.valid > 0) {
                t.iter_mut().for_each(|v| *v = 0);
                'cells: loop {
                    r.cell((0..rank).map(|d| (ws[d].first + t[d] * self.dilations[d]) * strides[d]).sum());
                    for d in (0..rank).rev() {
                        t[d] += 1;
                        if t[d] < ws[d].valid {
                            continue 'cells;
                        }
                        t[d] = 0;
                    }
                    break;
                }
            }
            r.finish(out, ws.iter().map(|w| w.counted).product());
            for d in (0..rank).rev() {
                o[d] += 1;
                if o[d] < self.output[d] {
                    break;
                }
                o[d] = 0;
            }
        }
    }
}

/// What a pooling op does with the cells of one window.
trait WindowReducer {
    /// A cell inside the input, by its row-major offset in the plane.
    fn cell(&mut self, offset: usize);
    /// Ends output position `out`'s window; `counted` also counts its cells in
    /// the declared padding.
    fn finish(&mut self, out: usize, counted: usize);
}

/// Whether spreading planes over threads pays for the hand-off.
fn parallel_planes(geo: &PoolGeometry) -> bool {
    let cells: usize = (0..geo.input.len()).map(|d| geo.windows(d).first().map_or(1, |w| w.valid)).product();
    team::threads() > 1 && geo.planes > 1 && geo.planes * geo.out_size() * cells >= 1 << 16
}

// ── MaxPool ────────────────────────────────────────────────────────────────

fn max_pool(attrs: &PoolAttrs, x: TensorView, outputs: &mut [TensorViewMut], scratch: &mut Scratch) -> Result<()> {
    const OP: &str = "MaxPool";
    let geo = PoolGeometry::new(OP, attrs, x.shape, scratch)?;
    let (y, rest) = outputs.split_first_mut().ok_or_else(|| CpuError::invalid(OP, "the node has no output"))?;
    let indices = rest.first_mut();
    if attrs.storage_order != 0 && attrs.storage_order != 1 {
        return Err(CpuError::invalid(OP, format!("storage_order must be 0 or 1, got {}", attrs.storage_order)));
    }
    max_pool_typed(OP, &geo, x, y, indices, attrs.storage_order)
}

fn max_pool_typed(
    op: &'static str,
    geo: &PoolGeometry,
    x: TensorView,
    y: &mut TensorViewMut,
    indices: Option<&mut TensorViewMut>,
    storage_order: i64,
) -> Result<()> {
    expect_shape(op, "output", y.shape, &geo.out_shape)?;
    expect_dtype(op, "output", y.dtype, x.dtype)?;
    let indices = match indices {
        Some(i) => {
            expect_shape(op, "Indices", i.shape, &geo.out_shape)?;
            expect_dtype(op, "Indices", i.dtype, DType::I64)?;
            Some(i.as_mut_slice::<i64>()?)
        }
        None => None,
    };
    match x.dtype {
        DType::F32 => max_pool_planes::<f32>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, f32::MIN),
        DType::F64 => max_pool_planes::<f64>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, f64::MIN),
        DType::F16 => max_pool_planes::<f16>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, f16::MIN),
        DType::BF16 => {
            max_pool_planes::<bf16>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, bf16::MIN)
        }
        DType::I8 => max_pool_planes::<i8>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, i8::MIN),
        DType::U8 => max_pool_planes::<u8>(geo, x.as_slice()?, y.as_mut_slice()?, indices, storage_order, u8::MIN),
        dtype => return Err(CpuError::UnsupportedDType { op, dtype }),
    }
    Ok(())
}

/// Converts a row-major in-plane offset to the column-major one Indices reports
/// with `storage_order = 1`.
fn column_major(offset: usize, dims: &[usize]) -> usize {
    let (mut rem, mut out, mut stride) = (offset, 0, 1);
    let mut idx: Dims = smallvec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = rem % dims[d];
        rem /= dims[d];
    }
    for d in 0..dims.len() {
        out += idx[d] * stride;
        stride *= dims[d];
    }
    out
}

/// The max of each window and, when asked for, where it was.
struct MaxReducer<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    indices: Option<&'a mut [i64]>,
    best: Option<(T, usize)>,
    lowest: T,
    /// Offset of this plane in the whole input, for Indices.
    plane_offset: usize,
    /// The plane's dims when Indices count column-major (`storage_order = 1`).
    column_major: Option<&'a [usize]>,
}

impl<T: Element> WindowReducer for MaxReducer<'_, T> {
    #[inline]
    fn cell(&mut self, offset: usize) {
        let v = self.x[offset];
        // Strictly greater: the first of equal maxima wins, as in onnxruntime.
        if self.best.is_none_or(|(b, _)| v > b) {
            self.best = Some((v, offset));
        }
    }

    #[inline]
    fn finish(&mut self, out: usize, _counted: usize) {
        let best = self.best.take();
        self.y[out] = best.map_or(self.lowest, |(v, _)| v);
        if let Some(ind) = self.indices.as_deref_mut() {
            ind[out] = match best {
                Some((_, c)) => {
                    let within = self.column_major.map_or(c, |dims| column_major(c, dims));
                    (self.plane_offset + within) as i64
                }
                None => -1,
            };
        }
    }
}

/// MaxPool without Indices: only the value is tracked, so the comparison is a
/// plain select the compiler turns into a max instruction (the general reducer
/// carries the offset along and cost MaxPool 5% of ResNet-50). Same rule: the
/// first cell of the window, then any strictly greater value.
struct MaxValueReducer<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    best: T,
    empty: bool,
    lowest: T,
}

impl<T: Element> WindowReducer for MaxValueReducer<'_, T> {
    #[inline]
    fn cell(&mut self, offset: usize) {
        let v = self.x[offset];
        if self.empty {
            self.best = v;
            self.empty = false;
        } else if v > self.best {
            self.best = v;
        }
    }

    #[inline]
    fn finish(&mut self, out: usize, _counted: usize) {
        self.y[out] = if self.empty { self.lowest } else { self.best };
        self.empty = true;
    }
}

/// One plane of a 2-D, undilated MaxPool without Indices: [`MaxValueReducer`]'s
/// rule (the window's first cell, then every later one that is greater, in
/// row-major order) with the window loops written out, as ResNet's stem pool runs
/// it. Columns whose windows lie wholly inside the input and step evenly (all but
/// the borders) go cell by cell across the whole row at once, a loop the compiler
/// vectorises; the border columns go window by window.
fn max_plane_2d<T: Element>(geo: &PoolGeometry, x: &[T], y: &mut [T], lowest: T) {
    let iw = geo.input[1];
    let ow = geo.output[1];
    let columns = geo.windows(1);
    let inner = InnerColumns::of(columns);
    for (wy, y_row) in geo.windows(0).iter().zip(y.chunks_exact_mut(ow)) {
        if wy.valid == 0 {
            y_row.fill(lowest);
            continue;
        }
        let rows = &x[wy.first * iw..][..wy.valid * iw];
        for (ox, (wx, out)) in columns.iter().zip(y_row.iter_mut()).enumerate() {
            if inner.range.contains(&ox) {
                continue;
            }
            if wx.valid == 0 {
                *out = lowest;
                continue;
            }
            let mut best = rows[wx.first];
            for (t, row) in rows.chunks_exact(iw).enumerate() {
                let cells = &row[wx.first..][..wx.valid];
                // The window's first cell is `best` already.
                for &v in &cells[usize::from(t == 0)..] {
                    if v > best {
                        best = v;
                    }
                }
            }
            *out = best;
        }
        let out = &mut y_row[inner.range.clone()];
        if out.is_empty() {
            continue;
        }
        let first = columns[inner.range.start].first;
        let row_len = iw;
        // Same order per column as above: the first cell, then the rest.
        super::wide::run(|| match inner.stride {
            2 if inner.width == 3 && wy.valid == 3 && out.len() > 1 => inner_max_3x3_s2(rows, row_len, first, out),
            1 => inner_max::<T, 1>(rows, row_len, first, inner.width, out),
            2 => inner_max::<T, 2>(rows, row_len, first, inner.width, out),
            _ => inner_max_strided(rows, row_len, first, inner.width, inner.stride, out),
        });
    }
}

/// The inner columns of one output row, windows `S` apart, `width` wide, the
/// first at `first` in each of `rows` (`row_len` apart): cell by cell across the
/// row. `S` known to the compiler and the cells walked as `S`-element chunks let
/// the strided loads vectorise.
#[inline(always)]
fn inner_max<T: Element, const S: usize>(rows: &[T], row_len: usize, first: usize, width: usize, out: &mut [T]) {
    let n = out.len();
    // Cells of the first n - 1 windows as chunks; the last window's cell alone,
    // as a whole chunk after it may run past the row.
    let (body, last) = out.split_at_mut(n - 1);
    for (t, row) in rows.chunks_exact(row_len).enumerate() {
        for kx in 0..width {
            let cells = &row[first + kx..][..S * (n - 1) + 1];
            let chunks = cells.chunks_exact(S);
            let tail = cells[S * (n - 1)];
            if t == 0 && kx == 0 {
                body.iter_mut().zip(chunks).for_each(|(o, c)| *o = c[0]);
                last[0] = tail;
                continue;
            }
            // A select, stored unconditionally: a branch here mispredicts on
            // every other cell of real data, and blocks vectorising.
            body.iter_mut().zip(chunks).for_each(|(o, c)| *o = if c[0] > *o { c[0] } else { *o });
            last[0] = if tail > last[0] { tail } else { last[0] };
        }
    }
}

/// [`inner_max`] for 3×3 windows two apart (ResNet's stem pool), all nine
/// cells of a window in one pass and its output stored once, where
/// `inner_max` loads and stores the output row once per cell. Same order.
#[inline(always)]
fn inner_max_3x3_s2<T: Element>(rows: &[T], row_len: usize, first: usize, out: &mut [T]) {
    let n = out.len();
    let m = n - 1;
    // Window i covers cells 2i, 2i + 1, 2i + 2 of each row: the first m windows
    // as chunk i of the pairs from 0 and from 2; the last one alone.
    let row = |t: usize| &rows[t * row_len + first..][..2 * m + 3];
    let (a, b, c) = (row(0), row(1), row(2));
    fn pairs<T>(r: &[T], m: usize) -> impl Iterator<Item = (&[T], &[T])> {
        r[..2 * m].chunks_exact(2).zip(r[2..2 * m + 2].chunks_exact(2))
    }
    let greater = |v: T, best: T| if v > best { v } else { best };
    let (body, last) = out.split_at_mut(m);
    for (o, ((a, b), c)) in body.iter_mut().zip(pairs(a, m).zip(pairs(b, m)).zip(pairs(c, m))) {
        let mut best = a.0[0];
        best = greater(a.0[1], best);
        best = greater(a.1[0], best);
        for (lo, hi) in [b, c] {
            best = greater(lo[0], best);
            best = greater(lo[1], best);
            best = greater(hi[0], best);
        }
        *o = best;
    }
    let mut best = a[2 * m];
    for v in [a[2 * m + 1], a[2 * m + 2], b[2 * m], b[2 * m + 1], b[2 * m + 2], c[2 * m], c[2 * m + 1], c[2 * m + 2]] {
        best = greater(v, best);
    }
    last[0] = best;
}

/// [`inner_max`] for any other stride.
fn inner_max_strided<T: Element>(rows: &[T], row_len: usize, first: usize, width: usize, stride: usize, out: &mut [T]) {
    for (t, row) in rows.chunks_exact(row_len).enumerate() {
        for kx in 0..width {
            let cells = row[first + kx..].iter().step_by(stride);
            if t == 0 && kx == 0 {
                out.iter_mut().zip(cells).for_each(|(o, &v)| *o = v);
                continue;
            }
            out.iter_mut().zip(cells).for_each(|(o, &v)| *o = if v > *o { v } else { *o });
        }
    }
}

/// The output columns of a pooling row whose windows are all `width` cells,
/// inside the input, starting `stride` apart: all but the padded borders.
struct InnerColumns {
    range: std::ops::Range<usize>,
    width: usize,
    stride: usize,
}

impl InnerColumns {
    fn of(columns: &[Window]) -> InnerColumns {
        let width = columns.iter().map(|w| w.valid).max().unwrap_or(0);
        let Some(lo) = columns.iter().position(|w| w.valid == width && width > 0) else {
            return InnerColumns { range: 0..0, width, stride: 1 };
        };
        let stride = match columns.get(lo + 1) {
            Some(next) if next.valid == width => next.first - columns[lo].first,
            _ => 1,
        };
        if stride == 0 {
            return InnerColumns { range: 0..0, width, stride: 1 };
        }
        let steps_evenly =
            |k: usize| columns[lo + k].valid == width && columns[lo + k].first == columns[lo].first + k * stride;
        let count = (0..columns.len() - lo).take_while(|&k| steps_evenly(k)).count();
        InnerColumns { range: lo..lo + count, width, stride }
    }
}

fn max_pool_planes<T: Element>(
    geo: &PoolGeometry,
    x: &[T],
    y: &mut [T],
    indices: Option<&mut [i64]>,
    storage_order: i64,
    lowest: T,
) {
    let (in_size, out_size) = (geo.in_size(), geo.out_size());
    if out_size == 0 {
        return;
    }
    let column_major = (storage_order == 1).then_some(geo.input.as_slice());
    let plane = |p: usize, yp: &mut [T], ip: Option<&mut [i64]>| {
        let mut r = MaxReducer {
            x: &x[p * in_size..][..in_size],
            y: yp,
            indices: ip,
            best: None,
            lowest,
            plane_offset: p * in_size,
            column_major,
        };
        geo.visit_windows(&mut r);
    };
    match indices {
        Some(ind) => {
            if parallel_planes(geo) {
                team::for_each_piece_pair(y, out_size, ind, out_size, |p, yp, ip| plane(p, yp, Some(ip)));
            } else {
                y.chunks_mut(out_size)
                    .zip(ind.chunks_mut(out_size))
                    .enumerate()
                    .for_each(|(p, (yp, ip))| plane(p, yp, Some(ip)));
            }
        }
        None => {
            let values = |p: usize, yp: &mut [T]| {
                let x = &x[p * in_size..][..in_size];
                if geo.input.len() == 2 && geo.dilations[..] == [1, 1] {
                    max_plane_2d(geo, x, yp, lowest);
                } else {
                    geo.visit_windows(&mut MaxValueReducer { x, y: yp, best: lowest, empty: true, lowest });
                }
            };
            if parallel_planes(geo) {
                team::for_each_piece(y, out_size, |p, yp| values(p, yp));
            } else {
                y.chunks_mut(out_size).enumerate().for_each(|(p, yp)| values(p, yp));
            }
        }
    }
}

// ── AveragePool, LpPool, GlobalAveragePool ─────────────────────────────────

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    /// Sum over the cells inside the input, divided by their count.
    Average,
    /// Divided instead by the cells inside the input or its declared padding.
    AverageWithPad,
    /// `(Σ|x|^p)^(1/p)`; padding adds zeros, so nothing.
    Lp(i32),
}

fn float_pool(
    op: &'static str,
    geo: &PoolGeometry,
    kind: Reduction,
    x: TensorView,
    y: &mut TensorViewMut,
) -> Result<()> {
    expect_shape(op, "output", y.shape, &geo.out_shape)?;
    expect_dtype(op, "output", y.dtype, x.dtype)?;
    match x.dtype {
        DType::F32 => reduce_planes::<f32>(geo, kind, x.as_slice()?, y.as_mut_slice()?),
        DType::F64 => reduce_planes::<f64>(geo, kind, x.as_slice()?, y.as_mut_slice()?),
        DType::F16 => reduce_planes::<f16>(geo, kind, x.as_slice()?, y.as_mut_slice()?),
        DType::BF16 => reduce_planes::<bf16>(geo, kind, x.as_slice()?, y.as_mut_slice()?),
        dtype => return Err(CpuError::UnsupportedDType { op, dtype }),
    }
    Ok(())
}

/// Averages and Lp norms of windows, summed in f64 so f32 averages over large
/// windows keep their precision.
struct SumReducer<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    kind: Reduction,
    sum: f64,
    cells: usize,
}

impl<T: Element> WindowReducer for SumReducer<'_, T> {
    #[inline]
    fn cell(&mut self, offset: usize) {
        let v = self.x[offset].to_f64();
        self.sum += match self.kind {
            Reduction::Average | Reduction::AverageWithPad => v,
            Reduction::Lp(1) => v.abs(),
            Reduction::Lp(2) => v * v,
            Reduction::Lp(p) => v.abs().powi(p),
        };
        self.cells += 1;
    }

    #[inline]
    fn finish(&mut self, out: usize, counted: usize) {
        let v = match self.kind {
            Reduction::Average => self.sum / self.cells as f64,
            Reduction::AverageWithPad => self.sum / counted as f64,
            Reduction::Lp(1) => self.sum,
            Reduction::Lp(2) => self.sum.sqrt(),
            Reduction::Lp(p) => self.sum.powf(1.0 / p as f64),
        };
        self.y[out] = T::from_f64(v);
        self.sum = 0.0;
        self.cells = 0;
    }
}

fn reduce_planes<T: Element>(geo: &PoolGeometry, kind: Reduction, x: &[T], y: &mut [T]) {
    let (in_size, out_size) = (geo.in_size(), geo.out_size());
    if out_size == 0 {
        return;
    }
    let plane = |p: usize, yp: &mut [T]| {
        let mut r = SumReducer { x: &x[p * in_size..][..in_size], y: yp, kind, sum: 0.0, cells: 0 };
        geo.visit_windows(&mut r);
    };
    if parallel_planes(geo) {
        team::for_each_piece(y, out_size, |p, yp| plane(p, yp));
    } else {
        y.chunks_mut(out_size).enumerate().for_each(|(p, yp)| plane(p, yp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random, run_op, try_run_op};
    use smelt_ir::Tensor;

    fn pool_attrs(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize]) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: kernel.to_vec(),
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dilations.to_vec(),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
            storage_order: 0,
        }
    }

    /// Naive 2-D pooling on f64 from the definitions, for (N, C, H, W) input.
    fn naive_2d(x: &Tensor, a: &PoolAttrs, out: &[usize], mode: &str) -> (Vec<f64>, Vec<i64>) {
        let s = x.shape();
        let (h, w) = (s[2], s[3]);
        let xv = x.to_f64_vec();
        let st = if a.strides.is_empty() { vec![1, 1] } else { a.strides.clone() };
        let dl = if a.dilations.is_empty() { vec![1, 1] } else { a.dilations.clone() };
        let pd = if a.pads.is_empty() { vec![0; 4] } else { a.pads.clone() };
        let (mut vals, mut idx) = (Vec::new(), Vec::new());
        for p in 0..s[0] * s[1] {
            for oy in 0..out[2] {
                for ox in 0..out[3] {
                    let (mut best, mut best_i, mut sum, mut n, mut counted) = (f64::NEG_INFINITY, -1i64, 0.0, 0, 0);
                    for ky in 0..a.kernel_shape[0] {
                        for kx in 0..a.kernel_shape[1] {
                            let iy = (oy * st[0] + ky * dl[0]) as isize - pd[0] as isize;
                            let ix = (ox * st[1] + kx * dl[1]) as isize - pd[1] as isize;
                            if iy < (h + pd[2]) as isize && ix < (w + pd[3]) as isize {
                                counted += 1;
                            }
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let off = iy as usize * w + ix as usize;
                            let v = xv[p * h * w + off];
                            if v > best {
                                best = v;
                                best_i = (p * h * w + off) as i64;
                            }
                            sum += if mode == "lp2" { v * v } else { v };
                            n += 1;
                        }
                    }
                    vals.push(match mode {
                        "max" => best,
                        "avg" => sum / n as f64,
                        "avg_pad" => sum / counted as f64,
                        _ => sum.sqrt(),
                    });
                    idx.push(best_i);
                }
            }
        }
        (vals, idx)
    }

    #[test]
    fn max_and_average_2d_variants() {
        let cases: &[(PoolAttrs, &[usize])] = &[
            (pool_attrs(&[3, 3], &[2, 2], &[], &[]), &[1, 2, 7, 8]),
            (pool_attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[]), &[2, 3, 9, 9]),
            // ResNet's stem pool on a wider plane: most columns take the row-wide path.
            (pool_attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[]), &[1, 3, 20, 37]),
            (pool_attrs(&[2, 2], &[1, 1], &[], &[]), &[1, 2, 5, 19]),
            (pool_attrs(&[2, 3], &[1, 2], &[1, 0, 1, 2], &[2, 2]), &[1, 2, 8, 9]),
            (PoolAttrs { ceil_mode: true, ..pool_attrs(&[3, 3], &[2, 2], &[], &[]) }, &[1, 1, 4, 4]),
            (PoolAttrs { ceil_mode: true, ..pool_attrs(&[3, 2], &[3, 2], &[1, 0, 1, 1], &[]) }, &[1, 2, 7, 6]),
            (PoolAttrs { ceil_mode: true, ..pool_attrs(&[2, 2], &[2, 2], &[], &[2, 1]) }, &[1, 1, 9, 7]),
        ];
        for (i, (a, shape)) in cases.iter().enumerate() {
            let x = random(DType::F32, shape, 10 + i as u64);
            let out = PoolGeometry::new("MaxPool", a, shape, &mut Scratch::new()).unwrap().out_shape.clone();
            let (want, want_idx) = naive_2d(&x, a, &out, "max");
            let got = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &out), (DType::I64, &out)]);
            assert_close(&got[0], &want, 0.0);
            assert_eq!(got[1].to_i64_vec(), want_idx);
            // Without Indices the value-only reducer runs: the same values.
            let values_only = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &out)]);
            assert_eq!(values_only[0].to_f64_vec(), got[0].to_f64_vec());
            let (want, _) = naive_2d(&x, a, &out, "avg");
            let got = run_op(&Op::AveragePool(a.clone()), &[Some(&x)], &[(DType::F32, &out)]);
            assert_close(&got[0], &want, 1e-6);
            let with_pad = PoolAttrs { count_include_pad: true, ..a.clone() };
            let (want, _) = naive_2d(&x, a, &out, "avg_pad");
            let got = run_op(&Op::AveragePool(with_pad), &[Some(&x)], &[(DType::F32, &out)]);
            assert_close(&got[0], &want, 1e-6);
            let (want, _) = naive_2d(&x, a, &out, "lp2");
            let got = run_op(&Op::LpPool { attrs: a.clone(), p: 2 }, &[Some(&x)], &[(DType::F32, &out)]);
            assert_close(&got[0], &want, 1e-6);
        }
    }

    #[test]
    fn max_pool_nan_and_ties_match_with_and_without_indices() {
        // NaN first in a window stays; NaN later never replaces; equal maxima keep the first.
        let mut v: Vec<f32> = (0..2 * 36).map(|i| ((i * 7) % 5) as f32).collect();
        for i in [0, 9, 14, 40, 41] {
            v[i] = f32::NAN;
        }
        let x = Tensor::from_vec(&[1, 2, 6, 6], v).unwrap();
        let a = pool_attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[]);
        let out = PoolGeometry::new("MaxPool", &a, x.shape(), &mut Scratch::new()).unwrap().out_shape.clone();
        let both = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &out), (DType::I64, &out)]);
        let values = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &out)]);
        let bits = |t: &Tensor| t.to_f64_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&values[0]), bits(&both[0]));
        assert!(values[0].to_f64_vec().iter().any(|v| v.is_nan()), "a window starting on NaN gives NaN");
        // Wider planes take the one-pass 3×3 stride-2 path: ties, signed zeros
        // and NaN anywhere in a window come out as the window-by-window rule
        // (the Indices path) gives them.
        let v: Vec<f32> = (0..2 * 12 * 13)
            .map(|i| match (i * 7) % 11 {
                0 => f32::NAN,
                1 | 2 => 0.0,
                3 => -0.0,
                k => (k % 4) as f32 - 2.0,
            })
            .collect();
        let x = Tensor::from_vec(&[1, 2, 12, 13], v).unwrap();
        let a = pool_attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[]);
        let out = PoolGeometry::new("MaxPool", &a, x.shape(), &mut Scratch::new()).unwrap().out_shape.clone();
        let both = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &out), (DType::I64, &out)]);
        let values = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &out)]);
        assert_eq!(bits(&values[0]), bits(&both[0]));
    }

    #[test]
    fn onnx_ceil_mode_examples() {
        // test_averagepool_2d_ceil and test_maxpool_2d_ceil.
        let x = Tensor::from_vec(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect()).unwrap();
        let a = PoolAttrs { ceil_mode: true, ..pool_attrs(&[3, 3], &[2, 2], &[], &[]) };
        let got = run_op(&Op::AveragePool(a.clone()), &[Some(&x)], &[(DType::F32, &[1, 1, 2, 2])]);
        assert_close(&got[0], &[6.0, 7.5, 12.0, 13.5], 1e-6);
        let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &[1, 1, 2, 2])]);
        assert_close(&got[0], &[11.0, 12.0, 15.0, 16.0], 0.0);
        // test_averagepool_2d_ceil_last_window_starts_on_pad: the window that would
        // start in the end padding is dropped; the remaining one counts 9 cells.
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![0.8580f32, 0.0786, 0.2692, 0.1537]).unwrap();
        let a =
            PoolAttrs { ceil_mode: true, count_include_pad: true, ..pool_attrs(&[3, 3], &[3, 3], &[1, 1, 1, 1], &[]) };
        let got = run_op(&Op::AveragePool(a), &[Some(&x)], &[(DType::F32, &[1, 1, 1, 1])]);
        assert_close(&got[0], &[0.151055], 1e-5);
        // test_maxpool_2d_ceil_output_size_reduce_by_one
        let x = random(DType::F32, &[1, 1, 2, 2], 3);
        let a = PoolAttrs { ceil_mode: true, ..pool_attrs(&[1, 1], &[2, 2], &[], &[]) };
        let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &[1, 1, 1, 1])]);
        assert_close(&got[0], &[x.to_f64_vec()[0]], 0.0);
    }

    #[test]
    fn auto_pad_and_storage_order() {
        // test_maxpool_2d_same_upper / same_lower shapes and padding sides.
        let x = Tensor::from_vec(&[1, 1, 5, 5], (1..=25).map(|v| v as f32).collect()).unwrap();
        let mut a = pool_attrs(&[2, 2], &[2, 2], &[], &[]);
        a.auto_pad = AutoPad::SameUpper;
        let got = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &[1, 1, 3, 3])]);
        assert_close(&got[0], &[7., 9., 10., 17., 19., 20., 22., 24., 25.], 0.0);
        a.auto_pad = AutoPad::SameLower;
        let got = run_op(&Op::MaxPool(a.clone()), &[Some(&x)], &[(DType::F32, &[1, 1, 3, 3])]);
        assert_close(&got[0], &[1., 3., 5., 11., 13., 15., 21., 23., 25.], 0.0);
        a.auto_pad = AutoPad::Valid;
        let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &[1, 1, 2, 2])]);
        assert_close(&got[0], &[7., 9., 17., 19.], 0.0);
        // test_maxpool_with_argmax_2d_precomputed_strides: column-major indices.
        let a = PoolAttrs { storage_order: 1, ..pool_attrs(&[2, 2], &[2, 2], &[], &[]) };
        let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &[1, 1, 2, 2]), (DType::I64, &[1, 1, 2, 2])]);
        assert_close(&got[0], &[7., 9., 17., 19.], 0.0);
        assert_eq!(got[1].to_i64_vec(), vec![6, 16, 8, 18]);
    }

    #[test]
    fn pools_1d_3d_and_types() {
        let x = random(DType::F32, &[2, 3, 11], 1);
        let a = PoolAttrs { ceil_mode: true, ..pool_attrs(&[3], &[2], &[1, 1], &[]) };
        let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(DType::F32, &[2, 3, 6])]).remove(0);
        let xv = x.to_f64_vec();
        let want: Vec<f64> = (0..6)
            .flat_map(|p| {
                let xv = &xv;
                (0..6).map(move |o: usize| {
                    let lo = (2 * o).saturating_sub(1);
                    let hi = (2 * o + 2).min(11);
                    (lo..hi).map(|i| xv[p * 11 + i]).fold(f64::NEG_INFINITY, f64::max)
                })
            })
            .collect();
        assert_close(&got, &want, 0.0);

        let x = random(DType::F32, &[1, 2, 4, 5, 6], 2);
        let a = pool_attrs(&[2, 2, 2], &[2, 2, 2], &[], &[]);
        let got = run_op(&Op::AveragePool(a), &[Some(&x)], &[(DType::F32, &[1, 2, 2, 2, 3])]).remove(0);
        let xv = x.to_f64_vec();
        let mut want = Vec::new();
        for c in 0..2 {
            for d in 0..2 {
                for h in 0..2 {
                    for w in 0..3 {
                        let mut s = 0.0;
                        for (i, j, k) in (0..8).map(|t| (t / 4, (t / 2) % 2, t % 2)) {
                            s += xv[c * 120 + (2 * d + i) * 30 + (2 * h + j) * 6 + 2 * w + k];
                        }
                        want.push(s / 8.0);
                    }
                }
            }
        }
        assert_close(&got, &want, 1e-6);

        for dtype in [DType::I8, DType::U8, DType::F16, DType::F64] {
            let x = random(dtype, &[1, 2, 4, 4], 3);
            let a = pool_attrs(&[2, 2], &[2, 2], &[], &[]);
            let (want, _) = naive_2d(&x, &a, &[1, 2, 2, 2], "max");
            let got = run_op(&Op::MaxPool(a), &[Some(&x)], &[(dtype, &[1, 2, 2, 2])]);
            assert_close(&got[0], &want, 0.0);
        }
        let x = random(DType::I8, &[1, 2, 4, 4], 3);
        let avg = Op::AveragePool(pool_attrs(&[2, 2], &[2, 2], &[], &[]));
        assert!(try_run_op(&avg, &[Some(&x)], &[(DType::I8, &[1, 2, 2, 2])]).is_err());
    }

    #[test]
    fn global_pools() {
        let x = random(DType::F32, &[2, 3, 4, 5], 7);
        let xv = x.to_f64_vec();
        let avg: Vec<f64> = xv.chunks(20).map(|c| c.iter().sum::<f64>() / 20.0).collect();
        let max: Vec<f64> = xv.chunks(20).map(|c| c.iter().copied().fold(f64::NEG_INFINITY, f64::max)).collect();
        let got = run_op(&Op::GlobalAveragePool, &[Some(&x)], &[(DType::F32, &[2, 3, 1, 1])]);
        assert_close(&got[0], &avg, 1e-6);
        let got = run_op(&Op::GlobalMaxPool, &[Some(&x)], &[(DType::F32, &[2, 3, 1, 1])]);
        assert_close(&got[0], &max, 0.0);
        assert!(try_run_op(&Op::GlobalMaxPool, &[Some(&x)], &[(DType::F32, &[2, 3, 1])]).is_err());
    }
}
