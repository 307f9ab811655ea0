//! Ops that give bool: Equal, Less, LessOrEqual, Greater, GreaterOrEqual on f32,
//! f16, i32 and i64 (Equal also on bool), And/Or/Xor on bool with broadcasting
//! (kernels/compare.wgsl); Not on bool and IsNaN/IsInf on f32 and f16
//! (kernels/compare_unary.wgsl). Bool is one byte per element on the device.

use super::broadcast::{broadcast_strides, coalesce, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{BinaryOp, DType, Op, UnaryOp};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

/// Every (ELEM, OP) pair; both files read the same two overrides.
fn sets() -> Vec<Vec<(&'static str, f64)>> {
    let mut sets = Vec::new();
    for elem in 0..=4 {
        for op in 0..=7 {
            sets.push(vec![("WG", WG as f64), ("ELEM", elem as f64), ("OP", op as f64)]);
        }
    }
    sets
}

static COMPARE: KernelSource = KernelSource {
    name: "compare",
    wgsl: include_str!("../../kernels/compare.wgsl"),
    dtype: DType::Bool,
    entries: &["compare"],
    needs_f16: false,
    override_sets: sets,
};

static COMPARE_UNARY: KernelSource = KernelSource {
    name: "compare_unary",
    wgsl: include_str!("../../kernels/compare_unary.wgsl"),
    dtype: DType::Bool,
    entries: &["test_unary"],
    needs_f16: false,
    override_sets: sets,
};

pub static FAMILY: Family = Family { name: "compare", sources: &[&COMPARE, &COMPARE_UNARY], build };

/// The `ELEM` code of an operand type.
fn elem(dtype: DType) -> Option<u32> {
    Some(match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::I32 => 2,
        DType::I64 => 3,
        DType::Bool => 4,
        _ => return None,
    })
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    if req.outputs.first() != Some(&DType::Bool) {
        return None;
    }
    let dtype = req.dtype(0)?;
    match req.op {
        Op::Binary(b) => {
            if req.inputs.len() != 2 || req.dtype(1)? != dtype {
                return None;
            }
            let op = match b {
                BinaryOp::Equal => 0,
                BinaryOp::Less => 1,
                BinaryOp::LessOrEqual => 2,
                BinaryOp::Greater => 3,
                BinaryOp::GreaterOrEqual => 4,
                BinaryOp::And => 5,
                BinaryOp::Or => 6,
                BinaryOp::Xor => 7,
                _ => return None,
            };
            let logical = op >= 5;
            let ok = match dtype {
                DType::Bool => logical || op == 0,
                DType::F32 | DType::F16 | DType::I32 | DType::I64 => !logical,
                _ => false,
            };
            if !ok {
                return None;
            }
            Some(Ok(Box::new(Compare { elem: elem(dtype)?, op })))
        }
        Op::Unary(u) => {
            let op = match (u, dtype) {
                (UnaryOp::Not, DType::Bool) => 0,
                (UnaryOp::IsNaN, DType::F32 | DType::F16) => 1,
                (UnaryOp::IsInf { detect_positive, detect_negative }, DType::F32 | DType::F16) => {
                    match (detect_positive, detect_negative) {
                        (true, true) => 2,
                        (true, false) => 3,
                        (false, true) => 4,
                        (false, false) => 5,
                    }
                }
                _ => return None,
            };
            Some(Ok(Box::new(TestUnary { elem: elem(dtype)?, op })))
        }
        _ => None,
    }
}

fn too_big(shape: &[usize]) -> GpuError {
    GpuError::kernel("compare", format!("shape {shape:?} has more than {MAX_RANK} independent dims or 2^32 elements"))
}

/// Threads for `n` bool outputs: one per output word.
fn words(n: usize) -> usize {
    n.div_ceil(4)
}

struct Compare {
    elem: u32,
    op: u32,
}

impl GpuKernel for Compare {
    fn name(&self) -> &'static str {
        "compare"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let (a, b) = (io.input(0, "compare")?, io.input(1, "compare")?);
        let y = &io.outputs[0];
        let shape_err = || {
            GpuError::kernel("compare", format!("cannot broadcast {:?} and {:?} to {:?}", a.shape, b.shape, y.shape))
        };
        let sa = broadcast_strides(&a.shape, &y.shape).ok_or_else(shape_err)?;
        let sb = broadcast_strides(&b.shape, &y.shape).ok_or_else(shape_err)?;
        let (dims, strides) = coalesce(&y.shape, &[sa, sb]);
        let n = u32::try_from(y.len()).map_err(|_| too_big(&y.shape))?;
        let mut params = vec![n];
        params.extend(right_align(&dims, MAX_RANK, 1).ok_or_else(|| too_big(&y.shape))?);
        for s in &strides {
            params.extend(right_align(s, MAX_RANK, 0).ok_or_else(|| too_big(&y.shape))?);
        }
        rec.dispatch(
            &COMPARE,
            "compare",
            &[("WG", WG as f64), ("ELEM", self.elem as f64), ("OP", self.op as f64)],
            &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y)],
            &params,
            grid_1d(words(y.len()), WG),
        )
    }
}

struct TestUnary {
    elem: u32,
    op: u32,
}

impl GpuKernel for TestUnary {
    fn name(&self) -> &'static str {
        "compare_unary"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "compare_unary")?;
        let y = &io.outputs[0];
        let n = u32::try_from(y.len()).map_err(|_| too_big(&y.shape))?;
        rec.dispatch(
            &COMPARE_UNARY,
            "test_unary",
            &[("WG", WG as f64), ("ELEM", self.elem as f64), ("OP", self.op as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[n],
            grid_1d(words(y.len()), WG),
        )
    }
}
