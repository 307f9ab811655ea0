//! Resize (kernels/resize.wgsl): nearest (every `nearest_mode`), linear and
//! cubic (`cubic_coeff_a`, `exclude_outside`, antialias), every coordinate
//! transform, scales or sizes, `axes`, `keep_aspect_ratio_policy` and
//! tf_crop_and_resize's `extrapolation_value`, over up to 8 dims.
//!
//! Scales, sizes and roi are host values, so the per-dim interpolation tables are
//! built here at record time from smelt_ir::semantics::resize (the plan and
//! filters smelt-cpu evaluates with, in f64 following ONNX's reference), and the
//! kernel only sums weighted taps. Linear and cubic run in
//! f32 and f16; nearest is an exact gather for every type of 1, 2, 4 or 8 bytes
//! (1- and 2-byte ones packed four or two to a word, one thread per word).
//! Integer linear/cubic (rounded half to even on the CPU) stays on the CPU.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::semantics::resize::{axis_filter, nearest_map, ResizePlan};
use smelt_ir::{DType, Op, ResizeAttrs, ResizeMode, Tensor};

const WG: u32 = 256;
const MAX_RANK: usize = 8;
const NAME: &str = "resize";
/// The table marker for an output position outside the input (tf_crop_and_resize).
const OUTSIDE: u32 = u32::MAX;

fn float_sets() -> Vec<Vec<(&'static str, f64)>> {
    vec![vec![("WG", WG as f64), ("WORDS", 1.0), ("FLOAT_FILL", 1.0), ("BYTES", 4.0)]]
}

static RESIZE_F32: KernelSource = KernelSource {
    name: "resize_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::F32,
    entries: &["interpolate", "nearest"],
    needs_f16: false,
    override_sets: float_sets,
};

static RESIZE_F16: KernelSource = KernelSource {
    name: "resize_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::F16,
    entries: &["interpolate", "nearest"],
    needs_f16: true,
    override_sets: float_sets,
};

/// Nearest for other 4- and 8-byte types: elements copied as raw words.
static RESIZE_WORDS: KernelSource = KernelSource {
    name: "resize_words",
    wgsl: concat!("alias T = u32;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::U32,
    entries: &["nearest"],
    needs_f16: false,
    override_sets: || [1.0, 2.0].iter().map(|&w| vec![("WG", WG as f64), ("WORDS", w), ("FLOAT_FILL", 0.0)]).collect(),
};

pub static FAMILY: Family = Family { name: "resize", sources: &[&RESIZE_F32, &RESIZE_F16, &RESIZE_WORDS], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Resize(attrs) = req.op else { return None };
    let dtype = req.dtype(0)?;
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    let nearest = attrs.mode == ResizeMode::Nearest;
    let source = match dtype {
        DType::F32 => &RESIZE_F32,
        DType::F16 if req.ctx.supports_f16() => &RESIZE_F16,
        // Raw words copy exactly; interpolating integers needs the CPU's
        // round-half-to-even in 64-bit precision.
        // Without SHADER_F16, f16 nearest still copies bits.
        DType::F16 | DType::I32 | DType::U32 | DType::I64 | DType::U64 | DType::F64 if nearest => &RESIZE_WORDS,
        DType::U8 | DType::I8 | DType::Bool | DType::I16 | DType::U16 | DType::BF16 if nearest => &RESIZE_WORDS,
        _ => return None,
    };
    if req.input(0)?.shape.rank().is_some_and(|r| r == 0 || r > MAX_RANK) {
        return None;
    }
    Some(Ok(Box::new(Resize { attrs: attrs.clone(), dtype, source })))
}

struct Resize {
    attrs: ResizeAttrs,
    dtype: DType,
    source: &'static KernelSource,
}

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::kernel(NAME, msg.into())
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a dimension or offset is 2^32 or more"))
}

/// One resized dim's table: `taps` and, per output position, `taps` (input
/// index, weight) pairs, or `OUTSIDE` and padding where the position
/// extrapolates. Built from smelt-ir's filters, which the CPU evaluates with, so
/// both backends read the same positions with the same weights.
fn axis_table(attrs: &ResizeAttrs, input: usize, output: usize, scale: f64, roi: (f64, f64)) -> (usize, Vec<u32>) {
    if attrs.mode == ResizeMode::Nearest {
        // One tap: the input position the one-hot coefficients pick.
        let map = nearest_map(attrs, input, output, scale, roi);
        let mut words = Vec::with_capacity(output * 2);
        for i in map {
            match i {
                Some(i) => words.extend([i as u32, 1.0f32.to_bits()]),
                None => words.extend([OUTSIDE, 0]),
            }
        }
        return (1, words);
    }
    let f = axis_filter(attrs, input, output, scale, roi);
    // Every position of one dim has the same count; a dim entirely outside the
    // roi has none, and one placeholder tap.
    let taps = if f.extrapolate.iter().all(|&e| e) { 1 } else { f.taps };
    let mut words = Vec::with_capacity(output * taps * 2);
    for j in 0..output {
        if f.extrapolate[j] {
            words.push(OUTSIDE);
            words.resize(words.len() + 2 * taps - 1, 0);
        } else {
            for t in j * taps..(j + 1) * taps {
                words.push(f.index[t] as u32);
                words.push((f.weight[t] as f32).to_bits());
            }
        }
    }
    (taps, words)
}

/// The fill's element words for the raw-word kernel: `extrapolation_value`
/// converted to the element type as the CPU does (`as` casts saturate).
fn fill_words(dtype: DType, v: f32) -> [u32; 2] {
    let v = v as f64;
    match dtype {
        DType::I32 => [(v as i32) as u32, 0],
        DType::U32 => [v as u32, 0],
        DType::I64 => {
            let b = v as i64 as u64;
            [b as u32, (b >> 32) as u32]
        }
        DType::U64 => {
            let b = v as u64;
            [b as u32, (b >> 32) as u32]
        }
        DType::F64 => {
            let b = v.to_bits();
            [b as u32, (b >> 32) as u32]
        }
        DType::U8 | DType::Bool => [(v as u8) as u32, 0],
        DType::I8 => [(v as i8) as u8 as u32, 0],
        DType::U16 => [(v as u16) as u32, 0],
        DType::I16 => [(v as i16) as u16 as u32, 0],
        DType::F16 => [smelt_ir::half::f16::from_f64(v).to_bits() as u32, 0],
        DType::BF16 => [smelt_ir::half::bf16::from_f64(v).to_bits() as u32, 0],
        _ => [(v as f32).to_bits(), 0],
    }
}

impl GpuKernel for Resize {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // roi, scales and sizes are read on the host when recording.
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, NAME)?;
        let y = &io.outputs[0];
        let rank = x.shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Err(err(format!("input of rank {rank}: the kernel takes ranks 1 to {MAX_RANK}")));
        }
        // The runtime knows every shape-deciding input on the host
        // (Op::shape_inputs), so an input missing here is absent from the node.
        let host = |i: usize| io.host(i).map(Tensor::view);
        let plan = ResizePlan::new(&self.attrs, &x.shape, host(1), host(2), host(3)).map_err(err)?;
        if plan.out_shape != y.shape {
            return Err(err(format!("output shape {:?}, but scales/sizes give {:?}", y.shape, plan.out_shape)));
        }
        if y.is_empty() {
            return Ok(());
        }
        if x.is_empty() {
            return Err(err(format!("cannot resize the empty input {:?} to {:?}", x.shape, y.shape)));
        }
        let nearest = self.attrs.mode == ResizeMode::Nearest;
        let size = self.dtype.size();
        let raw = self.source.dtype == DType::U32;
        // (entry, words per element, bytes per element, threads)
        let (entry, words_per, bytes, threads) = if !raw {
            (if nearest { "nearest" } else { "interpolate" }, 1, 4, y.len())
        } else if size >= 4 {
            ("nearest", size / 4, 4, y.len())
        } else {
            ("nearest_packed", 1, size, y.len().div_ceil(4 / size))
        };
        // Word indices (and byte offsets, when packed) fit in u32.
        u(x.len() * words_per)?;
        u(y.len() * words_per)?;
        if entry == "nearest_packed" {
            u(x.len() * size)?;
        }
        let mut strides = vec![1usize; rank];
        for d in (0..rank - 1).rev() {
            strides[d] = strides[d + 1] * x.shape[d + 1];
        }
        let fill = if raw {
            fill_words(self.dtype, self.attrs.extrapolation_value)
        } else {
            [self.attrs.extrapolation_value.to_bits(), 0]
        };
        let mut params = vec![u(y.len())?, rank as u32, fill[0], fill[1]];
        let header = params.len() + 4 * rank;
        let mut tables = Vec::new();
        for (d, &stride) in strides.iter().enumerate() {
            let (taps, offset) = if plan.is_identity(d, x.shape[d]) {
                (0, 0)
            } else {
                let (taps, mut words) =
                    axis_table(&self.attrs, x.shape[d], plan.out_shape[d], plan.scales[d], plan.roi[d]);
                // Indices become element offsets along this dim.
                for pair in words.chunks_exact_mut(2) {
                    if pair[0] != OUTSIDE {
                        pair[0] = u(pair[0] as usize * stride)?;
                    }
                }
                let offset = header + tables.len();
                tables.extend(words);
                (taps, offset)
            };
            params.extend([u(plan.out_shape[d])?, u(stride)?, u(taps)?, u(offset)?]);
        }
        params.extend(tables);
        let overrides = [
            ("WG", WG as f64),
            ("WORDS", words_per as f64),
            ("FLOAT_FILL", !raw as u32 as f64),
            ("BYTES", bytes as f64),
        ];
        rec.dispatch(self.source, entry, &overrides, &[Bind::Tensor(x), Bind::Tensor(y)], &params, grid_1d(threads, WG))
    }
}
