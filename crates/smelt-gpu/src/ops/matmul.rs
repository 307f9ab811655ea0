//! MatMul (numpy semantics, broadcast batches, fused bias and activation) and Gemm
//! (transposes, alpha, beta, C, fused activation) on kernels/matmul.wgsl: a
//! register-tiled GEMM in two tile sizes, and a GEMV for single rows, chosen per
//! shape at record time. A constant B larger than one binding may cover (GPT-2's
//! 50257-wide output projection on small GPUs) is split by columns at build time.

use super::activation;
use super::broadcast::{broadcast_strides, contiguous_strides};
use super::Family;
use crate::kernel::{Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, Tensor, UnaryOp};

/// Column blocks of a split B are a multiple of this (the largest tile's width).
const TILE: usize = 128;
const MAX_BATCH_RANK: usize = 4;
/// Columns of Y per `gemv` workgroup.
const GEMV_COLS: usize = 32;

/// A shape of the tiled kernel (kernels/matmul.wgsl, also conv.wgsl): `TT` x `TT`
/// threads, each computing `MT` x `MT` outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TileShape {
    pub tt: usize,
    pub mt: usize,
}

impl TileShape {
    /// Rows (and columns) of Y per workgroup.
    pub fn tile(self) -> usize {
        self.tt * self.mt
    }

    pub fn overrides(self) -> [(&'static str, f64); 2] {
        [("TT", self.tt as f64), ("MT", self.mt as f64)]
    }
}

/// Largest first. 128 x 128 tiles load each element once per 8 x 8 outputs of a
/// thread, the most reuse. Smaller tiles keep 256 threads and drop to 64-thread
/// workgroups only last: on an H100 a 1024^3 product ran at 3.9 TFLOP/s in
/// 64-thread workgroups of 64 x 64 tiles, and at 9.5 in 256-thread ones (4 x 4
/// micro-tiles), both with loop bounding on.
pub(crate) const TILE_SHAPES: [TileShape; 3] =
    [TileShape { tt: 16, mt: 8 }, TileShape { tt: 16, mt: 4 }, TileShape { tt: 8, mt: 4 }];

/// A shape moves to the next smaller tile while it would make fewer workgroups
/// than this: about one per multiprocessor of a large GPU (an H100 has 132).
const MIN_GROUPS: usize = 128;

/// The tile for an m x n product (output channels x pixels for Conv) in `batch`
/// independent batches (or groups).
pub(crate) fn tile_shape(m: usize, n: usize, batch: usize) -> TileShape {
    for shape in &TILE_SHAPES[..TILE_SHAPES.len() - 1] {
        if m.div_ceil(shape.tile()) * n.div_ceil(shape.tile()) * batch >= MIN_GROUPS {
            return *shape;
        }
    }
    TILE_SHAPES[TILE_SHAPES.len() - 1]
}

/// Every override set a tiled launcher may choose: each activation with each tile
/// shape (`gemv` ignores the tile).
pub(crate) fn override_sets() -> Vec<Vec<(&'static str, f64)>> {
    let mut sets = Vec::new();
    for shape in TILE_SHAPES {
        for mut set in activation::all_override_sets() {
            set.extend(shape.overrides());
            sets.push(set);
        }
    }
    sets
}

static MATMUL_F32: KernelSource = KernelSource {
    name: "matmul_f32",
    wgsl: concat!(include_str!("../../kernels/activation.wgsl"), include_str!("../../kernels/matmul.wgsl")),
    dtype: DType::F32,
    entries: &["matmul", "gemv"],
    needs_f16: false,
    override_sets,
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

/// A dimension, offset or stride as the kernel's u32, below 2^31 so that the
/// kernel's loop counters (K plus one step) cannot wrap around: its pipeline is
/// built without wgpu's loop bounding (pipelines.rs), which relies on that.
fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&x| x < 1 << 31)
        .ok_or_else(|| GpuError::kernel("matmul", "a dimension or offset is 2^31 or more"))
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
        // C / fused bias, broadcast over [m, n].
        let (c_sm, c_sn) = match bias {
            None => (0, 0),
            Some(c) => {
                let s = broadcast_strides(&c.shape, &[m, n])
                    .ok_or_else(|| err(format!("bias {:?} does not broadcast to [{m}, {n}]", c.shape)))?;
                (s[0], s[1])
            }
        };
        // A shared B with contiguous batches of A and Y is one product of
        // batch * m rows ([32, 128, 768] x [768, 768] in BERT, or GPT-2's decode
        // rows of a batch): fuller tiles, and single rows stop being GEMVs. Not when
        // C varies by row, since row m of the folded product is row m % M of C.
        let m = if fold_batches(&batch_dims, &batch_strides, m, k, n) && (c_sm == 0 || m == 1) {
            let rows = m * batch_dims.iter().product::<usize>();
            batch_dims.clear();
            batch_strides = [Vec::new(), Vec::new(), Vec::new()];
            rows
        } else {
            m
        };
        let batch: usize = batch_dims.iter().product();
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
        let batch_groups = to_u32(batch.max(1))?;
        // The variant, from the shape alone (every batch size records its own).
        let shape = tile_shape(m, n, batch);
        let mut tiled_overrides = self.overrides.clone();
        tiled_overrides.extend(shape.overrides());
        let dispatch = |rec: &mut Recorder, b: Bind, start: usize, width: usize, b_sk: usize| -> Result<()> {
            let params = params_for(start, width, b_sk)?;
            let c_bind = bias.map_or(Bind::Placeholder, Bind::Tensor);
            let binds = [Bind::Tensor(a), b, c_bind, Bind::Tensor(y)];
            if m == 1 {
                let groups = [to_u32(width.div_ceil(GEMV_COLS))?, 1, batch_groups];
                rec.dispatch(&MATMUL_F32, "gemv", &self.overrides, &binds, &params, groups)
            } else {
                let tile = shape.tile();
                let groups = [to_u32(width.div_ceil(tile))?, to_u32(m.div_ceil(tile))?, batch_groups];
                rec.dispatch(&MATMUL_F32, "matmul", &tiled_overrides, &binds, &params, groups)
            }
        };
        match &self.chunks {
            None => dispatch(rec, Bind::Tensor(io.input(1, "matmul")?), 0, n, b_sk),
            Some(chunks) => {
                for (start, width, buffer) in &chunks.blocks {
                    dispatch(rec, Bind::Range(buffer, 0, buffer.size()), *start, *width, *width)?;
                }
                Ok(())
            }
        }
    }
}

/// Whether a batched MatMul is one product of batch * m rows: B the same for
/// every batch, and A and Y batches laid out one after another.
fn fold_batches(dims: &[usize], strides: &[Vec<usize>; 3], m: usize, k: usize, n: usize) -> bool {
    if dims.is_empty() || strides[1].iter().any(|&s| s != 0) {
        return false;
    }
    let dense = contiguous_strides(dims);
    dense.iter().zip(&strides[0]).all(|(d, s)| d * m * k == *s)
        && dense.iter().zip(&strides[2]).all(|(d, s)| d * m * n == *s)
}
