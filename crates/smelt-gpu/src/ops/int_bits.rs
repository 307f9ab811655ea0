//! Integer unary ops and BitShift (kernels/int_bits.wgsl). Neg, Abs, Sign,
//! BitwiseNot and Relu on i8, i16, i32, i64, u8, u16, u32, u64 (wrapping, as the
//! CPU); BitShift LEFT/RIGHT with broadcasting on u8, u16, u32, u64 (shape
//! inference refuses signed types). 8- and 16-bit elements are packed in 32-bit
//! words, one output word per thread.

use super::broadcast::{broadcast_strides, coalesce, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{BinaryOp, DType, Op, UnaryOp};

const WG: u32 = 256;
const MAX_RANK: usize = 8;
const WIDTHS: [u32; 4] = [8, 16, 32, 64];

static INT_BITS: KernelSource = KernelSource {
    name: "int_bits",
    wgsl: include_str!("../../kernels/int_bits.wgsl"),
    dtype: DType::U32,
    entries: &["int_unary", "bit_shift"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for bits in WIDTHS {
            for signed in 0..=1 {
                for op in 0..=4 {
                    sets.push(vec![
                        ("WG", WG as f64),
                        ("BITS", bits as f64),
                        ("SIGNED", signed as f64),
                        ("OP", op as f64),
                    ]);
                }
            }
        }
        sets
    },
};

pub static FAMILY: Family = Family { name: "int_bits", sources: &[&INT_BITS], build };

/// (width in bits, signed) of an integer type.
fn int_type(dtype: DType) -> Option<(u32, bool)> {
    Some(match dtype {
        DType::I8 => (8, true),
        DType::I16 => (16, true),
        DType::I32 => (32, true),
        DType::I64 => (64, true),
        DType::U8 => (8, false),
        DType::U16 => (16, false),
        DType::U32 => (32, false),
        DType::U64 => (64, false),
        _ => return None,
    })
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let dtype = req.dtype(0)?;
    let (bits, signed) = int_type(dtype)?;
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    let (entry, op) = match req.op {
        Op::Unary(u) => (
            "int_unary",
            match u {
                UnaryOp::Neg => 0,
                UnaryOp::Abs => 1,
                UnaryOp::Sign => 2,
                UnaryOp::BitwiseNot => 3,
                UnaryOp::Relu => 4,
                _ => return None,
            },
        ),
        Op::Binary(b @ (BinaryOp::BitShiftLeft | BinaryOp::BitShiftRight)) => {
            if signed || req.dtype(1)? != dtype {
                return None;
            }
            ("bit_shift", (*b == BinaryOp::BitShiftLeft) as u32)
        }
        _ => return None,
    };
    Some(Ok(Box::new(IntBits { entry, bits, signed, op })))
}

struct IntBits {
    entry: &'static str,
    bits: u32,
    signed: bool,
    op: u32,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("int_bits", m)
}

impl GpuKernel for IntBits {
    fn name(&self) -> &'static str {
        "int_bits"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let a = io.input(0, "int_bits")?;
        let y = &io.outputs[0];
        let n = y.len();
        // One thread per output word, or per element for 64-bit types.
        let threads = if self.bits == 64 { n } else { n.div_ceil((32 / self.bits) as usize) };
        let u = |v: usize| u32::try_from(v).map_err(|_| err("2^32 or more elements"));
        let overrides = [
            ("WG", WG as f64),
            ("BITS", self.bits as f64),
            ("SIGNED", self.signed as u32 as f64),
            ("OP", self.op as f64),
        ];
        if self.entry == "int_unary" {
            if a.len() != n {
                return Err(err(format!("input {:?} and output {:?} differ", a.shape, y.shape)));
            }
            return rec.dispatch(
                &INT_BITS,
                "int_unary",
                &overrides,
                &[Bind::Tensor(a), Bind::Placeholder, Bind::Tensor(y)],
                &[u(threads)?, u(n)?],
                grid_1d(threads, WG),
            );
        }
        let b = io.input(1, "int_bits")?;
        let shape_err = || err(format!("cannot broadcast {:?} and {:?} to {:?}", a.shape, b.shape, y.shape));
        let sa = broadcast_strides(&a.shape, &y.shape).ok_or_else(shape_err)?;
        let sb = broadcast_strides(&b.shape, &y.shape).ok_or_else(shape_err)?;
        let (dims, strides) = coalesce(&y.shape, &[sa, sb]);
        let too_big = || err(format!("shape {:?} has more than {MAX_RANK} independent dims", y.shape));
        let mut params = vec![u(threads)?, u(n)?];
        params.extend(right_align(&dims, MAX_RANK, 1).ok_or_else(too_big)?);
        for s in &strides {
            params.extend(right_align(s, MAX_RANK, 0).ok_or_else(too_big)?);
        }
        rec.dispatch(
            &INT_BITS,
            "bit_shift",
            &overrides,
            &[Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y)],
            &params,
            grid_1d(threads, WG),
        )
    }
}
