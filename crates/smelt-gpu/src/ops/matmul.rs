//! MatMul (numpy semantics, broadcast batches, fused bias and activation) and Gemm
//! (transposes, alpha, beta, C, fused activation) on one tiled kernel
//! (kernels/matmul.wgsl). A constant B larger than one binding may cover (GPT-2's
//! 50257-wide output projection on small GPUs) is split by columns at build time.

use super::activation;
use super::broadcast::{broadcast_strides, contiguous_strides};
use super::Family;
use crate::kernel::{Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, Tensor, UnaryOp};

const TILE: usize = 64;
const MAX_BATCH_RANK: usize = 4;

static MATMUL_F32: KernelSource = KernelSource {
    name: "matmul_f32",
    wgsl: concat!(include_str!("../../kernels/activation.wgsl"), include_str!("../../kernels/matmul.wgsl")),
    dtype: DType::F32,
    entries: &["matmul"],
    needs_f16: false,
    override_sets: activation::all_override_sets,
};

pub static FAMILY: Family = Family { name: "matmul", sources: &[&MATMUL_F32], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let (activation, gemm) = match req.op {
        Op::MatMul { activation } => (activation.as_ref(), None),
        Op::Gemm { alpha, beta, trans_a, trans_b, activation } => {
            (activation.as_ref(), Some((*alpha, *beta, *trans_a, *trans_b)))
        }
        _ => return None,
    };
    if req.dtype(0)? != DType::F32 || req.dtype(1)? != DType::F32 || req.outputs.first() != Some(&DType::F32) {
        return None;
    }
    if req.input(2).is_some_and(|c| c.dtype != DType::F32) {
        return None;
    }
    let overrides = activation::overrides(activation)?;
    let chunks = match req.constant(1) {
        Some(b) if b.rank() == 2 && b.bytes().len() as u64 > req.ctx.max_binding() => {
            Some(match split_columns(req, b) {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            })
        }
        _ => None,
    };
    let _: Option<&UnaryOp> = activation;
    Some(Ok(Box::new(MatMul { gemm, overrides, chunks })))
}

/// Column blocks of a constant [K, N] matrix, each small enough to bind.
struct ColumnChunks {
    /// (first column, width, buffer holding [K, width] row-major).
    blocks: Vec<(usize, usize, wgpu::Buffer)>,
}

fn split_columns(req: &KernelRequest, b: &Tensor) -> Result<ColumnChunks> {
    let (k, n) = (b.shape()[0], b.shape()[1]);
    let per_column = (k * 4) as u64;
    let width = ((req.ctx.max_binding() / per_column) as usize / TILE * TILE).max(TILE);
    let values = b.as_slice::<f32>().map_err(|e| GpuError::kernel("matmul", e.to_string()))?;
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < n {
        let w = width.min(n - start);
        let mut packed = Vec::with_capacity(k * w);
        for row in 0..k {
            packed.extend_from_slice(&values[row * n + start..row * n + start + w]);
        }
        blocks.push((start, w, req.ctx.upload("matmul weight block", bytemuck::cast_slice(&packed))?));
        start += w;
    }
    Ok(ColumnChunks { blocks })
}

struct MatMul {
    /// Gemm's (alpha, beta, transA, transB); `None` for MatMul.
    gemm: Option<(f32, f32, bool, bool)>,
    overrides: Vec<(&'static str, f64)>,
    chunks: Option<ColumnChunks>,
}

fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::kernel("matmul", "a dimension or offset is 2^32 or more"))
}

impl GpuKernel for MatMul {
    fn name(&self) -> &'static str {
        if self.gemm.is_some() {
            "gemm"
        } else {
            "matmul"
        }
    }

    fn reads_on_device(&self, index: usize) -> bool {
        !(index == 1 && self.chunks.is_some())
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let a = io.input(0, "matmul")?;
        let y = &io.outputs[0];
        let b_shape: Vec<usize> = match (&self.chunks, io.inputs.get(1).and_then(|b| b.as_ref())) {
            (_, Some(b)) => b.shape.clone(),
            (Some(_), None) => io.host(1).map(|t| t.shape().to_vec()).unwrap_or_default(),
            (None, None) => return Err(GpuError::kernel("matmul", "B is not on the device")),
        };
        let bias = io.inputs.get(2).and_then(|c| c.as_ref());
        let err = |m: String| GpuError::kernel("matmul", m);

        // (m, k, n), strides of A and B, batch dims and batch strides.
        let (m, k, n, a_sm, a_sk, b_sk, b_sn, alpha, beta);
        let mut batch_dims: Vec<usize> = Vec::new();
        let mut batch_strides: [Vec<usize>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        match self.gemm {
            Some((al, be, ta, tb)) => {
                if a.shape.len() != 2 || b_shape.len() != 2 {
                    return Err(err(format!("Gemm wants 2-D A and B, got {:?} and {:?}", a.shape, b_shape)));
                }
                (m, k) = if ta { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
                n = if tb { b_shape[0] } else { b_shape[1] };
                (a_sm, a_sk) = if ta { (1, m) } else { (k, 1) };
                (b_sk, b_sn) = if tb { (1, k) } else { (n, 1) };
                (alpha, beta) = (al, be);
            }
            None => {
                // numpy: a 1-D A is a row, a 1-D B a column; their unit dim is not in Y.
                let a2: Vec<usize> = if a.shape.len() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
                let b2: Vec<usize> = if b_shape.len() == 1 { vec![b_shape[0], 1] } else { b_shape.clone() };
                if a2.len() < 2 || b2.len() < 2 {
                    return Err(err(format!("MatMul of {:?} and {:?}", a.shape, b_shape)));
                }
                m = a2[a2.len() - 2];
                k = a2[a2.len() - 1];
                n = b2[b2.len() - 1];
                if b2[b2.len() - 2] != k {
                    return Err(err(format!("MatMul inner dims differ: {:?} x {:?}", a.shape, b_shape)));
                }
                (a_sm, a_sk, b_sk, b_sn) = (k, 1, n, 1);
                (alpha, beta) = (1.0, 1.0);
                let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
                let rank = ab.len().max(bb.len());
                let mut out_batch = vec![1; rank];
                for d in 0..rank {
                    let x = if d + ab.len() >= rank { ab[d + ab.len() - rank] } else { 1 };
                    let z = if d + bb.len() >= rank { bb[d + bb.len() - rank] } else { 1 };
                    out_batch[d] = x.max(z);
                }
                let sa = broadcast_strides(ab, &out_batch).ok_or_else(|| err("batch dims do not broadcast".into()))?;
                let sb = broadcast_strides(bb, &out_batch).ok_or_else(|| err("batch dims do not broadcast".into()))?;
                let sy = contiguous_strides(&out_batch);
                for d in 0..rank {
                    if out_batch[d] == 1 {
                        continue;
                    }
                    batch_dims.push(out_batch[d]);
                    batch_strides[0].push(sa[d] * m * k);
                    batch_strides[1].push(sb[d] * k * n);
                    batch_strides[2].push(sy[d] * m * n);
                }
            }
        }
        if batch_dims.len() > MAX_BATCH_RANK {
            return Err(err(format!("more than {MAX_BATCH_RANK} broadcast batch dims")));
        }
        if self.chunks.is_some() && !batch_dims.is_empty() && batch_strides[1].iter().any(|&s| s != 0) {
            return Err(err("a split B must be shared by every batch".into()));
        }
        let batch: usize = batch_dims.iter().product();
        // C / fused bias, broadcast over [m, n].
        let (c_sm, c_sn) = match bias {
            None => (0, 0),
            Some(c) => {
                let s = broadcast_strides(&c.shape, &[m, n])
                    .ok_or_else(|| err(format!("bias {:?} does not broadcast to [{m}, {n}]", c.shape)))?;
                (s[0], s[1])
            }
        };
        let pad = |v: &[usize], fill: usize| -> Vec<usize> {
            let mut out = vec![fill; MAX_BATCH_RANK - v.len()];
            out.extend_from_slice(v);
            out
        };
        let params_for = |b_off_cols: usize, width: usize, b_sk: usize| -> Result<Vec<u32>> {
            let mut p = vec![
                to_u32(m)?,
                to_u32(width)?,
                to_u32(k)?,
                to_u32(batch)?,
                0,
                to_u32(a_sm)?,
                to_u32(a_sk)?,
                0,
                to_u32(b_sk)?,
                to_u32(b_sn)?,
                to_u32(b_off_cols)?,
                to_u32(n)?,
                to_u32(b_off_cols * c_sn)?,
                to_u32(c_sm)?,
                to_u32(c_sn)?,
                bias.is_some() as u32,
                alpha.to_bits(),
                beta.to_bits(),
            ];
            for v in pad(&batch_dims, 1) {
                p.push(to_u32(v)?);
            }
            for s in &batch_strides {
                for v in pad(s, 0) {
                    p.push(to_u32(v)?);
                }
            }
            Ok(p)
        };
        let c_bind = bias.map_or(Bind::Placeholder, Bind::Tensor);
        let batch_groups = to_u32(batch.max(1))?;
        match &self.chunks {
            None => {
                let b = io.input(1, "matmul")?;
                let params = params_for(0, n, b_sk)?;
                let groups = [to_u32(n.div_ceil(TILE))?, to_u32(m.div_ceil(TILE))?, batch_groups];
                rec.dispatch(
                    &MATMUL_F32,
                    "matmul",
                    &self.overrides,
                    &[Bind::Tensor(a), Bind::Tensor(b), c_bind, Bind::Tensor(y)],
                    &params,
                    groups,
                )
            }
            Some(chunks) => {
                for (start, width, buffer) in &chunks.blocks {
                    let params = params_for(*start, *width, *width)?;
                    let groups = [to_u32(width.div_ceil(TILE))?, to_u32(m.div_ceil(TILE))?, batch_groups];
                    let c_bind = bias.map_or(Bind::Placeholder, Bind::Tensor);
                    rec.dispatch(
                        &MATMUL_F32,
                        "matmul",
                        &self.overrides,
                        &[Bind::Tensor(a), Bind::Range(buffer, 0, buffer.size()), c_bind, Bind::Tensor(y)],
                        &params,
                        groups,
                    )?;
                }
                Ok(())
            }
        }
    }
}
