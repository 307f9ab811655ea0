//! Elementwise unary and binary ops (kernels/unary.wgsl, kernels/elementwise.wgsl)
//! in f32, and in f16 where the adapter has `SHADER_F16`.

use super::activation;
use super::broadcast::{broadcast_strides, coalesce, contiguous_strides, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{BinaryOp, DType, Op, VariadicOp};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

macro_rules! elementwise_source {
    ($name:literal, $file:literal, $entry:literal, $dtype:expr, $prefix:literal, $f16:expr, $sets:expr) => {
        KernelSource {
            name: $name,
            wgsl: concat!(
                $prefix,
                include_str!("../../kernels/activation.wgsl"),
                include_str!(concat!("../../kernels/", $file))
            ),
            dtype: $dtype,
            entries: &[$entry],
            needs_f16: $f16,
            override_sets: $sets,
        }
    };
}

static UNARY_F32: KernelSource =
    elementwise_source!("unary_f32", "unary.wgsl", "unary", DType::F32, "alias T = f32;\n", false, unary_sets);
static UNARY_F16: KernelSource = elementwise_source!(
    "unary_f16",
    "unary.wgsl",
    "unary",
    DType::F16,
    "enable f16;\nalias T = f16;\n",
    true,
    unary_sets
);
static BINARY_F32: KernelSource =
    elementwise_source!("binary_f32", "elementwise.wgsl", "binary", DType::F32, "alias T = f32;\n", false, binary_sets);
static BINARY_F16: KernelSource = elementwise_source!(
    "binary_f16",
    "elementwise.wgsl",
    "binary",
    DType::F16,
    "enable f16;\nalias T = f16;\n",
    true,
    binary_sets
);

fn unary_sets() -> Vec<Vec<(&'static str, f64)>> {
    activation::all_override_sets()
}

fn binary_sets() -> Vec<Vec<(&'static str, f64)>> {
    (0..=MAX_BINARY_CODE).map(|op| vec![("OP", op as f64)]).collect()
}

pub static FAMILY: Family =
    Family { name: "elementwise", sources: &[&UNARY_F32, &UNARY_F16, &BINARY_F32, &BINARY_F16], build };

const MAX_BINARY_CODE: u32 = 9;

fn binary_code(op: &Op) -> Option<u32> {
    Some(match op {
        Op::Binary(b) => match b {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Pow => 4,
            BinaryOp::Mod { fmod: true } => 5,
            BinaryOp::Mod { fmod: false } => 6,
            BinaryOp::PRelu => 7,
            _ => return None,
        },
        Op::Variadic(VariadicOp::Max) => 8,
        Op::Variadic(VariadicOp::Min) => 9,
        _ => return None,
    })
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let dtype = req.dtype(0)?;
    let f16 = match dtype {
        DType::F32 => false,
        DType::F16 if req.ctx.supports_f16() => true,
        _ => return None,
    };
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    match req.op {
        Op::Unary(u) => {
            let (code, alpha, beta) = activation::code(u)?;
            let source = if f16 { &UNARY_F16 } else { &UNARY_F32 };
            Some(Ok(Box::new(Unary {
                source,
                overrides: vec![("ACT", code as f64), ("ACT_ALPHA", alpha as f64), ("ACT_BETA", beta as f64)],
            })))
        }
        // Two-operand Max/Min; more operands go to the CPU.
        Op::Binary(_) | Op::Variadic(_) => {
            if req.inputs.len() != 2 || req.dtype(1) != Some(dtype) {
                return None;
            }
            let code = binary_code(req.op)?;
            let source = if f16 { &BINARY_F16 } else { &BINARY_F32 };
            Some(Ok(Box::new(Binary { source, code })))
        }
        _ => None,
    }
}

struct Unary {
    source: &'static KernelSource,
    overrides: Vec<(&'static str, f64)>,
}

impl GpuKernel for Unary {
    fn name(&self) -> &'static str {
        "unary"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "unary")?;
        let y = &io.outputs[0];
        let n = u32::try_from(y.len()).map_err(|_| GpuError::kernel("unary", "more than 2^32 elements"))?;
        rec.dispatch(
            self.source,
            "unary",
            &self.overrides,
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[n],
            grid_1d(y.len(), WG),
        )
    }
}

struct Binary {
    source: &'static KernelSource,
    code: u32,
}

impl GpuKernel for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let (a, b) = (io.input(0, "binary")?, io.input(1, "binary")?);
        let y = &io.outputs[0];
        let shape_err =
            || GpuError::kernel("binary", format!("cannot broadcast {:?} and {:?} to {:?}", a.shape, b.shape, y.shape));
        let sa = broadcast_strides(&a.shape, &y.shape).ok_or_else(shape_err)?;
        let sb = broadcast_strides(&b.shape, &y.shape).ok_or_else(shape_err)?;
        let (dims, strides) = coalesce(&y.shape, &[sa, sb]);
        let too_big = || {
            GpuError::kernel(
                "binary",
                format!("shape {:?} has more than {MAX_RANK} independent dims or 2^32 elements", y.shape),
            )
        };
        let n = u32::try_from(y.len()).map_err(|_| too_big())?;
        let mut params = vec![n, MAX_RANK as u32];
        params.extend(right_align(&dims, MAX_RANK, 1).ok_or_else(too_big)?);
        params.extend(right_align(&strides[0], MAX_RANK, 0).ok_or_else(too_big)?);
        params.extend(right_align(&strides[1], MAX_RANK, 0).ok_or_else(too_big)?);
        params.extend([0, 0]);
        let _ = contiguous_strides;
        rec.dispatch(
            self.source,
            "binary",
            &[("OP", self.code as f64)],
            &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y)],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}
