//! Integer binary ops on i32 and i64 with broadcasting (kernels/int_binary.wgsl):
//! Add, Sub, Mul (wrapping), BitwiseAnd/Or/Xor and two-input Max/Min; integer Div
//! and Mod (kernels/int_divide.wgsl, its own source because it binds the status
//! words: a zero divisor fails the run with the CPU's message). BitShift is
//! defined on unsigned types only, which this family does not have.

use super::broadcast::{broadcast_strides, coalesce, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, GpuTensor, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{BinaryOp, DType, Op, VariadicOp};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

static INT_BINARY: KernelSource = KernelSource {
    name: "int_binary",
    wgsl: include_str!("../../kernels/int_binary.wgsl"),
    dtype: DType::I32,
    entries: &["int_binary"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for elem in 0..=1 {
            for op in 0..=7 {
                sets.push(vec![("WG", WG as f64), ("ELEM", elem as f64), ("OP", op as f64)]);
            }
        }
        sets
    },
};

static INT_DIVIDE: KernelSource = KernelSource {
    name: "int_divide",
    wgsl: concat!(include_str!("../../kernels/int_divide.wgsl"), include_str!("../../kernels/status.wgsl")),
    dtype: DType::I32,
    entries: &["int_divide"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for elem in 0..=1 {
            for (op, fmod) in [(0, 0), (1, 0), (1, 1)] {
                sets.push(divide_overrides(elem, op, fmod));
            }
        }
        sets
    },
};

fn divide_overrides(elem: u32, op: u32, fmod: u32) -> Vec<(&'static str, f64)> {
    vec![("WG", WG as f64), ("ELEM", elem as f64), ("OP", op as f64), ("FMOD", fmod as f64)]
}

pub static FAMILY: Family = Family { name: "int_binary", sources: &[&INT_BINARY, &INT_DIVIDE], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let dtype = req.dtype(0)?;
    let elem = match dtype {
        DType::I32 => 0,
        DType::I64 => 1,
        _ => return None,
    };
    if req.inputs.len() != 2 || req.dtype(1)? != dtype || req.outputs.first() != Some(&dtype) {
        return None;
    }
    let divide = match req.op {
        Op::Binary(BinaryOp::Div) => Some((0, 0)),
        Op::Binary(BinaryOp::Mod { fmod }) => Some((1, *fmod as u32)),
        _ => None,
    };
    if let Some((op, fmod)) = divide {
        return Some(Ok(Box::new(IntDivide { elem, op, fmod })));
    }
    let op = match req.op {
        Op::Binary(BinaryOp::Add) => 0,
        Op::Binary(BinaryOp::Sub) => 1,
        Op::Binary(BinaryOp::Mul) => 2,
        Op::Binary(BinaryOp::BitwiseAnd) => 3,
        Op::Binary(BinaryOp::BitwiseOr) => 4,
        Op::Binary(BinaryOp::BitwiseXor) => 5,
        Op::Variadic(VariadicOp::Max) => 6,
        Op::Variadic(VariadicOp::Min) => 7,
        _ => return None,
    };
    Some(Ok(Box::new(IntBinary { elem, op })))
}

struct IntBinary {
    elem: u32,
    op: u32,
}

impl GpuKernel for IntBinary {
    fn name(&self) -> &'static str {
        "int_binary"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let (a, b, y, params) = broadcast_params("int_binary", io)?;
        rec.dispatch(
            &INT_BINARY,
            "int_binary",
            &[("WG", WG as f64), ("ELEM", self.elem as f64), ("OP", self.op as f64)],
            &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y)],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}

/// The inputs, the output and the broadcast parameters both kernels start with:
/// n, out dims[8], a strides[8], b strides[8].
fn broadcast_params<'a>(
    kernel: &'static str,
    io: &'a NodeIo,
) -> Result<(&'a GpuTensor, &'a GpuTensor, &'a GpuTensor, Vec<u32>)> {
    let (a, b) = (io.input(0, kernel)?, io.input(1, kernel)?);
    let y = &io.outputs[0];
    let shape_err =
        || GpuError::kernel(kernel, format!("cannot broadcast {:?} and {:?} to {:?}", a.shape, b.shape, y.shape));
    let sa = broadcast_strides(&a.shape, &y.shape).ok_or_else(shape_err)?;
    let sb = broadcast_strides(&b.shape, &y.shape).ok_or_else(shape_err)?;
    let (dims, strides) = coalesce(&y.shape, &[sa, sb]);
    let too_big = || {
        GpuError::kernel(
            kernel,
            format!("shape {:?} has more than {MAX_RANK} independent dims or 2^32 elements", y.shape),
        )
    };
    let n = u32::try_from(y.len()).map_err(|_| too_big())?;
    let mut params = vec![n];
    params.extend(right_align(&dims, MAX_RANK, 1).ok_or_else(too_big)?);
    for s in &strides {
        params.extend(right_align(s, MAX_RANK, 0).ok_or_else(too_big)?);
    }
    Ok((a, b, y, params))
}

/// Div (OP 0) or Mod (OP 1, FMOD as the attribute) on i32 or i64.
struct IntDivide {
    elem: u32,
    op: u32,
    fmod: u32,
}

impl GpuKernel for IntDivide {
    fn name(&self) -> &'static str {
        "int_divide"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let (a, b, y, mut params) = broadcast_params("int_divide", io)?;
        // As the CPU says it; the failing value (always 0) is not part of it.
        params.push(rec.error_code("integer division by zero"));
        rec.dispatch(
            &INT_DIVIDE,
            "int_divide",
            &divide_overrides(self.elem, self.op, self.fmod),
            &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y), Bind::Status],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}
