//! Convolution and transposed convolution, N-d (1-D, 2-D, 3-D, ...), with groups,
//! strides, dilations, explicit or automatic padding, bias and (Conv) a fused
//! activation.
//!
//! Conv picks one of these paths per call (3×3 stride-1 layers may also take
//! Winograd, see `winograd_tile_for`):
//! - depthwise (one input channel per group, 1-D or 2-D): a direct kernel per
//!   output plane, planes spread over threads;
//! - pointwise (1×…×1 kernel, unit strides, no padding): each group's input
//!   already is the right operand of `W · X`, so it goes straight to GEMM;
//! - on x86-64 with AVX-512, prepared 2-D layers with a horizontal stride of 2,
//!   and pointwise ones on small maps: the direct kernel of
//!   [`super::conv_direct_avx512`], which reads the input in place;
//! - everything else: im2col of a tile of output positions into the scratch
//!   buffer, then GEMM. Tiles are sized so the column buffer stays in L2, and
//!   (image, group, tile) tasks are spread over threads, each with its own
//!   slice of scratch.
//!
//! ConvTranspose is GEMM (`Wᵀ · X` per image and group) followed by col2im.

use super::broadcast::for_each_chunk;
use super::dims::{explicit_pads, per_dim, Dims};
use super::gemm::{gemm, gemm_raw, parallelism, Float, GemmEpilogue, Layout, PackedLhs, Parallelism};
use super::operands::{expect_dtype, expect_shape, first_output, optional, required};
use super::winograd::{WinogradConv, WinogradShape, WinogradTile};
use crate::team;
use crate::{CpuError, Kernel, Result, Scratch};
use half::f16;
use smallvec::smallvec;
use smelt_ir::semantics::conv_transpose::{spatial_geometry, SpatialGeometry};
use smelt_ir::{AutoPad, ConvAttrs, ConvTransposeAttrs, DType, Op, Tensor, TensorView, TensorViewMut, UnaryOp};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub fn eval(
    op: &Op,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    scratch: &mut Scratch,
) -> Result<()> {
    match op {
        Op::Conv(attrs) => {
            let x = required("Conv", inputs, 0)?;
            let w = required("Conv", inputs, 1)?;
            let (bias, residual) = (optional(inputs, 2), optional(inputs, RESIDUAL_INPUT));
            let y = first_output("Conv", outputs)?;
            let geo = ConvGeometry::new(attrs, None, x.shape, w.shape)?;
            conv(attrs, &geo, x, w, None, bias, residual, y, scratch)
        }
        Op::ConvTranspose(attrs) => conv_transpose(attrs, inputs, outputs, scratch),
        other => Err(CpuError::invalid(other.name(), "is not a convolution")),
    }
}

/// Conv with constant f32 weights. ONNX's weight layout `[M, C/g, k1, .., kn]`
/// is the row-major `[group][M/g][C/g·k1·…·kn]` matrix the GEMM reads as its left
/// operand; each group's block is packed once into the GEMM kernel's panel
/// layout (where the CPU has that kernel), and the plain weight is kept, shared
/// with the graph, for every other path. A constant bias is checked once, and the
/// window attributes are resolved once. At run time only im2col, GEMM and the
/// bias + activation epilogue remain.
pub fn prepare(attrs: &ConvAttrs, constants: &[Option<&Arc<Tensor>>]) -> Option<Box<dyn Kernel>> {
    let weight = constants.get(1).copied().flatten()?;
    if weight.dtype() != DType::F32 || weight.rank() < 3 {
        return None;
    }
    // Attributes that do not fit the weight's rank fail every run: the reference
    // kernel reports that.
    let window = ConvWindow::new(attrs, weight.rank() - 2).ok()?;
    let bias = match constants.get(2).copied().flatten() {
        Some(b) if b.dtype() == DType::F32 && b.len() == weight.shape()[0] => Some(Arc::clone(b)),
        Some(_) => return None,
        None => None,
    };
    let shape = weight.shape();
    let group = attrs.group.max(1);
    let depthwise = shape[1] == 1 && shape.len() <= 4;
    #[cfg(target_arch = "x86_64")]
    let direct = direct::DirectSlot::new(attrs, weight);
    // Strided layers the direct kernel takes never reach the GEMM with packed
    // weights (ResNet-50's would hold 23 MB for nothing).
    #[cfg(target_arch = "x86_64")]
    let always_direct = direct.as_ref().is_some_and(|d| d.strided);
    #[cfg(not(target_arch = "x86_64"))]
    let always_direct = false;
    let packed = if depthwise || shape[0] % group != 0 || always_direct {
        None
    } else {
        let (rows, cols) = (shape[0] / group, shape[1..].iter().product::<usize>());
        let w = weight.as_slice::<f32>().ok()?;
        (0..group)
            .map(|g| PackedLhs::new(rows, cols, &w[g * rows * cols..(g + 1) * rows * cols], Layout::row_major(cols)))
            .collect()
    };
    let winograd = WinogradWeights::eligible(attrs, shape).then(WinogradWeights::default);
    Some(Box::new(PreparedConv {
        attrs: attrs.clone(),
        window,
        weight: Arc::clone(weight),
        packed,
        bias,
        winograd,
        policy: WinogradPolicy::from_env(),
        #[cfg(target_arch = "x86_64")]
        direct,
    }))
}

struct PreparedConv {
    attrs: ConvAttrs,
    window: ConvWindow,
    weight: Arc<Tensor>,
    /// Per group, the weight block packed for the GEMM kernel.
    packed: Option<Vec<PackedLhs>>,
    bias: Option<Arc<Tensor>>,
    /// For 3×3 stride-1 ungrouped 2-D convolutions: the Winograd-transformed
    /// weights, made on the first call that uses each variant.
    winograd: Option<WinogradWeights>,
    policy: WinogradPolicy,
    /// For 2-D ungrouped layers the direct kernel may run (see
    /// [`direct::DirectSlot::shape`]): its weights, packed on the first call
    /// that uses them.
    #[cfg(target_arch = "x86_64")]
    direct: Option<direct::DirectSlot>,
}

/// Which convolution algorithm a prepared 3×3 Conv uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WinogradPolicy {
    /// Per call, by [`winograd_tile_for`]'s cost model.
    CostModel,
    /// Always this algorithm (`None`: im2col + GEMM); for tests and measurements.
    Fixed(Option<WinogradTile>),
}

impl WinogradPolicy {
    /// `SMELT_CPU_WINOGRAD`: `off` (im2col + GEMM), `f2` or `f4` forces an
    /// algorithm on every eligible layer, for A/B measurements and to rule
    /// Winograd's rounding in or out; unset or anything else is the cost model.
    fn from_env() -> WinogradPolicy {
        match std::env::var("SMELT_CPU_WINOGRAD").as_deref() {
            Ok("off") => WinogradPolicy::Fixed(None),
            Ok("f2") => WinogradPolicy::Fixed(Some(WinogradTile::F2)),
            Ok("f4") => WinogradPolicy::Fixed(Some(WinogradTile::F4)),
            _ => WinogradPolicy::CostModel,
        }
    }
}

/// A 3×3 Conv's Winograd weights for both tile sizes. The transform is done
/// lazily because which variant a layer needs depends on its input size, known
/// at run time, and each variant's weights take α²/9 times the original's space
/// (1.8× for F(2,3), 4× for F(4,3)): only the variants in use are kept.
#[derive(Default)]
struct WinogradWeights {
    f2: OnceLock<WinogradConv>,
    f4: OnceLock<WinogradConv>,
}

impl WinogradWeights {
    /// Whether Winograd applies: 2-D, 3×3 kernel, stride 1, dilation 1, one group.
    fn eligible(attrs: &ConvAttrs, weight_shape: &[usize]) -> bool {
        weight_shape.len() == 4
            && weight_shape[2..] == [3, 3]
            && attrs.group.max(1) == 1
            && attrs.strides.iter().all(|&s| s == 1)
            && attrs.dilations.iter().all(|&d| d == 1)
    }

    fn get(&self, tile: WinogradTile, weight: &Tensor) -> Result<&WinogradConv> {
        let cell = match tile {
            WinogradTile::F2 => &self.f2,
            WinogradTile::F4 => &self.f4,
        };
        if let Some(conv) = cell.get() {
            return Ok(conv);
        }
        let w = weight.as_slice::<f32>()?;
        let shape = weight.shape();
        Ok(cell.get_or_init(|| WinogradConv::new(tile, w, shape[0], shape[1])))
    }
}

impl Kernel for PreparedConv {
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], scratch: &mut Scratch) -> Result<()> {
        let x = required("Conv", inputs, 0)?;
        let bias = match &self.bias {
            Some(b) => Some(b.view()),
            None => optional(inputs, 2),
        };
        let residual = optional(inputs, RESIDUAL_INPUT);
        let y = first_output("Conv", outputs)?;
        let geo = ConvGeometry::new(&self.attrs, Some(&self.window), x.shape, self.weight.shape())?;
        if let (Some(winograd), DType::F32) = (&self.winograd, x.dtype) {
            let tile = match self.policy {
                WinogradPolicy::CostModel => winograd_tile_for(&geo),
                WinogradPolicy::Fixed(tile) => tile,
            };
            if let Some(tile) = tile {
                let wino = winograd.get(tile, &self.weight)?;
                return conv_winograd(&self.attrs, &geo, wino, x, bias, residual, y, scratch);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let (Some(slot), DType::F32) = (&self.direct, x.dtype) {
            if let Some((shape, weights)) = slot.shape(&geo).zip(slot.weights(&self.weight)) {
                return direct::run(&self.attrs, &geo, &shape, weights, x, bias, residual, y, scratch);
            }
        }
        conv(&self.attrs, &geo, x, self.weight.view(), self.packed.as_deref(), bias, residual, y, scratch)
    }
}

/// Strided 2-D layers, and pointwise ones on small maps, through
/// [`super::conv_direct_avx512`].
#[cfg(target_arch = "x86_64")]
mod direct {
    use super::super::activation::clamp_bounds;
    use super::super::broadcast::for_each_chunk;
    use super::super::conv_direct_avx512::{self as kernel, DirectEpilogue, DirectShape, DirectWeights};
    use super::{checked_bias, checked_residual, expect_dtype, expect_shape, ConvGeometry, Epilogue};
    use crate::{Result, Scratch};
    use smelt_ir::{ConvAttrs, DType, Tensor, TensorView, TensorViewMut};
    use std::sync::OnceLock;

    const OP: &str = "Conv";

    /// Pointwise layers run the direct kernel up to this many positions per
    /// image (8×8 maps). ResNet-50's 7×7 layers make 49-column GEMMs with a
    /// quarter of the kernel's work wasted: direct, its layer4 1×1 layers took
    /// 20.0–20.7 ms against 22.1–24.0 per batch of 8, and 3.04 against 3.14–3.16
    /// ms at batch 1 (`SMELT_CPU_PROFILE=all`, alternated). Its 14×14 layers
    /// (12.5% wasted) were no faster direct: on larger maps the GEMM's panels
    /// are nearly full and it reads the input in place.
    pub const POINTWISE_POSITIONS: usize = 64;

    /// A layer's direct-kernel weights, packed on the first call that uses them
    /// (whether a pointwise layer does depends on its input size).
    pub struct DirectSlot {
        packed: OnceLock<Option<DirectWeights>>,
        /// A horizontal stride of 2: every call the kernel can run takes it.
        pub strided: bool,
        /// Pointwise layers on small maps take the kernel too.
        pointwise: bool,
    }

    impl DirectSlot {
        /// A slot when the layer's attributes suit the kernel (2-D, one group,
        /// dilation 1, horizontal stride 1 or 2) and the CPU runs it.
        /// `SMELT_CPU_DIRECT=off` sends every layer through im2col + GEMM, and
        /// `strided` only the pointwise ones, for A/B measurements.
        pub fn new(attrs: &ConvAttrs, weight: &Tensor) -> Option<DirectSlot> {
            let mode = std::env::var("SMELT_CPU_DIRECT");
            let suits = weight.rank() == 4
                && attrs.group.max(1) == 1
                && attrs.strides.get(1).is_none_or(|&s| s <= 2)
                && attrs.dilations.iter().all(|&d| d == 1);
            let slot = DirectSlot {
                packed: OnceLock::new(),
                strided: attrs.strides.get(1) == Some(&2),
                pointwise: mode.as_deref() != Ok("strided"),
            };
            (suits && mode.as_deref() != Ok("off") && kernel::available()).then_some(slot)
        }

        pub fn weights(&self, weight: &Tensor) -> Option<&DirectWeights> {
            let pack = || {
                let shape = weight.shape();
                DirectWeights::new(weight.as_slice::<f32>().ok()?, shape[0], shape[1..].iter().product())
            };
            self.packed.get_or_init(pack).as_ref()
        }

        /// The kernel's view of `geo` when it runs it: 2-D layers with a
        /// horizontal stride of 2, and pointwise layers (as one row of all their
        /// positions) on maps of up to [`POINTWISE_POSITIONS`].
        pub fn shape(&self, geo: &ConvGeometry) -> Option<DirectShape> {
            if geo.input.len() != 2 || geo.group != 1 || geo.dilations.iter().any(|&d| d != 1) {
                return None;
            }
            let planes = DirectShape {
                batch: geo.batch,
                in_channels: geo.in_channels,
                out_channels: geo.out_channels,
                in_h: geo.input[0],
                in_w: geo.input[1],
                out_h: geo.output[0],
                out_w: geo.output[1],
                kernel_h: geo.kernel[0],
                kernel_w: geo.kernel[1],
                stride_h: geo.strides[0],
                stride_w: geo.strides[1],
                pad_top: geo.pads[0],
                pad_left: geo.pads[1],
            };
            let positions = geo.out_size();
            let shape = if self.pointwise && geo.is_pointwise() && positions <= POINTWISE_POSITIONS {
                DirectShape { in_h: 1, in_w: positions, out_h: 1, out_w: positions, ..planes }
            } else if planes.stride_w == 2 {
                planes
            } else {
                return None;
            };
            shape.fits().then_some(shape)
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        attrs: &ConvAttrs,
        geo: &ConvGeometry,
        shape: &DirectShape,
        weights: &DirectWeights,
        x: TensorView,
        bias: Option<TensorView>,
        residual: Option<TensorView>,
        y: &mut TensorViewMut,
        scratch: &mut Scratch,
    ) -> Result<()> {
        expect_shape(OP, "output", y.shape, &geo.out_shape())?;
        expect_dtype(OP, "output", y.dtype, DType::F32)?;
        let residual = checked_residual(residual, y)?.map(|z| z.as_slice::<f32>()).transpose()?;
        let bias = checked_bias(OP, bias, geo.out_channels, DType::F32)?.map(|b| b.as_slice::<f32>()).transpose()?;
        let activation = attrs.activation.as_ref();
        let bounds = activation.and_then(clamp_bounds);
        let (min, max) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let buf = scratch.f32s(shape.scratch_len());
        let y = y.as_mut_slice::<f32>()?;
        let epilogue = DirectEpilogue { bias, residual, min, max };
        kernel::conv(shape, weights, x.as_slice()?, epilogue, y, buf, crate::team::threads());
        if let (Some(_), None) = (activation, bounds) {
            // Activations other than a clamp: one pass after.
            let after = Epilogue { bias: None, residual: None, activation };
            for_each_chunk(y, |start, chunk| after.apply(0, start, chunk));
        }
        Ok(())
    }
}

/// A 3×3 stride-1 Conv through the Winograd weights `wino`.
#[allow(clippy::too_many_arguments)]
fn conv_winograd(
    attrs: &ConvAttrs,
    geo: &ConvGeometry,
    wino: &WinogradConv,
    x: TensorView,
    bias: Option<TensorView>,
    residual: Option<TensorView>,
    y: &mut TensorViewMut,
    scratch: &mut Scratch,
) -> Result<()> {
    const OP: &str = "Conv";
    expect_shape(OP, "output", y.shape, &geo.out_shape())?;
    expect_dtype(OP, "output", y.dtype, DType::F32)?;
    let residual = checked_residual(residual, y)?.map(|z| z.as_slice::<f32>()).transpose()?;
    let bias = checked_bias(OP, bias, geo.out_channels, DType::F32)?.map(|b| b.as_slice::<f32>()).transpose()?;
    let shape = WinogradShape {
        batch: geo.batch,
        in_channels: geo.in_channels,
        out_channels: geo.out_channels,
        in_h: geo.input[0],
        in_w: geo.input[1],
        out_h: geo.output[0],
        out_w: geo.output[1],
        pad_top: geo.pads[0],
        pad_left: geo.pads[1],
    };
    let buf = scratch.f32s(wino.scratch_len(&shape));
    let y = y.as_mut_slice()?;
    let activation = attrs.activation.as_ref();
    match residual {
        None => wino.run(&shape, x.as_slice()?, bias, activation, y, buf),
        Some(residual) => {
            // The transforms write whole tiles: the residual and the activation
            // follow in one pass over the output.
            wino.run(&shape, x.as_slice()?, bias, None, y, buf);
            let epilogue = Epilogue { bias: None, residual: Some(residual), activation };
            // Without a bias the channel does not matter: chunks may span channels.
            for_each_chunk(y, |start, chunk| epilogue.apply(0, start, chunk));
        }
    }
    Ok(())
}

/// The bias `B` of operator `op`, checked to be of `dtype` with one element per
/// output channel.
fn checked_bias<'a>(
    op: &'static str,
    bias: Option<TensorView<'a>>,
    channels: usize,
    dtype: DType,
) -> Result<Option<TensorView<'a>>> {
    if let Some(b) = &bias {
        expect_dtype(op, "B", b.dtype, dtype)?;
        if b.len() != channels {
            return Err(CpuError::invalid(op, format!("B has {} elements for {channels} output channels", b.len())));
        }
    }
    Ok(bias)
}

/// The residual input `Z`, checked to have the output's dtype and shape.
fn checked_residual<'a>(residual: Option<TensorView<'a>>, y: &TensorViewMut) -> Result<Option<TensorView<'a>>> {
    if let Some(z) = &residual {
        expect_dtype("Conv", "Z", z.dtype, y.dtype)?;
        expect_shape("Conv", "Z", z.shape, y.shape)?;
    }
    Ok(residual)
}

/// Conv's input holding the residual that fusion adds (`X, W, B?, Z?`).
const RESIDUAL_INPUT: usize = 3;

/// What a Conv kernel applies to its output after the window sums, in this
/// order: the bias, the residual, the activation.
#[derive(Clone, Copy)]
struct Epilogue<'a, T> {
    bias: Option<&'a [T]>,
    /// Of the output's shape; element `i` is added to output element `i`.
    residual: Option<&'a [T]>,
    activation: Option<&'a UnaryOp>,
}

impl<T: Float> Epilogue<'_, T> {
    fn is_empty(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && self.activation.is_none()
    }

    /// The epilogue of a GEMM whose row m is output channel `channel + m` and
    /// whose C starts at output element `at` (laid out as the output).
    fn for_gemm(&self, channel: usize, at: usize) -> GemmEpilogue<'_, T> {
        GemmEpilogue {
            row_bias: self.bias.map(|b| &b[channel..]),
            residual: self.residual.map(|z| &z[at..]),
            activation: self.activation,
            ..GemmEpilogue::NONE
        }
    }

    /// Applies the epilogue to `row`, output elements `at..at + row.len()`, all
    /// of output channel `channel`, in one pass.
    fn apply(&self, channel: usize, at: usize, row: &mut [T]) {
        let residual = self.residual.map(|z| &z[at..at + row.len()]);
        T::add_then_activate(row, self.bias.map(|b| b[channel]), residual, self.activation);
    }
}

/// The Winograd variant a 3×3 stride-1 Conv of this geometry runs fastest with,
/// or `None` for im2col + GEMM, by estimated cost in units of one multiply-add
/// of the packed GEMM kernel:
///
/// - im2col + GEMM: `K·C·9` per output position, positions rounded up to the
///   kernel's 32-column panels per image, plus writing the 9·C-row column matrix;
/// - F(m,3) with α = m + 2: `K·C·α²` per tile (tiles rounded up to panels over
///   the whole batch), plus the transforms, which measured about the same per
///   tile and channel (input channels gathered and transformed, output channels
///   transformed and scattered) whatever α.
///
/// Calibration (`calibrate_winograd` below, ResNet-50's 3×3 layers, 2 threads,
/// AMD EPYC with AVX-512, 2026-12-07), with the AVX-512 gather and scatter:
/// F(4,3) took 0.34–0.55× im2col's time on every layer at batch 1 and 8 except
/// 7×7 at batch 1, where its 4 tiles make 4-column GEMMs and F(2,3) (16 tiles)
/// wins at about 0.55×. Fitting the transform term to those times gives about
/// 1,800–1,900 units per tile and channel.
fn winograd_tile_for(geo: &ConvGeometry) -> Option<WinogradTile> {
    let (c, k) = (geo.in_channels as f64, geo.out_channels as f64);
    let round = |n: usize| n.div_ceil(PANEL) * PANEL;
    let positions = geo.out_size();
    let direct = geo.batch as f64 * (k * c * 9.0 * round(positions) as f64 + c * 9.0 * positions as f64 * IM2COL_COST);
    let mut best = (direct, None);
    for tile in [WinogradTile::F2, WinogradTile::F4] {
        let (m, alpha) = (tile.m(), tile.alpha());
        let tiles = geo.batch * geo.output[0].div_ceil(m) * geo.output[1].div_ceil(m);
        // The α² GEMMs are as wide as the tiles; a last panel of up to 16
        // columns runs the kernel's half-width instance.
        let gemm = k * c * (alpha * alpha) as f64 * tiles.next_multiple_of(16) as f64;
        let cost = gemm + tiles as f64 * (c + k) * tile_transform_cost();
        if cost < best.0 {
            best = (cost, Some(tile));
        }
    }
    best.1
}

/// Cost of writing one im2col element, in GEMM multiply-adds.
const IM2COL_COST: f64 = 8.0;
/// Cost of the input or output transform of one tile of one channel, in GEMM
/// multiply-adds. With AVX-512 the tiles are gathered and scattered 16 at a
/// time: 2,000 (fitted as above, rounded up). Element by element it is the
/// earlier scalar path's fit (4,200, 2026-11-22), which the portable code now
/// does with less index arithmetic: an upper bound, not a measurement.
fn tile_transform_cost() -> f64 {
    if WinogradConv::simd_transforms() {
        2_000.0
    } else {
        4_200.0
    }
}

// ── geometry ───────────────────────────────────────────────────────────────

/// A Conv's window attributes with one entry per spatial dim and the defaults
/// filled in. They depend on the attributes alone, so a prepared Conv resolves
/// them once.
#[derive(Clone, Debug, PartialEq)]
struct ConvWindow {
    strides: Dims,
    dilations: Dims,
    /// The `pads` attribute's begin and end pads (auto_pad may replace them).
    pad_begin: Dims,
    pad_end: Dims,
}

impl ConvWindow {
    fn new(attrs: &ConvAttrs, rank: usize) -> Result<ConvWindow> {
        let strides = per_dim("Conv", "strides", &attrs.strides, rank, 1)?;
        let dilations = per_dim("Conv", "dilations", &attrs.dilations, rank, 1)?;
        let (pad_begin, pad_end) = explicit_pads("Conv", &attrs.pads, rank)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(CpuError::invalid("Conv", "strides and dilations must be positive"));
        }
        Ok(ConvWindow { strides, dilations, pad_begin, pad_end })
    }
}

/// Shapes and window parameters of one Conv call. Spatial vectors have one entry
/// per spatial dim.
#[derive(Clone, Debug, PartialEq)]
struct ConvGeometry {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    group: usize,
    input: Dims,
    kernel: Dims,
    output: Dims,
    strides: Dims,
    dilations: Dims,
    /// Padding before each spatial dim (the end padding only shapes `output`).
    pads: Dims,
}

/// Output size and begin padding of one spatial dim of a Conv or pool window.
pub(crate) fn window_output(
    auto_pad: AutoPad,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
) -> Option<(usize, usize)> {
    let span = dilation * (kernel.max(1) - 1) + 1;
    match auto_pad {
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + span).saturating_sub(input);
            let begin = if auto_pad == AutoPad::SameUpper { total / 2 } else { total - total / 2 };
            Some((out, begin))
        }
        AutoPad::Valid => Some((input.checked_sub(span)? / stride + 1, 0)),
        AutoPad::NotSet => Some(((input + pad_begin + pad_end).checked_sub(span)? / stride + 1, pad_begin)),
    }
}

impl ConvGeometry {
    /// The geometry of `attrs` on input `x` and weight `w`, with the window
    /// attributes a prepared kernel resolved (`window`) or resolved here (`None`).
    fn new(attrs: &ConvAttrs, window: Option<&ConvWindow>, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        let bad = |why: String| CpuError::invalid("Conv", why);
        if x.len() < 3 || w.len() != x.len() {
            return Err(bad(format!("X {x:?} and W {w:?} must both be [N, C, spatial..] with the same rank")));
        }
        let rank = x.len() - 2;
        let group = attrs.group.max(1);
        let (batch, in_channels, out_channels) = (x[0], x[1], w[0]);
        if in_channels % group != 0 || out_channels % group != 0 || w[1] * group != in_channels {
            return Err(bad(format!("W {w:?} does not fit X {x:?} with {group} groups")));
        }
        let kernel = Dims::from_slice(&w[2..]);
        if let Some(ks) = &attrs.kernel_shape {
            if ks[..] != kernel[..] {
                return Err(bad(format!("kernel_shape {ks:?} differs from W's spatial dims {kernel:?}")));
            }
        }
        let resolved;
        let window = match window {
            Some(window) => window,
            None => {
                resolved = ConvWindow::new(attrs, rank)?;
                &resolved
            }
        };
        let ConvWindow { strides, dilations, pad_begin: begin, pad_end: end } = window;
        let mut output = Dims::with_capacity(rank);
        let mut pads = Dims::with_capacity(rank);
        for d in 0..rank {
            let (o, p) = window_output(attrs.auto_pad, x[d + 2], kernel[d], strides[d], dilations[d], begin[d], end[d])
                .ok_or_else(|| bad(format!("the dilated kernel {kernel:?} is larger than the padded input {x:?}")))?;
            output.push(o);
            pads.push(p);
        }
        Ok(ConvGeometry {
            batch,
            in_channels,
            out_channels,
            group,
            input: Dims::from_slice(&x[2..]),
            kernel,
            output,
            strides: strides.clone(),
            dilations: dilations.clone(),
            pads,
        })
    }

    fn out_shape(&self) -> Dims {
        [self.batch, self.out_channels].into_iter().chain(self.output.iter().copied()).collect()
    }

    fn in_size(&self) -> usize {
        self.input.iter().product()
    }

    fn out_size(&self) -> usize {
        self.output.iter().product()
    }

    fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    fn cin_g(&self) -> usize {
        self.in_channels / self.group
    }

    fn cout_g(&self) -> usize {
        self.out_channels / self.group
    }

    /// Rows of the im2col matrix, and the inner dimension of the GEMM.
    fn col_rows(&self) -> usize {
        self.cin_g() * self.kernel_size()
    }

    fn is_pointwise(&self) -> bool {
        self.kernel.iter().all(|&k| k == 1)
            && self.strides.iter().all(|&s| s == 1)
            && self.pads.iter().all(|&p| p == 0)
            && self.output == self.input
    }

    fn is_depthwise(&self) -> bool {
        self.cin_g() == 1 && self.input.len() <= 2
    }
}

// ── Conv ───────────────────────────────────────────────────────────────────

/// Conv of geometry `geo` by im2col + GEMM (or the depthwise and pointwise paths).
#[allow(clippy::too_many_arguments)]
fn conv(
    attrs: &ConvAttrs,
    geo: &ConvGeometry,
    x: TensorView,
    w: TensorView,
    packed: Option<&[PackedLhs]>,
    bias: Option<TensorView>,
    residual: Option<TensorView>,
    y: &mut TensorViewMut,
    scratch: &mut Scratch,
) -> Result<()> {
    const OP: &str = "Conv";
    expect_shape(OP, "output", y.shape, &geo.out_shape())?;
    expect_dtype(OP, "W", w.dtype, x.dtype)?;
    expect_dtype(OP, "output", y.dtype, x.dtype)?;
    let bias = checked_bias(OP, bias, geo.out_channels, x.dtype)?;
    let residual = checked_residual(residual, y)?;
    let activation = attrs.activation.as_ref();
    match x.dtype {
        DType::F32 => {
            let plan = TilePlan::new(geo);
            let buf = scratch.f32s(plan.scratch_len());
            let bias = bias.map(|b| b.as_slice::<f32>()).transpose()?;
            let residual = residual.map(|z| z.as_slice::<f32>()).transpose()?;
            let w = ConvWeights { plain: w.as_slice()?, packed };
            let epilogue = Epilogue { bias, residual, activation };
            conv_float(geo, &plan, x.as_slice()?, w, epilogue, y.as_mut_slice()?, buf);
        }
        DType::F64 => {
            let plan = TilePlan::new(geo);
            let buf = scratch.slice::<f64>(plan.scratch_len());
            let bias = bias.map(|b| b.as_slice::<f64>()).transpose()?;
            let residual = residual.map(|z| z.as_slice::<f64>()).transpose()?;
            let w = ConvWeights { plain: w.as_slice()?, packed: None };
            let epilogue = Epilogue { bias, residual, activation };
            conv_float(geo, &plan, x.as_slice()?, w, epilogue, y.as_mut_slice()?, buf);
        }
        DType::F16 => {
            // Through f32: half-precision accumulation over C·k·k terms loses too much.
            let plan = TilePlan::new(geo);
            let x32 = widen(x.as_slice::<f16>()?);
            let w32 = widen(w.as_slice::<f16>()?);
            let b32 = bias.map(|b| b.as_slice::<f16>().map(widen)).transpose()?;
            let z32 = residual.map(|z| z.as_slice::<f16>().map(widen)).transpose()?;
            let mut y32 = vec![0f32; y.len()];
            let buf = scratch.f32s(plan.scratch_len());
            let w = ConvWeights { plain: &w32, packed: None };
            let epilogue = Epilogue { bias: b32.as_deref(), residual: z32.as_deref(), activation };
            conv_float(geo, &plan, &x32, w, epilogue, &mut y32, buf);
            narrow(&y32, y.as_mut_slice()?);
        }
        dtype => return Err(CpuError::UnsupportedDType { op: OP, dtype }),
    }
    Ok(())
}

/// Conv weights: the plain `[M, C/g·k…]` matrix, and per group its packed form
/// when a prepared kernel made one.
#[derive(Clone, Copy)]
struct ConvWeights<'a, T> {
    plain: &'a [T],
    packed: Option<&'a [PackedLhs]>,
}

fn widen(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

fn narrow(src: &[f32], dst: &mut [f16]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f16::from_f32(s));
}

/// Aim for im2col tiles of about this many elements (1 MiB of f32): small enough
/// to stay in a core's L2 between im2col writing them and GEMM reading them.
const COL_TILE_ELEMS: usize = 256 * 1024;
/// Output positions are cut into tiles of whole GEMM panels (the AVX-512
/// kernel's 32 columns), so only an image's last panel is ever partial.
const PANEL: usize = 32;
/// Narrower tiles make the GEMM's inner loops too short to run at full speed.
const MIN_TILE_PANELS: usize = 2;
/// Spreading tasks over threads must keep them this evenly loaded (mean over
/// max); otherwise each GEMM splits its rows or columns over the threads
/// instead, whichever is more even. At 0.85, ResNet-50's 14×14 and 7×7 layers
/// (7 and 2 panels) ran as uneven tasks: 0.95 made them 10–25% faster
/// (`cargo bench -p smelt-cpu -- conv`).
const MIN_BALANCE: f64 = 0.95;
/// A batch's images share GEMM columns ([`TilePlan::flat`]) when padding an
/// image's positions to whole panels wastes more than 1/`FLAT_WASTE` of them:
/// 7×7 maps (23%) do, 14×14 (12.5%) and 28×28 (2%) do not. At batch 8
/// (`calibrate_gemm_convs`) ResNet-50's 1×1 stride-2 layer onto 7×7 took 4.1–4.3
/// ms flat against 5.1–5.2, its 3×3 stride-2 one 5.8 against 6.1; 14×14 maps
/// gained nothing.
const FLAT_WASTE: usize = 5;

/// How the output positions of one (image, group) are cut into tiles, and how
/// the (image, group, tile) tasks are spread over threads.
#[derive(Clone, Copy, Debug)]
struct TilePlan {
    /// Direct kernel, no GEMM.
    depthwise: bool,
    /// The input is the GEMM operand as it stands: no im2col.
    pointwise: bool,
    /// The images' output positions are one run of GEMM columns (image after
    /// image), cut into tiles that may span images: the product goes to a
    /// scratch block and its finish scatters it to the images. Chosen for
    /// im2col layers (which copy their columns anyway) whose images' positions
    /// fill their last panel badly: 7×7 maps make 49-column GEMMs, 2 panels
    /// with a quarter of the kernel's work wasted. Pointwise layers read their
    /// input in place, and copying it cost them more than the waste.
    flat: bool,
    /// Output positions of an (image, group), or of all images when `flat`, in
    /// `PANEL`-wide panels, and the tiles they are dealt into (as evenly as
    /// whole panels allow).
    positions: usize,
    panels: usize,
    tiles: usize,
    tasks: usize,
    /// Threads working on tasks; each owns `col_len` elements of scratch for
    /// its column tile and, when `flat`, `out_len` for its product.
    workers: usize,
    col_len: usize,
    out_len: usize,
    /// Threads inside each GEMM (and im2col): only when tasks alone cannot
    /// keep them evenly busy.
    gemm_par: Parallelism,
}

impl TilePlan {
    fn new(geo: &ConvGeometry) -> TilePlan {
        let threads = team::threads().max(1);
        let depthwise = geo.is_depthwise();
        let padded = geo.out_size().next_multiple_of(PANEL);
        let pointwise = !depthwise && geo.is_pointwise();
        let flat = !depthwise && !pointwise && geo.group == 1 && geo.batch > 1;
        let flat = flat && (padded - geo.out_size()) * FLAT_WASTE > padded;
        let rows = if pointwise { geo.cin_g() } else { geo.col_rows() };
        let (s, images) = if flat { (geo.batch * geo.out_size(), 1) } else { (geo.out_size(), geo.batch * geo.group) };
        let panels = s.div_ceil(PANEL).max(1);
        let cap = (COL_TILE_ELEMS / rows.max(1) / PANEL).max(MIN_TILE_PANELS);
        let fewest = panels.div_ceil(cap).min(panels);
        let max_tiles = (panels / MIN_TILE_PANELS).max(1);
        let work = geo.cout_g() * rows * s * images;
        let parallel = threads > 1 && work >= 1 << 18;
        // Spread over the threads as tasks: prefer a task count that is a
        // multiple of the thread count.
        let mut spread = fewest;
        if parallel {
            let mut t = spread;
            while !(images * t).is_multiple_of(threads) && t < max_tiles {
                t += 1;
            }
            if (images * t).is_multiple_of(threads) {
                spread = t.min(panels);
            }
        }
        let balanced =
            parallel && images * spread >= threads && balance(panels, spread, images * spread, threads) >= MIN_BALANCE;
        // Unbalanced, the tasks run one after another, each GEMM split over the
        // threads: as few and as wide as the column tile allows, since every task
        // reads all the weights (see `sgemm_avx512::BANDED_B_MAX` for what this
        // gained on 14×14 maps).
        let tiles = if balanced { spread } else { fewest };
        let tasks = images * tiles;
        let workers = if balanced { threads } else { 1 };
        let width = panels.div_ceil(tiles) * PANEL;
        let col_len = if pointwise || depthwise { 0 } else { rows * width.min(s) };
        let out_len = if flat { geo.cout_g() * width.min(s) } else { 0 };
        let gemm_par = if workers > 1 || !parallel { Parallelism::None } else { Parallelism::Rayon(threads) };
        TilePlan { depthwise, pointwise, flat, positions: s, panels, tiles, tasks, workers, col_len, out_len, gemm_par }
    }

    /// Output positions of tile `t` of an (image, group).
    fn tile_range(&self, t: usize) -> (usize, usize) {
        let p0 = t * self.panels / self.tiles;
        let p1 = (t + 1) * self.panels / self.tiles;
        ((p0 * PANEL).min(self.positions), (p1 * PANEL).min(self.positions))
    }

    /// Scratch elements of one worker.
    fn worker_len(&self) -> usize {
        self.col_len + self.out_len
    }

    fn scratch_len(&self) -> usize {
        self.worker_len() * self.workers
    }
}

/// Mean over maximum of the panels each thread computes when `tasks` tasks
/// (tiles of `panels / tiles` panels, round-robin over images) go to `threads`.
fn balance(panels: usize, tiles: usize, tasks: usize, threads: usize) -> f64 {
    // Thread `thread` computes tasks thread, thread + threads, ...
    let load = |thread: usize| -> usize {
        (thread..tasks)
            .step_by(threads)
            .map(|task| task % tiles)
            .map(|t| (t + 1) * panels / tiles - t * panels / tiles)
            .sum()
    };
    let (total, max) = (0..threads).map(load).fold((0, 0), |(total, max), l| (total + l, max.max(l)));
    total as f64 / (threads * max.max(1)) as f64
}

/// A pointer that may cross threads; every use documents why the accesses
/// through it are disjoint.
#[derive(Clone, Copy)]
pub(super) struct SharedMut<T>(pub(super) *mut T);

impl<T> SharedMut<T> {
    /// Through a method, so closures capture the whole `SharedMut`, not its
    /// (non-`Sync`) pointer field.
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: users only touch disjoint elements from different threads.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// Runs tasks `0..tasks` on `workers` workers, each with its own
/// `worker_len` piece of `scratch` (none when `worker_len` is 0). Each worker
/// takes the next task as it comes free, so one that starts late (sharing its
/// core) takes fewer tasks instead of holding up the layer.
fn share_tasks<T: Send>(
    tasks: usize,
    workers: usize,
    scratch: &mut [T],
    worker_len: usize,
    run: impl Fn(usize, &mut [T]) + Sync,
) {
    let next = AtomicUsize::new(0);
    let work = |own: &mut [T]| loop {
        let task = next.fetch_add(1, Ordering::Relaxed);
        if task >= tasks {
            break;
        }
        run(task, own);
    };
    if worker_len == 0 {
        team::for_each(workers, |_| work(&mut []));
    } else {
        team::for_each_piece(&mut scratch[..workers * worker_len], worker_len, |_, own| work(own));
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_float<T: Float>(
    geo: &ConvGeometry,
    plan: &TilePlan,
    x: &[T],
    weights: ConvWeights<T>,
    epilogue: Epilogue<T>,
    y: &mut [T],
    buf: &mut [T],
) {
    if y.is_empty() {
        return;
    }
    let w = weights.plain;
    if plan.depthwise {
        return depthwise(geo, x, w, epilogue, y);
    }
    let s = geo.out_size();
    let in_size = geo.in_size();
    let (cin_g, cout_g) = (geo.cin_g(), geo.cout_g());
    let rows = if plan.pointwise { cin_g } else { geo.col_rows() };
    let y_ptr = SharedMut(y.as_mut_ptr());
    let run_task = |task: usize, col: &mut [T]| {
        let image = task / plan.tiles;
        let (n, g) = (image / geo.group, image % geo.group);
        let (s0, s1) = plan.tile_range(task % plan.tiles);
        let width = s1 - s0;
        let x_g = &x[(n * geo.in_channels + g * cin_g) * in_size..][..cin_g * in_size];
        let y_offset = (n * geo.out_channels + g * cout_g) * s + s0;
        let (b, b_layout) = if plan.pointwise {
            (&x_g[s0..], Layout::row_major(in_size))
        } else {
            let col = &mut col[..rows * width];
            fill_columns(geo, plan, width, col, |channels, dst| {
                im2col_tile(geo, x_g, ColPart { channels, s0, width, ld: width }, dst)
            });
            (&col[..rows * width], Layout::row_major(width))
        };
        // SAFETY: this task's output is rows [0, cout_g) × columns [s0, s0 + width)
        // of its group's [cout_g, s] block; tasks differ in (image, group) or in
        // column range, so no two tasks reach the same element, and the block lies
        // inside `y`, whose shape was checked against the geometry.
        unsafe {
            let c = y_ptr.get().add(y_offset);
            // Row m of this product is output channel g·cout_g + m; C is laid out
            // as the output from element y_offset.
            let epi = epilogue.for_gemm(g * cout_g, y_offset);
            conv_product(weights, g, (cout_g, width, rows), (b, b_layout), (c, s), &epi, plan.gemm_par);
        }
    };
    // A flat plan's tasks are tiles of all the images' positions.
    let run_flat = |tile: usize, buf: &mut [T]| {
        let (f0, f1) = plan.tile_range(tile);
        let width = f1 - f0;
        let (col, out) = buf.split_at_mut(plan.col_len);
        let col = &mut col[..rows * width];
        fill_columns(geo, plan, width, col, |channels, dst| {
            for (n, p0, p1, at) in image_runs(f0, f1, s) {
                let x_n = &x[n * geo.in_channels * in_size..][..cin_g * in_size];
                let part = ColPart { channels: channels.clone(), s0: p0, width: p1 - p0, ld: width };
                im2col_tile(geo, x_n, part, &mut dst[at..]);
            }
        });
        let c = out[..cout_g * width].as_mut_ptr();
        // Row m of the product is output channel m. The bias, and the activation
        // unless a residual must come first, are applied in the GEMM; the
        // residual (laid out as the output, not as C) and then the activation
        // as the rows are scattered.
        let (in_gemm, after) = match epilogue.residual {
            None => (epilogue.for_gemm(0, 0), Epilogue { bias: None, residual: None, activation: None }),
            Some(_) => {
                (GemmEpilogue { row_bias: epilogue.bias, ..GemmEpilogue::NONE }, Epilogue { bias: None, ..epilogue })
            }
        };
        // Row m of the product, from its column j, is output channel m of the
        // images whose positions the tile's columns j.. are.
        let scatter = |m: usize, j: usize, row: &mut [T]| {
            for (n, p0, p1, at) in image_runs(f0 + j, f0 + j + row.len(), s) {
                let run = &mut row[at..at + p1 - p0];
                let y_at = (n * geo.out_channels + m) * s + p0;
                if !after.is_empty() {
                    after.apply(m, y_at, run);
                }
                // SAFETY: (image n, channel m, positions p0..p1) is written by
                // this call alone: tiles differ in positions, calls in (m, j).
                unsafe { std::ptr::copy_nonoverlapping(run.as_ptr(), y_ptr.get().add(y_at), run.len()) };
            }
        };
        // SAFETY: `col` holds the rows×width B and `out` the cout×width C.
        unsafe {
            let epi = GemmEpilogue { finish: Some(&scatter), ..in_gemm };
            let b = (&col[..], Layout::row_major(width));
            conv_product(weights, 0, (cout_g, width, rows), b, (c, width), &epi, plan.gemm_par);
        }
    };
    let run = |task: usize, buf: &mut [T]| {
        if plan.flat {
            run_flat(task, buf)
        } else {
            run_task(task, &mut buf[..plan.col_len])
        }
    };
    if plan.workers <= 1 {
        let buf = &mut buf[..plan.worker_len()];
        (0..plan.tasks).for_each(|t| run(t, buf));
        return;
    }
    // Each worker owns a slice of scratch.
    share_tasks(plan.tasks, plan.workers, buf, plan.worker_len(), run);
}

/// Fills a column tile of `width` positions: `fill(channels, rows)` for every
/// input channel of a group at once or, when the GEMM that follows has the
/// threads, one channel's rows per job, so they split the work the same way.
fn fill_columns<T: Float>(
    geo: &ConvGeometry,
    plan: &TilePlan,
    width: usize,
    col: &mut [T],
    fill: impl Fn(Range<usize>, &mut [T]) + Sync,
) {
    if matches!(plan.gemm_par, Parallelism::None) {
        fill(0..geo.cin_g(), col);
    } else {
        let per_channel = geo.kernel_size() * width;
        team::for_each_piece(col, per_channel, |c, rows| fill(c..c + 1, rows));
    }
}

/// `C ← W_g · B`, then `epi`, for group `g`: `m`×`n` (output channels by
/// positions) over `k` (column rows), C with row stride `ldc`. Through the
/// weights a prepared kernel packed, else the plain ones, with the epilogue
/// applied after, while C is in cache.
///
/// # Safety
/// C is valid for `m` rows of `n` elements `ldc` apart, and nothing else
/// touches them meanwhile; `b` spans a `k`×`n` matrix with its layout.
#[allow(clippy::too_many_arguments)]
unsafe fn conv_product<T: Float>(
    weights: ConvWeights<T>,
    g: usize,
    (m, n, k): (usize, usize, usize),
    (b, b_layout): (&[T], Layout),
    (c, ldc): (*mut T, usize),
    epi: &GemmEpilogue<T>,
    par: Parallelism,
) {
    let w_g = &weights.plain[g * m * k..][..m * k];
    assert!(b_layout.span(k, n) <= b.len());
    let (one, zero) = (T::one(), T::zero());
    let packed = weights.packed.map(|p| &p[g]);
    if !packed.is_some_and(|p| T::gemm_packed_lhs(m, n, p, b.as_ptr(), b_layout, c, ldc, one, zero, epi, par)) {
        let (a, al) = (w_g.as_ptr(), Layout::row_major(k));
        gemm_raw(m, n, k, a, al, b.as_ptr(), b_layout, c, Layout::row_major(ldc), one, zero, par);
        epi.apply_rows(c, m, n, ldc);
    }
}

/// The images' runs of positions among flat positions `f0..f1` (image after
/// image, `s` each): (image, first position, end position, offset from `f0`).
fn image_runs(f0: usize, f1: usize, s: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut f = f0;
    std::iter::from_fn(move || {
        (f < f1).then(|| {
            let (n, p0) = (f / s, f % s);
            let p1 = s.min(p0 + f1 - f);
            let run = (n, p0, p1, f - f0);
            f += p1 - p0;
            run
        })
    })
}

/// Which part of an (image, group)'s im2col matrix a call fills, and how it lies
/// in the destination: the rows (input channel, kernel offset) of the input
/// channels `channels`, for the output positions `s0..s0 + width` (row-major
/// over the output's spatial dims), each row `ld` elements after the last.
#[derive(Clone, Debug)]
struct ColPart {
    channels: Range<usize>,
    s0: usize,
    width: usize,
    ld: usize,
}

/// Fills `col` with `part` of the im2col matrix of `x_g`. Padding reads as zero.
fn im2col_tile<T: Float>(geo: &ConvGeometry, x_g: &[T], part: ColPart, col: &mut [T]) {
    if geo.input.len() == 2 {
        #[cfg(target_arch = "x86_64")]
        // Measured at batch 8 (`calibrate_gemm_convs`, alternated in one binary):
        // the AVX-512 build made the stem and the 3×3 stride-2 layers 3–13%
        // faster, but the 1×1 stride-2 ones 2–11% slower, so those keep the
        // baseline build.
        if super::wide::has_avx512() && geo.kernel_size() > 1 {
            // SAFETY: the CPU has AVX-512 (and what `wide` checks with it).
            return unsafe { im2col_tile_2d_avx512(geo, x_g, part, col) };
        }
        return im2col_tile_2d(geo, x_g, part, col);
    }
    let ColPart { channels, s0, width, ld } = part;
    let nd = geo.input.len();
    let last = nd - 1;
    let in_size = geo.in_size();
    let ksize = geo.kernel_size();
    let (ow, iw) = (geo.output[last], geo.input[last]);
    let (sw, dw, pw) = (geo.strides[last], geo.dilations[last], geo.pads[last] as isize);
    let mut koff: Dims = smallvec![0; nd];
    for (c, channel) in channels.enumerate() {
        let xc = &x_g[channel * in_size..][..in_size];
        for kk in 0..ksize {
            let mut rem = kk;
            for d in (0..nd).rev() {
                koff[d] = rem % geo.kernel[d];
                rem /= geo.kernel[d];
            }
            let row = &mut col[(c * ksize + kk) * ld..][..width];
            let shift = (koff[last] * dw) as isize - pw;
            let mut s = s0;
            while s < s0 + width {
                let ox0 = s % ow;
                let seg_end = (s - ox0 + ow).min(s0 + width);
                let dst = &mut row[s - s0..seg_end - s0];
                // The input row this output row reads, if inside the input.
                let mut outer = s / ow;
                let mut in_row = Some(0usize);
                let mut in_stride = iw;
                for d in (0..last).rev() {
                    let o = outer % geo.output[d];
                    outer /= geo.output[d];
                    let i = (o * geo.strides[d] + koff[d] * geo.dilations[d]) as isize - geo.pads[d] as isize;
                    if i < 0 || i as usize >= geo.input[d] {
                        in_row = None;
                        break;
                    }
                    in_row = in_row.map(|r| r + i as usize * in_stride);
                    in_stride *= geo.input[d];
                }
                match in_row {
                    None => dst.fill(T::zero()),
                    Some(r) => gather_row(&xc[r..r + iw], dst, ox0, sw, shift),
                }
                s = seg_end;
            }
        }
    }
}

/// [`im2col_tile`] for 2-D convolutions: output rows in the outer loop, so the
/// row's coordinates are worked out once for all its (channel, kernel offset)
/// rows of the column matrix, not once for each.
#[inline(always)]
fn im2col_tile_2d<T: Float>(geo: &ConvGeometry, x_g: &[T], part: ColPart, col: &mut [T]) {
    let ColPart { channels, s0, width, ld } = part;
    let [ih, iw] = [geo.input[0], geo.input[1]];
    let ow = geo.output[1];
    let [kh, kw] = [geo.kernel[0], geo.kernel[1]];
    let [sh, sw] = [geo.strides[0], geo.strides[1]];
    let [dh, dw] = [geo.dilations[0], geo.dilations[1]];
    let [ph, pw] = [geo.pads[0] as isize, geo.pads[1] as isize];
    let in_size = ih * iw;
    let ksize = kh * kw;
    let mut s = s0;
    while s < s0 + width {
        let (oy, ox0) = (s / ow, s % ow);
        let seg_end = (s - ox0 + ow).min(s0 + width);
        let segment = s - s0..seg_end - s0;
        for (c, channel) in channels.clone().enumerate() {
            let xc = &x_g[channel * in_size..][..in_size];
            for ky in 0..kh {
                let iy = (oy * sh + ky * dh) as isize - ph;
                let source = (0..ih as isize).contains(&iy).then(|| &xc[iy as usize * iw..][..iw]);
                for kx in 0..kw {
                    let dst = &mut col[(c * ksize + ky * kw + kx) * ld..][segment.clone()];
                    match source {
                        None => dst.fill(T::zero()),
                        Some(src) => gather_row(src, dst, ox0, sw, (kx * dw) as isize - pw),
                    }
                }
            }
        }
        s = seg_end;
    }
}

/// [`im2col_tile_2d`] compiled for AVX-512: its copies and stride-2 gathers
/// run 16 lanes wide, not SSE2's 4 (im2col took a fifth of ResNet-50's stride-2
/// layers' time); see [`im2col_tile`] for where that pays. A function of its own, not a closure through `wide::run`:
/// LLVM does not inline a closure this large into the AVX-512 function.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn im2col_tile_2d_avx512<T: Float>(geo: &ConvGeometry, x_g: &[T], part: ColPart, col: &mut [T]) {
    let ColPart { channels, s0, width, ld } = part;
    im2col_tile_2d(geo, x_g, ColPart { channels, s0, width, ld }, col)
}

/// `dst[j] = src[(ox0 + j)·stride + shift]`, zero where that falls outside `src`.
#[inline(always)]
fn gather_row<T: Float>(src: &[T], dst: &mut [T], ox0: usize, stride: usize, shift: isize) {
    let (lo, hi) = valid_range(src.len(), ox0, dst.len(), stride, shift);
    dst[..lo].fill(T::zero());
    dst[hi..].fill(T::zero());
    if lo < hi {
        let first = ((ox0 + lo) * stride) as isize + shift;
        let first = first as usize;
        let n = hi - lo;
        if stride == 1 {
            dst[lo..hi].copy_from_slice(&src[first..first + n]);
        } else if stride == 2 {
            // Every other element, as pairs so the loads vectorise; the last one
            // alone, since its pair may run past `src`.
            let pairs = src[first..first + 2 * (n - 1)].chunks_exact(2);
            dst[lo..hi - 1].iter_mut().zip(pairs).for_each(|(d, pair)| *d = pair[0]);
            dst[hi - 1] = src[first + 2 * (n - 1)];
        } else {
            for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                *d = src[first + j * stride];
            }
        }
    }
}

/// The `j` in `0..count` for which `(start + j)·stride + shift` lies in `0..len`,
/// as a half-open range.
#[inline]
fn valid_range(len: usize, start: usize, count: usize, stride: usize, shift: isize) -> (usize, usize) {
    let (len, start, count, stride) = (len as isize, start as isize, count as isize, stride as isize);
    // (start + j)·stride + shift >= 0  ⇔  j >= ceil(-shift / stride) - start
    let lo = (-shift).max(0);
    let lo = (lo + stride - 1) / stride - start;
    // (start + j)·stride + shift <= len - 1  ⇔  j <= floor((len - 1 - shift) / stride) - start
    let top = len - 1 - shift;
    let hi = if top < 0 { -start } else { top / stride + 1 - start };
    let lo = lo.clamp(0, count);
    let hi = hi.clamp(lo, count);
    (lo as usize, hi as usize)
}

/// One input channel per group: each output plane is a weighted sum of shifted
/// copies of one input plane, done directly, plane by plane, in parallel.
fn depthwise<T: Float>(geo: &ConvGeometry, x: &[T], w: &[T], epilogue: Epilogue<T>, y: &mut [T]) {
    // 1-D is 2-D with a height of one.
    let two_d = |v: &[usize], one: usize| if v.len() == 2 { [v[0], v[1]] } else { [one, v[0]] };
    let [ih, iw] = two_d(&geo.input, 1);
    let [oh, ow] = two_d(&geo.output, 1);
    let [kh, kw] = two_d(&geo.kernel, 1);
    let [sh, sw] = two_d(&geo.strides, 1);
    let [dh, dw] = two_d(&geo.dilations, 1);
    let [ph, pw] = two_d(&geo.pads, 0);
    let (in_size, out_size, ksize) = (ih * iw, oh * ow, kh * kw);
    let cout_g = geo.cout_g();
    let plane = |p: usize, yp: &mut [T]| {
        let (n, m) = (p / geo.out_channels, p % geo.out_channels);
        let xp = &x[(n * geo.in_channels + m / cout_g) * in_size..][..in_size];
        let wp = &w[m * ksize..][..ksize];
        yp.fill(T::zero());
        for ky in 0..kh {
            for oy in 0..oh {
                let iy = (oy * sh + ky * dh) as isize - ph as isize;
                if iy < 0 || iy as usize >= ih {
                    continue;
                }
                let xrow = &xp[iy as usize * iw..][..iw];
                let yrow = &mut yp[oy * ow..][..ow];
                for kx in 0..kw {
                    let wv = wp[ky * kw + kx];
                    let shift = (kx * dw) as isize - pw as isize;
                    let (lo, hi) = valid_range(iw, 0, ow, sw, shift);
                    if lo >= hi {
                        continue;
                    }
                    let first = (lo * sw) as isize + shift;
                    let first = first as usize;
                    if sw == 1 {
                        let src = &xrow[first..first + (hi - lo)];
                        yrow[lo..hi].iter_mut().zip(src).for_each(|(o, &v)| *o = *o + wv * v);
                    } else {
                        for (j, o) in yrow[lo..hi].iter_mut().enumerate() {
                            *o = *o + wv * xrow[first + j * sw];
                        }
                    }
                }
            }
        }
        epilogue.apply(m, p * out_size, yp);
    };
    let planes = geo.batch * geo.out_channels;
    if team::threads() > 1 && planes > 1 && planes * out_size * ksize >= 1 << 16 {
        team::for_each_piece(y, out_size, |p, yp| plane(p, yp));
    } else {
        y.chunks_mut(out_size).enumerate().for_each(|(p, yp)| plane(p, yp));
    }
}

// ── ConvTranspose ──────────────────────────────────────────────────────────

/// Shapes and window parameters of one ConvTranspose call.
#[derive(Clone, Debug, PartialEq)]
struct TransposeGeometry {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    group: usize,
    input: Vec<usize>,
    kernel: Vec<usize>,
    output: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// Output positions cut from the start of each dim; negative when an explicit
    /// `output_shape` is larger than the full result.
    pads: Vec<isize>,
}

impl TransposeGeometry {
    fn new(attrs: &ConvTransposeAttrs, x: &[usize], w: &[usize]) -> Result<TransposeGeometry> {
        const OP: &str = "ConvTranspose";
        let bad = |why: String| CpuError::invalid(OP, why);
        let c = &attrs.conv;
        if x.len() < 3 || w.len() != x.len() {
            return Err(bad(format!("X {x:?} and W {w:?} must both be [N, C, spatial..] with the same rank")));
        }
        let group = c.group.max(1);
        if w[0] != x[1] || !x[1].is_multiple_of(group) {
            return Err(bad(format!("W {w:?} does not fit X {x:?} with {group} groups")));
        }
        // Output size and pads per spatial dim: shared with smelt-gpu's launcher.
        let SpatialGeometry { strides, dilations, output, pads } = spatial_geometry(attrs, x, w).map_err(bad)?;
        let kernel = w[2..].to_vec();
        Ok(TransposeGeometry {
            batch: x[0],
            in_channels: x[1],
            out_channels: w[1] * group,
            group,
            input: x[2..].to_vec(),
            kernel,
            output,
            strides,
            dilations,
            pads,
        })
    }

    fn out_shape(&self) -> Dims {
        [self.batch, self.out_channels].into_iter().chain(self.output.iter().copied()).collect()
    }
}

fn conv_transpose(
    attrs: &ConvTransposeAttrs,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    scratch: &mut Scratch,
) -> Result<()> {
    const OP: &str = "ConvTranspose";
    let x = required(OP, inputs, 0)?;
    let w = required(OP, inputs, 1)?;
    let bias = optional(inputs, 2);
    let y = first_output(OP, outputs)?;
    let geo = TransposeGeometry::new(attrs, x.shape, w.shape)?;
    expect_shape(OP, "output", y.shape, &geo.out_shape())?;
    expect_dtype(OP, "W", w.dtype, x.dtype)?;
    expect_dtype(OP, "output", y.dtype, x.dtype)?;
    let bias = checked_bias(OP, bias, geo.out_channels, x.dtype)?;
    let act = attrs.conv.activation.as_ref();
    let workers = transpose_workers(&geo);
    let col_len = transpose_col_len(&geo);
    match x.dtype {
        DType::F32 => {
            let buf = scratch.f32s(col_len * workers);
            let bias = bias.map(|b| b.as_slice::<f32>()).transpose()?;
            conv_transpose_float(&geo, workers, x.as_slice()?, w.as_slice()?, bias, act, y.as_mut_slice()?, buf);
        }
        DType::F64 => {
            let buf = scratch.slice::<f64>(col_len * workers);
            let bias = bias.map(|b| b.as_slice::<f64>()).transpose()?;
            conv_transpose_float(&geo, workers, x.as_slice()?, w.as_slice()?, bias, act, y.as_mut_slice()?, buf);
        }
        DType::F16 => {
            let x32 = widen(x.as_slice::<f16>()?);
            let w32 = widen(w.as_slice::<f16>()?);
            let b32 = bias.map(|b| b.as_slice::<f16>().map(widen)).transpose()?;
            let mut y32 = vec![0f32; y.len()];
            let buf = scratch.f32s(col_len * workers);
            conv_transpose_float(&geo, workers, &x32, &w32, b32.as_deref(), act, &mut y32, buf);
            narrow(&y32, y.as_mut_slice()?);
        }
        dtype => return Err(CpuError::UnsupportedDType { op: OP, dtype }),
    }
    Ok(())
}

/// The column matrix of one (image, group): `[M/g · k1·…·kn, input positions]`.
fn transpose_col_len(geo: &TransposeGeometry) -> usize {
    geo.out_channels / geo.group * geo.kernel.iter().product::<usize>() * geo.input.iter().product::<usize>()
}

/// Threads over (image, group) tasks, each with its own column buffer.
fn transpose_workers(geo: &TransposeGeometry) -> usize {
    let tasks = geo.batch * geo.group;
    let work = transpose_col_len(geo) * (geo.in_channels / geo.group) * tasks;
    if work < 1 << 18 {
        1
    } else {
        team::threads().min(tasks).max(1)
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_transpose_float<T: Float>(
    geo: &TransposeGeometry,
    workers: usize,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    act: Option<&UnaryOp>,
    y: &mut [T],
    buf: &mut [T],
) {
    let tasks = geo.batch * geo.group;
    let (cin_g, cout_g) = (geo.in_channels / geo.group, geo.out_channels / geo.group);
    let ksize: usize = geo.kernel.iter().product();
    let (in_size, out_size) = (geo.input.iter().product::<usize>(), geo.output.iter().product::<usize>());
    let rows = cout_g * ksize;
    let y_chunk = cout_g * out_size;
    if y_chunk == 0 || tasks == 0 {
        return;
    }
    let col_len = rows * in_size;
    let gemm_par = if workers > 1 { Parallelism::None } else { parallelism(rows, in_size, cin_g) };
    let run_task = |task: usize, yg: &mut [T], col: &mut [T]| {
        let (n, g) = (task / geo.group, task % geo.group);
        let xg = &x[(n * geo.in_channels + g * cin_g) * in_size..][..cin_g * in_size];
        // W's group block is [C/g, M/g·k] row-major; the product wants its transpose.
        let wg = &w[g * cin_g * rows..][..cin_g * rows];
        let col = &mut col[..col_len];
        gemm(
            rows,
            in_size,
            cin_g,
            wg,
            Layout::row_major(rows).transposed(),
            xg,
            Layout::row_major(in_size),
            col,
            Layout::row_major(in_size),
            T::one(),
            T::zero(),
            gemm_par,
        );
        for (m, ym) in yg.chunks_mut(out_size).enumerate() {
            ym.fill(bias.map_or(T::zero(), |b| b[g * cout_g + m]));
            col2im_channel(geo, &col[m * ksize * in_size..][..ksize * in_size], ym);
            if let Some(act) = act {
                T::activate(ym, act);
            }
        }
    };
    if workers <= 1 {
        let col = &mut buf[..col_len];
        y.chunks_mut(y_chunk).enumerate().for_each(|(t, yg)| run_task(t, yg, col));
    } else {
        let per_worker = tasks.div_ceil(workers);
        team::for_each_piece_pair(y, y_chunk * per_worker, buf, col_len.max(1), |wkr, ys, col| {
            ys.chunks_mut(y_chunk).enumerate().for_each(|(i, yg)| run_task(wkr * per_worker + i, yg, col));
        });
    }
}

/// Adds one output channel's column rows (one per kernel offset, each over the
/// input positions) into the channel's output plane.
fn col2im_channel<T: Float>(geo: &TransposeGeometry, col: &[T], y: &mut [T]) {
    let nd = geo.input.len();
    let last = nd - 1;
    let in_size: usize = geo.input.iter().product();
    let ksize: usize = geo.kernel.iter().product();
    let (iw, ow) = (geo.input[last], geo.output[last]);
    let (sw, dw) = (geo.strides[last], geo.dilations[last]);
    let in_rows = in_size / iw.max(1);
    let mut koff: Dims = smallvec![0; nd];
    for kk in 0..ksize {
        let mut rem = kk;
        for d in (0..nd).rev() {
            koff[d] = rem % geo.kernel[d];
            rem /= geo.kernel[d];
        }
        let row = &col[kk * in_size..][..in_size];
        // Output index along the last dim for input index ix: ix·sw + shift.
        let shift = (koff[last] * dw) as isize - geo.pads[last];
        let (lo, hi) = valid_range(ow, 0, iw, sw, shift);
        if lo >= hi {
            continue;
        }
        for r in 0..in_rows {
            // The output row this input row lands in, if inside the output.
            let mut outer = r;
            let mut out_row = Some(0usize);
            let mut out_stride = ow;
            for d in (0..last).rev() {
                let i = outer % geo.input[d];
                outer /= geo.input[d];
                let o = (i * geo.strides[d] + koff[d] * geo.dilations[d]) as isize - geo.pads[d];
                if o < 0 || o as usize >= geo.output[d] {
                    out_row = None;
                    break;
                }
                out_row = out_row.map(|base| base + o as usize * out_stride);
                out_stride *= geo.output[d];
            }
            let Some(base) = out_row else { continue };
            let src = &row[r * iw..][..iw];
            let dst = &mut y[base..base + ow];
            let first = ((lo * sw) as isize + shift) as usize;
            for (j, &v) in src[lo..hi].iter().enumerate() {
                let o = &mut dst[first + j * sw];
                *o = *o + v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random, run_kernel, run_op, try_run_op};

    fn attrs(group: usize, strides: &[usize], pads: &[usize], dilations: &[usize], auto_pad: AutoPad) -> ConvAttrs {
        ConvAttrs {
            kernel_shape: None,
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dilations.to_vec(),
            group,
            auto_pad,
            activation: None,
        }
    }

    /// Direct N-d convolution on f64, straight from the definition.
    fn naive_conv(geo: &ConvGeometry, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
        let nd = geo.input.len();
        let (cin_g, cout_g) = (geo.cin_g(), geo.cout_g());
        let (in_size, out_size, ksize) = (geo.in_size(), geo.out_size(), geo.kernel_size());
        let unravel = |mut i: usize, dims: &[usize]| {
            let mut idx = vec![0; dims.len()];
            for d in (0..dims.len()).rev() {
                idx[d] = i % dims[d];
                i /= dims[d];
            }
            idx
        };
        let mut y = vec![0.0; geo.batch * geo.out_channels * out_size];
        for n in 0..geo.batch {
            for m in 0..geo.out_channels {
                let g = m / cout_g;
                for o in 0..out_size {
                    let oi = unravel(o, &geo.output);
                    let mut acc = b.map_or(0.0, |b| b[m]);
                    for c in 0..cin_g {
                        for kk in 0..ksize {
                            let ki = unravel(kk, &geo.kernel);
                            let mut flat = 0usize;
                            let mut inside = true;
                            for d in 0..nd {
                                let i =
                                    (oi[d] * geo.strides[d] + ki[d] * geo.dilations[d]) as isize - geo.pads[d] as isize;
                                if i < 0 || i as usize >= geo.input[d] {
                                    inside = false;
                                }
                                flat = flat * geo.input[d] + i.max(0) as usize;
                            }
                            if inside {
                                let xv = x[(n * geo.in_channels + g * cin_g + c) * in_size + flat];
                                acc += xv * w[(m * cin_g + c) * ksize + kk];
                            }
                        }
                    }
                    y[(n * geo.out_channels + m) * out_size + o] = acc;
                }
            }
        }
        y
    }

    fn check_conv(attrs: &ConvAttrs, x_shape: &[usize], w_shape: &[usize], with_bias: bool, seed: u64) {
        let x = random(DType::F32, x_shape, seed);
        let w = random(DType::F32, w_shape, seed + 1);
        let b = with_bias.then(|| random(DType::F32, &[w_shape[0]], seed + 2));
        let geo = ConvGeometry::new(attrs, None, x_shape, w_shape).unwrap();
        let bv = b.as_ref().map(|b| b.to_f64_vec());
        let mut want = naive_conv(&geo, &x.to_f64_vec(), &w.to_f64_vec(), bv.as_deref());
        if attrs.activation.is_some() {
            want.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let shape = geo.out_shape();
        let op = Op::Conv(attrs.clone());
        let got = run_op(&op, &[Some(&x), Some(&w), b.as_ref()], &[(DType::F32, &shape)]).remove(0);
        assert_close(&got, &want, 1e-4);
        let w_arc = Arc::new(w.clone());
        let b_arc = b.clone().map(Arc::new);
        let kernel = crate::ops::linalg::prepare(&op, &[None, Some(&w_arc), b_arc.as_ref()]).expect("prepared Conv");
        let prepared = run_kernel(kernel.as_ref(), &[Some(&x), Some(&w), b.as_ref()], &[(DType::F32, &shape)]);
        // The prepared kernel may pick Winograd for 3×3 stride-1 layers, which
        // rounds differently from im2col + GEMM: compare both with the reference.
        assert_close(&prepared[0], &want, 1e-4);
    }

    /// A prepared Conv forced to one algorithm.
    fn kernel_with_policy(attrs: &ConvAttrs, w: &Tensor, b: Option<&Tensor>, policy: WinogradPolicy) -> PreparedConv {
        let w_arc = Arc::new(w.clone());
        let (rows, cols) = (w.shape()[0], w.shape()[1..].iter().product::<usize>());
        let packed = PackedLhs::new(rows, cols, w.as_slice::<f32>().unwrap(), Layout::row_major(cols)).map(|p| vec![p]);
        PreparedConv {
            attrs: attrs.clone(),
            window: ConvWindow::new(attrs, w.rank() - 2).unwrap(),
            weight: w_arc,
            packed,
            bias: b.cloned().map(Arc::new),
            winograd: WinogradWeights::eligible(attrs, w.shape()).then(WinogradWeights::default),
            policy,
            #[cfg(target_arch = "x86_64")]
            direct: None,
        }
    }

    fn run_prepared(kernel: &PreparedConv, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let shape = ConvGeometry::new(&kernel.attrs, None, x.shape(), w.shape()).unwrap().out_shape();
        run_kernel(kernel, &[Some(x), Some(w), b], &[(DType::F32, &shape)]).remove(0)
    }

    #[test]
    fn winograd_variants_match_direct_convolution() {
        use AutoPad::*;
        let mut relu = attrs(1, &[1, 1], &[1, 1, 1, 1], &[], NotSet);
        relu.activation = Some(UnaryOp::Relu);
        let cases: &[(ConvAttrs, &[usize], &[usize])] = &[
            (attrs(1, &[], &[1, 1, 1, 1], &[], NotSet), &[2, 5, 9, 11], &[7, 5, 3, 3]),
            (attrs(1, &[], &[], &[], NotSet), &[1, 3, 8, 13], &[4, 3, 3, 3]),
            (attrs(1, &[1, 1], &[2, 0, 1, 2], &[1, 1], NotSet), &[3, 6, 7, 5], &[9, 6, 3, 3]),
            (attrs(1, &[], &[], &[], SameUpper), &[1, 16, 14, 14], &[33, 16, 3, 3]),
            (relu, &[2, 8, 6, 6], &[8, 8, 3, 3]),
        ];
        for (seed, (a, xs, ws)) in cases.iter().enumerate() {
            let seed = 100 + 3 * seed as u64;
            let x = random(DType::F32, xs, seed);
            let w = random(DType::F32, ws, seed + 1);
            let b = random(DType::F32, &[ws[0]], seed + 2);
            let geo = ConvGeometry::new(a, None, xs, ws).unwrap();
            let mut want = naive_conv(&geo, &x.to_f64_vec(), &w.to_f64_vec(), Some(&b.to_f64_vec()));
            if a.activation.is_some() {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            assert!(WinogradWeights::eligible(a, ws));
            for tile in [WinogradTile::F2, WinogradTile::F4] {
                let kernel = kernel_with_policy(a, &w, Some(&b), WinogradPolicy::Fixed(Some(tile)));
                assert_close(&run_prepared(&kernel, &x, &w, Some(&b)), &want, 1e-4);
            }
        }
    }

    /// The direct kernel against the f64 reference: horizontal stride 2 with and
    /// without padding (symmetric, one-sided, automatic), kernel sizes 1, 3, 7
    /// and uneven ones, vertical strides 1 to 3, output widths that split into
    /// uneven tiles; pointwise layers on small maps; output channels that end
    /// inside a panel, every epilogue (bias, residual, clamp, an activation
    /// applied after), on 1 and 3 threads.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn direct_kernel_matches_reference() {
        use super::super::conv_direct_avx512 as kernel;
        use AutoPad::*;
        if !kernel::available() {
            return;
        }
        let act = |mut a: ConvAttrs, op: UnaryOp| {
            a.activation = Some(op);
            a
        };
        let clip = UnaryOp::Clip { min: -0.5, max: 0.75 };
        let cases: &[(ConvAttrs, &[usize], &[usize], bool)] = &[
            (act(attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet), UnaryOp::Relu), &[2, 5, 15, 17], &[40, 5, 3, 3], false),
            (attrs(1, &[2, 2], &[], &[], NotSet), &[1, 16, 14, 14], &[32, 16, 1, 1], true),
            (act(attrs(1, &[2, 2], &[3, 3, 3, 3], &[], NotSet), UnaryOp::Relu), &[1, 3, 60, 61], &[20, 3, 7, 7], false),
            (act(attrs(1, &[1, 2], &[0, 1, 2, 0], &[], NotSet), clip.clone()), &[2, 2, 11, 13], &[3, 2, 3, 2], true),
            (attrs(1, &[3, 2], &[], &[], Valid), &[1, 2, 10, 9], &[2, 2, 3, 2], false),
            (act(attrs(1, &[2, 2], &[], &[], SameUpper), UnaryOp::Sigmoid), &[1, 2, 7, 8], &[3, 2, 3, 4], true),
            (act(attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet), clip.clone()), &[1, 4, 9, 64], &[65, 4, 3, 3], true),
            (attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet), &[3, 24, 13, 13], &[20, 24, 3, 3], false),
            // Pointwise on small maps: tiles run on across rows.
            (act(attrs(1, &[], &[], &[], NotSet), UnaryOp::Relu), &[2, 24, 7, 7], &[40, 24, 1, 1], true),
            (act(attrs(1, &[1, 1], &[], &[], NotSet), clip.clone()), &[1, 16, 8, 8], &[33, 16, 1, 1], false),
            (act(attrs(1, &[], &[], &[], NotSet), UnaryOp::Sigmoid), &[3, 8, 5, 3], &[20, 8, 1, 1], false),
        ];
        // Other stride-1 layers, and pointwise ones on larger maps, keep the
        // GEMM paths.
        let gemm_cases: &[(ConvAttrs, &[usize], &[usize])] = &[
            (attrs(1, &[], &[], &[], NotSet), &[1, 16, 9, 9], &[32, 16, 1, 1]),
            (attrs(1, &[], &[1, 1, 1, 1], &[], NotSet), &[1, 16, 7, 7], &[32, 16, 3, 3]),
            (attrs(1, &[], &[1, 1, 1, 1], &[], NotSet), &[1, 16, 7, 7], &[32, 16, 1, 1]),
            (attrs(2, &[2, 2], &[], &[], NotSet), &[1, 16, 7, 7], &[32, 8, 1, 1]),
        ];
        for (a, xs, ws) in gemm_cases {
            let geo = ConvGeometry::new(a, None, xs, ws).unwrap();
            let slot = direct::DirectSlot::new(a, &random(DType::F32, ws, 1));
            assert!(slot.is_none_or(|slot| slot.shape(&geo).is_none()), "{a:?} {xs:?} {ws:?}");
        }
        for threads in [1, 3] {
            let pool = crate::team::Team::new(threads, "test").unwrap();
            for (seed, (a, xs, ws, with_residual)) in cases.iter().enumerate() {
                let seed = 700 + 5 * seed as u64;
                let x = random(DType::F32, xs, seed);
                let w = random(DType::F32, ws, seed + 1);
                let b = random(DType::F32, &[ws[0]], seed + 2);
                let geo = ConvGeometry::new(a, None, xs, ws).unwrap();
                let z = with_residual.then(|| random(DType::F32, &geo.out_shape(), seed + 3));
                let mut want = naive_conv(&geo, &x.to_f64_vec(), &w.to_f64_vec(), Some(&b.to_f64_vec()));
                if let Some(z) = &z {
                    want.iter_mut().zip(z.to_f64_vec()).for_each(|(v, r)| *v += r);
                }
                if let Some(op) = &a.activation {
                    want.iter_mut().for_each(|v| *v = super::super::activation::apply_f64(op, *v));
                }
                let mut kernel = kernel_with_policy(a, &w, None, WinogradPolicy::Fixed(None));
                kernel.direct = direct::DirectSlot::new(a, &w);
                let slot = kernel.direct.as_ref().expect("the kernel's attributes");
                assert!(slot.shape(&geo).is_some(), "{a:?} {xs:?}");
                let mut y = Tensor::zeros(DType::F32, &geo.out_shape());
                let inputs = [Some(x.view()), Some(w.view()), Some(b.view()), z.as_ref().map(|z| z.view())];
                pool.run(|| kernel.run(&inputs, &mut [y.view_mut()], &mut Scratch::new())).unwrap();
                assert_close(&y, &want, 1e-4);
            }
        }
    }

    /// A fused residual `Z` is added after the bias and before the activation, on
    /// every path: im2col + GEMM, 1×1, depthwise, both Winograd variants, the
    /// unprepared reference, f64 and f16.
    #[test]
    fn residual_is_added_before_the_activation_on_every_path() {
        use AutoPad::*;
        let relu = |mut a: ConvAttrs| {
            a.activation = Some(UnaryOp::Relu);
            a
        };
        let cases: &[(ConvAttrs, &[usize], &[usize])] = &[
            (relu(attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet)), &[2, 5, 9, 11], &[7, 5, 3, 3]),
            (relu(attrs(1, &[], &[], &[], NotSet)), &[1, 16, 6, 5], &[24, 16, 1, 1]),
            (relu(attrs(6, &[], &[1, 1, 1, 1], &[], NotSet)), &[2, 6, 7, 7], &[6, 1, 3, 3]),
            (relu(attrs(1, &[], &[1, 1, 1, 1], &[], NotSet)), &[2, 8, 6, 6], &[8, 8, 3, 3]),
            (attrs(1, &[], &[], &[], NotSet), &[1, 4, 5, 5], &[3, 4, 1, 1]),
            // Flat plans (see `flat_plans_only_where_panels_are_wasted`): 1×1
            // stride 2 onto 7×7, and a 3×3 stride-2 layer whose tiles end inside
            // images.
            (relu(attrs(1, &[2, 2], &[], &[], NotSet)), &[3, 24, 13, 13], &[20, 24, 1, 1]),
            (relu(attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet)), &[3, 512, 14, 14], &[16, 512, 3, 3]),
        ];
        for (seed, (a, xs, ws)) in cases.iter().enumerate() {
            let seed = 300 + 4 * seed as u64;
            let x = random(DType::F32, xs, seed);
            let w = random(DType::F32, ws, seed + 1);
            let b = random(DType::F32, &[ws[0]], seed + 2);
            let geo = ConvGeometry::new(a, None, xs, ws).unwrap();
            let shape = geo.out_shape();
            let z = random(DType::F32, &shape, seed + 3);
            let mut want = naive_conv(&geo, &x.to_f64_vec(), &w.to_f64_vec(), Some(&b.to_f64_vec()));
            want.iter_mut().zip(z.to_f64_vec()).for_each(|(v, r)| *v += r);
            if a.activation.is_some() {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let op = Op::Conv(a.clone());
            let inputs = [Some(&x), Some(&w), Some(&b), Some(&z)];
            assert_close(&run_op(&op, &inputs, &[(DType::F32, &shape)])[0], &want, 1e-4);
            let policies: &[WinogradPolicy] = if WinogradWeights::eligible(a, ws) {
                &[
                    WinogradPolicy::Fixed(None),
                    WinogradPolicy::Fixed(Some(WinogradTile::F2)),
                    WinogradPolicy::Fixed(Some(WinogradTile::F4)),
                ]
            } else {
                &[WinogradPolicy::CostModel]
            };
            for &policy in policies {
                let kernel = kernel_with_policy(a, &w, Some(&b), policy);
                let got = run_kernel(&kernel, &inputs, &[(DType::F32, &shape)]);
                assert_close(&got[0], &want, 1e-4);
            }
            for dtype in [DType::F64, DType::F16] {
                let cast = |t: &Tensor| crate::ops::testing::from_f64(dtype, t.shape(), &t.to_f64_vec());
                let (x, w, b, z) = (cast(&x), cast(&w), cast(&b), cast(&z));
                let got = run_op(&op, &[Some(&x), Some(&w), Some(&b), Some(&z)], &[(dtype, &shape)]);
                let tol = if dtype == DType::F16 { 2e-2 } else { 1e-4 };
                assert_close(&got[0], &want, tol);
            }
        }
        // A residual of another shape is refused, naming Z.
        let a = attrs(1, &[], &[], &[], NotSet);
        let (x, w) = (random(DType::F32, &[1, 4, 5, 5], 1), random(DType::F32, &[3, 4, 1, 1], 2));
        let z = random(DType::F32, &[1, 3, 5, 4], 3);
        let e = try_run_op(&Op::Conv(a), &[Some(&x), Some(&w), None, Some(&z)], &[(DType::F32, &[1, 3, 5, 5])]);
        assert!(e.unwrap_err().to_string().contains("Z"));
    }

    #[test]
    fn winograd_only_for_unit_stride_3x3() {
        use AutoPad::*;
        assert!(WinogradWeights::eligible(&attrs(1, &[1, 1], &[1, 1, 1, 1], &[1, 1], NotSet), &[8, 8, 3, 3]));
        assert!(!WinogradWeights::eligible(&attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet), &[8, 8, 3, 3]));
        assert!(!WinogradWeights::eligible(&attrs(1, &[], &[], &[2, 2], NotSet), &[8, 8, 3, 3]));
        assert!(!WinogradWeights::eligible(&attrs(2, &[], &[], &[], NotSet), &[8, 4, 3, 3]));
        assert!(!WinogradWeights::eligible(&attrs(1, &[], &[], &[], NotSet), &[8, 8, 5, 5]));
        assert!(!WinogradWeights::eligible(&attrs(1, &[], &[], &[], NotSet), &[8, 8, 3, 3, 3]));
    }

    /// Times im2col + GEMM, F(2,3) and F(4,3) on ResNet-50's 3×3 layers and prints
    /// what the cost model picks: the measurements the cost weights come from.
    /// `cargo test --release -p smelt-cpu calibrate_winograd -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn calibrate_winograd() {
        let pool = crate::team::Team::new(2, "test").unwrap();
        let a = attrs(1, &[1, 1], &[1, 1, 1, 1], &[], AutoPad::NotSet);
        for batch in [1, 8] {
            for (c, hw) in [(64, 56), (128, 28), (256, 14), (512, 7)] {
                let x = random(DType::F32, &[batch, c, hw, hw], 1);
                let w = random(DType::F32, &[c, c, 3, 3], 2);
                let mut times = Vec::new();
                for policy in [None, Some(WinogradTile::F2), Some(WinogradTile::F4)] {
                    let kernel = kernel_with_policy(&a, &w, None, WinogradPolicy::Fixed(policy));
                    let run = || run_prepared(&kernel, &x, &w, None);
                    pool.run(run);
                    let reps = 5;
                    let mut best = f64::MAX;
                    for _ in 0..reps {
                        let t = std::time::Instant::now();
                        pool.run(run);
                        best = best.min(t.elapsed().as_secs_f64() * 1e3);
                    }
                    times.push(best);
                }
                let geo = ConvGeometry::new(&a, None, x.shape(), w.shape()).unwrap();
                println!(
                    "b{batch} C=K={c} {hw}x{hw}: direct {:.2} ms, F2 {:.2} ms, F4 {:.2} ms; model picks {:?}",
                    times[0],
                    times[1],
                    times[2],
                    winograd_tile_for(&geo)
                );
            }
        }
    }

    /// ResNet-50's convolutions that do not go to Winograd (the stem, the
    /// stride-2 3×3 and 1×1 layers, and 1×1 layers on 7×7 maps), in the model's
    /// thread pool of 2: best of 5, in ms and GFLOP/s.
    /// `cargo test --release -p smelt-cpu calibrate_gemm_convs -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn calibrate_gemm_convs() {
        let pool = crate::team::Team::new(2, "test").unwrap();
        // (label, C, K, kernel, stride, pad, input side)
        let layers = [
            ("stem 7x7/2", 3, 64, 7, 2, 3, 224),
            ("3x3/2 C128", 128, 128, 3, 2, 1, 56),
            ("3x3/2 C256", 256, 256, 3, 2, 1, 28),
            ("3x3/2 C512", 512, 512, 3, 2, 1, 14),
            ("1x1/2 256>512", 256, 512, 1, 2, 0, 56),
            ("1x1/2 512>1024", 512, 1024, 1, 2, 0, 28),
            ("1x1/2 1024>2048", 1024, 2048, 1, 2, 0, 14),
            ("1x1 7x7 512>2048", 512, 2048, 1, 1, 0, 7),
            ("1x1 7x7 2048>512", 2048, 512, 1, 1, 0, 7),
            ("1x1 14x14 256>1024", 256, 1024, 1, 1, 0, 14),
            ("1x1 14x14 1024>256", 1024, 256, 1, 1, 0, 14),
            ("1x1 56x56 64>256", 64, 256, 1, 1, 0, 56),
            ("1x1 56x56 256>64", 256, 64, 1, 1, 0, 56),
            ("1x1 28x28 128>512", 128, 512, 1, 1, 0, 28),
        ];
        for batch in [1, 8] {
            for (label, c, k, r, stride, pad, side) in layers {
                let mut a = attrs(1, &[stride, stride], &[pad, pad, pad, pad], &[], AutoPad::NotSet);
                a.activation = Some(UnaryOp::Relu);
                let x = random(DType::F32, &[batch, c, side, side], 1);
                let w = random(DType::F32, &[k, c, r, r], 2);
                let b = random(DType::F32, &[k], 3);
                let mut kernel = kernel_with_policy(&a, &w, Some(&b), WinogradPolicy::Fixed(None));
                #[cfg(target_arch = "x86_64")]
                {
                    kernel.direct = direct::DirectSlot::new(&a, &w);
                }
                let geo = ConvGeometry::new(&a, None, x.shape(), w.shape()).unwrap();
                // The output and scratch are reused, as in a model: fresh ones
                // would time their page faults.
                let mut y = Tensor::zeros(DType::F32, &geo.out_shape());
                let mut scratch = Scratch::new();
                let mut run = || {
                    let inputs = [Some(x.view()), Some(w.view()), Some(b.view())];
                    kernel.run(&inputs, &mut [y.view_mut()], &mut scratch).unwrap();
                };
                pool.run(&mut run);
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    pool.run(&mut run);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let flops = 2.0 * (batch * k * c * r * r * geo.out_size()) as f64;
                println!("b{batch} {label}: {:.3} ms, {:.0} GFLOP/s", best * 1e3, flops / best / 1e9);
            }
        }
    }

    #[test]
    fn flat_plans_only_where_panels_are_wasted() {
        use AutoPad::*;
        let plan = |a: &ConvAttrs, x: &[usize], w: &[usize]| TilePlan::new(&ConvGeometry::new(a, None, x, w).unwrap());
        let one = attrs(1, &[], &[], &[], NotSet);
        let (one_s2, three_s2) = (attrs(1, &[2, 2], &[], &[], NotSet), attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet));
        assert!(plan(&one_s2, &[3, 24, 13, 13], &[20, 24, 1, 1]).flat);
        let big = plan(&three_s2, &[3, 512, 14, 14], &[16, 512, 3, 3]);
        assert!(big.flat && big.tiles > 1 && big.tile_range(1).0 % 49 != 0, "{big:?}");
        // One image, 14×14 maps (12.5% padding), pointwise layers (read in
        // place), groups and depthwise keep their plans.
        assert!(!plan(&three_s2, &[1, 512, 14, 14], &[16, 512, 3, 3]).flat);
        assert!(!plan(&three_s2, &[8, 64, 28, 28], &[16, 64, 3, 3]).flat);
        assert!(!plan(&one, &[3, 24, 7, 7], &[20, 24, 1, 1]).flat);
        assert!(!plan(&attrs(2, &[2, 2], &[], &[], NotSet), &[3, 24, 13, 13], &[20, 12, 1, 1]).flat);
        assert!(!plan(&attrs(24, &[], &[1, 1, 1, 1], &[], NotSet), &[3, 24, 7, 7], &[24, 1, 3, 3]).flat);
    }

    #[test]
    fn unbalanced_plans_split_the_widest_tiles() {
        let one = attrs(1, &[], &[], &[], AutoPad::NotSet);
        let plan = |x: &[usize], w: &[usize]| TilePlan::new(&ConvGeometry::new(&one, None, x, w).unwrap());
        // 14×14: 7 panels deal unevenly to 2 threads (3 and 4), so the GEMM
        // splits instead, over all 196 positions at once: each tile reads all
        // 1 MiB of weights.
        let pool = crate::team::Team::new(2, "test").unwrap();
        pool.run(|| {
            let p = plan(&[1, 1024, 14, 14], &[256, 1024, 1, 1]);
            assert_eq!((p.tiles, p.workers), (1, 1), "{p:?}");
            assert!(matches!(p.gemm_par, Parallelism::Rayon(2)), "{p:?}");
            // 8 images deal evenly: tasks, as before.
            let p = plan(&[8, 1024, 14, 14], &[256, 1024, 1, 1]);
            assert_eq!(p.workers, 2, "{p:?}");
        });
    }

    #[test]
    fn conv_2d_variants() {
        use AutoPad::*;
        let cases: &[(ConvAttrs, &[usize], &[usize])] = &[
            (attrs(1, &[], &[], &[], NotSet), &[1, 3, 7, 8], &[4, 3, 3, 3]),
            (attrs(1, &[1, 1], &[1, 1, 1, 1], &[], NotSet), &[2, 3, 9, 9], &[5, 3, 3, 3]),
            (attrs(1, &[2, 2], &[3, 3, 3, 3], &[], NotSet), &[1, 3, 20, 22], &[8, 3, 7, 7]),
            (attrs(1, &[2, 1], &[0, 1, 2, 0], &[2, 3], NotSet), &[2, 2, 11, 13], &[3, 2, 3, 2]),
            (attrs(2, &[1, 2], &[1, 0, 1, 2], &[], NotSet), &[2, 4, 9, 10], &[6, 2, 3, 3]),
            (attrs(1, &[2, 2], &[], &[], SameUpper), &[1, 2, 7, 8], &[3, 2, 3, 4]),
            (attrs(1, &[2, 3], &[], &[1, 2], SameLower), &[1, 2, 9, 8], &[3, 2, 2, 3]),
            (attrs(1, &[3, 2], &[], &[], Valid), &[1, 2, 10, 9], &[2, 2, 3, 2]),
            // pointwise, and 1x1 with stride (which needs im2col)
            (attrs(1, &[], &[], &[], NotSet), &[2, 16, 7, 9], &[8, 16, 1, 1]),
            (attrs(2, &[], &[], &[], NotSet), &[1, 8, 5, 5], &[6, 4, 1, 1]),
            (attrs(1, &[2, 2], &[], &[], NotSet), &[1, 8, 7, 7], &[4, 8, 1, 1]),
            // depthwise, with and without channel multiplier
            (attrs(6, &[1, 1], &[1, 1, 1, 1], &[], NotSet), &[2, 6, 10, 11], &[6, 1, 3, 3]),
            (attrs(4, &[2, 2], &[2, 1, 0, 2], &[2, 1], NotSet), &[1, 4, 12, 9], &[8, 1, 3, 3]),
            // a larger case that takes the tiled, multi-task path
            (attrs(1, &[1, 1], &[1, 1, 1, 1], &[], NotSet), &[2, 32, 40, 40], &[16, 32, 3, 3]),
            (attrs(32, &[2, 2], &[1, 1, 1, 1], &[], NotSet), &[1, 32, 56, 56], &[32, 1, 3, 3]),
            // few output positions: one tile, GEMM and im2col split over threads
            (attrs(1, &[1, 1], &[1, 1, 1, 1], &[], NotSet), &[1, 64, 7, 7], &[80, 64, 3, 3]),
            (attrs(1, &[1, 1], &[1, 1, 1, 1], &[], NotSet), &[1, 64, 14, 14], &[72, 64, 3, 3]),
        ];
        for (i, (a, xs, ws)) in cases.iter().enumerate() {
            check_conv(a, xs, ws, i % 2 == 0, 100 + i as u64);
        }
    }

    #[test]
    fn conv_1d_3d_and_activation() {
        check_conv(&attrs(1, &[2], &[1, 2], &[2], AutoPad::NotSet), &[2, 3, 17], &[4, 3, 3], true, 1);
        check_conv(&attrs(3, &[1], &[1, 1], &[], AutoPad::NotSet), &[1, 3, 12], &[3, 1, 3], false, 2);
        check_conv(
            &attrs(1, &[1, 2, 1], &[1, 0, 1, 1, 1, 0], &[1, 1, 2], AutoPad::NotSet),
            &[1, 2, 5, 6, 7],
            &[3, 2, 2, 3, 2],
            true,
            3,
        );
        check_conv(&attrs(2, &[], &[], &[], AutoPad::SameUpper), &[2, 4, 4, 5, 3], &[4, 2, 3, 3, 3], false, 4);
        let mut relu = attrs(1, &[1, 1], &[1, 1, 1, 1], &[], AutoPad::NotSet);
        relu.activation = Some(UnaryOp::Relu);
        check_conv(&relu, &[1, 4, 8, 8], &[6, 4, 3, 3], true, 5);
        check_conv(&relu, &[1, 4, 8, 8], &[6, 4, 1, 1], true, 6);
        let mut dw_relu = attrs(4, &[1, 1], &[1, 1, 1, 1], &[], AutoPad::NotSet);
        dw_relu.activation = Some(UnaryOp::Relu);
        check_conv(&dw_relu, &[1, 4, 8, 8], &[4, 1, 3, 3], true, 7);
    }

    #[test]
    fn conv_f64_and_f16() {
        let a = attrs(2, &[1, 2], &[1, 1, 0, 1], &[], AutoPad::NotSet);
        for dtype in [DType::F64, DType::F16] {
            let x = random(dtype, &[1, 4, 6, 7], 1);
            let w = random(dtype, &[4, 2, 3, 2], 2);
            let geo = ConvGeometry::new(&a, None, x.shape(), w.shape()).unwrap();
            let want = naive_conv(&geo, &x.to_f64_vec(), &w.to_f64_vec(), None);
            let got = run_op(&Op::Conv(a.clone()), &[Some(&x), Some(&w)], &[(dtype, &geo.out_shape())]).remove(0);
            assert_close(&got, &want, if dtype == DType::F16 { 1e-2 } else { 1e-12 });
        }
    }

    #[test]
    fn conv_rejects_mismatches() {
        let x = random(DType::F32, &[1, 3, 5, 5], 1);
        let w = random(DType::F32, &[4, 2, 3, 3], 2);
        let op = Op::Conv(attrs(1, &[], &[], &[], AutoPad::NotSet));
        assert!(try_run_op(&op, &[Some(&x), Some(&w)], &[(DType::F32, &[1, 4, 3, 3])]).is_err());
        let w = random(DType::F32, &[4, 3, 3, 3], 2);
        assert!(try_run_op(&op, &[Some(&x), Some(&w)], &[(DType::F32, &[1, 4, 4, 4])]).is_err());
        let w = random(DType::F32, &[4, 3, 7, 7], 2);
        assert!(try_run_op(&op, &[Some(&x), Some(&w)], &[(DType::F32, &[1, 4, 1, 1])]).is_err());
    }

    #[test]
    fn conv_onnx_example() {
        // ONNX's Conv example: 5x5 ramp, 3x3 ones kernel, pads 1.
        let x = Tensor::from_vec(&[1, 1, 5, 5], (0..25).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_vec(&[1, 1, 3, 3], vec![1f32; 9]).unwrap();
        let op = Op::Conv(attrs(1, &[], &[1, 1, 1, 1], &[], AutoPad::NotSet));
        let got = run_op(&op, &[Some(&x), Some(&w)], &[(DType::F32, &[1, 1, 5, 5])]).remove(0);
        let want = [
            12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93., 144., 153., 162., 111.,
            72., 111., 117., 123., 84.,
        ];
        assert_close(&got, &want, 0.0);
    }

    /// ConvTranspose by scattering every input element through the kernel.
    fn naive_conv_transpose(geo: &TransposeGeometry, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
        let nd = geo.input.len();
        let (cin_g, cout_g) = (geo.in_channels / geo.group, geo.out_channels / geo.group);
        let in_size: usize = geo.input.iter().product();
        let out_size: usize = geo.output.iter().product();
        let ksize: usize = geo.kernel.iter().product();
        let unravel = |mut i: usize, dims: &[usize]| {
            let mut idx = vec![0; dims.len()];
            for d in (0..dims.len()).rev() {
                idx[d] = i % dims[d];
                i /= dims[d];
            }
            idx
        };
        let mut y = vec![0.0; geo.batch * geo.out_channels * out_size];
        for n in 0..geo.batch {
            for m in 0..geo.out_channels {
                for o in 0..out_size {
                    y[(n * geo.out_channels + m) * out_size + o] = b.map_or(0.0, |b| b[m]);
                }
            }
            for c in 0..geo.in_channels {
                let g = c / cin_g;
                for i in 0..in_size {
                    let ii = unravel(i, &geo.input);
                    let xv = x[(n * geo.in_channels + c) * in_size + i];
                    for mm in 0..cout_g {
                        let m = g * cout_g + mm;
                        for kk in 0..ksize {
                            let ki = unravel(kk, &geo.kernel);
                            let mut flat = 0usize;
                            let mut inside = true;
                            for d in 0..nd {
                                let o = (ii[d] * geo.strides[d] + ki[d] * geo.dilations[d]) as isize - geo.pads[d];
                                if o < 0 || o as usize >= geo.output[d] {
                                    inside = false;
                                }
                                flat = flat * geo.output[d] + o.max(0) as usize;
                            }
                            if inside {
                                y[(n * geo.out_channels + m) * out_size + flat] +=
                                    xv * w[((c * cout_g) + mm) * ksize + kk];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn transpose_attrs(
        conv: ConvAttrs,
        output_padding: &[usize],
        output_shape: Option<&[usize]>,
    ) -> ConvTransposeAttrs {
        ConvTransposeAttrs {
            conv,
            output_padding: output_padding.to_vec(),
            output_shape: output_shape.map(|s| s.to_vec()),
        }
    }

    fn check_conv_transpose(a: &ConvTransposeAttrs, x_shape: &[usize], w_shape: &[usize], with_bias: bool, seed: u64) {
        let x = random(DType::F32, x_shape, seed);
        let w = random(DType::F32, w_shape, seed + 1);
        let b = with_bias.then(|| random(DType::F32, &[w_shape[1] * a.conv.group], seed + 2));
        let geo = TransposeGeometry::new(a, x_shape, w_shape).unwrap();
        let bv = b.as_ref().map(|b| b.to_f64_vec());
        let want = naive_conv_transpose(&geo, &x.to_f64_vec(), &w.to_f64_vec(), bv.as_deref());
        let got =
            run_op(&Op::ConvTranspose(a.clone()), &[Some(&x), Some(&w), b.as_ref()], &[(DType::F32, &geo.out_shape())]);
        assert_close(&got[0], &want, 1e-4);
    }

    #[test]
    fn conv_transpose_variants() {
        use AutoPad::*;
        let t = transpose_attrs;
        check_conv_transpose(&t(attrs(1, &[], &[], &[], NotSet), &[], None), &[1, 1, 3, 3], &[1, 2, 3, 3], false, 1);
        check_conv_transpose(
            &t(attrs(1, &[3, 2], &[1, 2, 1, 2], &[], NotSet), &[], None),
            &[1, 1, 3, 3],
            &[1, 2, 3, 3],
            true,
            2,
        );
        check_conv_transpose(
            &t(attrs(1, &[3, 2], &[], &[], NotSet), &[1, 1], None),
            &[2, 2, 3, 4],
            &[2, 3, 3, 3],
            true,
            3,
        );
        check_conv_transpose(
            &t(attrs(1, &[3, 2], &[], &[], NotSet), &[], Some(&[10, 8])),
            &[1, 1, 3, 3],
            &[1, 2, 3, 3],
            false,
            4,
        );
        check_conv_transpose(
            &t(attrs(1, &[2, 2], &[], &[], SameUpper), &[], None),
            &[1, 1, 3, 3],
            &[1, 2, 3, 3],
            false,
            5,
        );
        check_conv_transpose(
            &t(attrs(1, &[2, 2], &[], &[], SameLower), &[], None),
            &[1, 2, 3, 4],
            &[2, 2, 3, 3],
            false,
            6,
        );
        check_conv_transpose(
            &t(attrs(2, &[2, 1], &[1, 0, 0, 1], &[2, 2], NotSet), &[1, 0], None),
            &[2, 4, 4, 3],
            &[4, 3, 2, 3],
            true,
            7,
        );
        check_conv_transpose(&t(attrs(1, &[2], &[1, 1], &[], NotSet), &[1], None), &[1, 3, 5], &[3, 2, 3], true, 8);
        check_conv_transpose(
            &t(attrs(1, &[1, 2, 2], &[], &[], NotSet), &[], None),
            &[1, 2, 3, 4, 5],
            &[2, 2, 3, 3, 3],
            false,
            9,
        );
        check_conv_transpose(
            &t(attrs(1, &[2, 2], &[1, 1, 1, 1], &[], NotSet), &[], None),
            &[4, 16, 12, 12],
            &[16, 8, 4, 4],
            true,
            10,
        );
    }

    #[test]
    fn conv_transpose_onnx_autopad_same() {
        // ONNX's test_convtranspose_autopad_same: SAME_UPPER crops the end.
        let x = Tensor::from_vec(&[1, 1, 3, 3], (0..9).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_vec(&[1, 2, 3, 3], vec![1f32; 18]).unwrap();
        let a = transpose_attrs(attrs(1, &[2, 2], &[], &[], AutoPad::SameUpper), &[], None);
        let got = run_op(&Op::ConvTranspose(a), &[Some(&x), Some(&w)], &[(DType::F32, &[1, 2, 6, 6])]).remove(0);
        let plane = [
            0., 0., 1., 1., 3., 2., 0., 0., 1., 1., 3., 2., 3., 3., 8., 5., 12., 7., 3., 3., 7., 4., 9., 5., 9., 9.,
            20., 11., 24., 13., 6., 6., 13., 7., 15., 8.,
        ];
        let want: Vec<f64> = plane.iter().chain(plane.iter()).copied().collect();
        assert_close(&got, &want, 0.0);
    }
}
