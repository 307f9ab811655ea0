//! Einsum (kernels/einsum.wgsl): every equation smelt-cpu accepts (explicit or
//! implicit output, `...`, repeated letters for diagonals and traces, size-1
//! broadcasting) with up to four operands, one thread per output element summing
//! over the contracted letters. f32, f16 (summed in f32), i32 and i64 (both
//! wrapping, as the CPU; i64 as (low, high) u32 pairs). The equation is parsed
//! against the shapes at record time (by smelt_ir::semantics::einsum, as on the
//! CPU), so one pipeline serves every shape. f32 equations that are a plain
//! batched matmul (`...ij,...jk->...ik` spelled with letters, e.g.
//! `bhij,bhjd->bhid`) run on the tiled matmul kernel instead.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::semantics::einsum::{char_code, letter, EinsumSpec, Label};
use smelt_ir::{DType, Op};

const WG: u32 = 64;
const NAME: &str = "einsum";
const MAX_OPERANDS: usize = 4;

static EINSUM_F32: KernelSource = KernelSource {
    name: "einsum_f32",
    wgsl: concat!("alias T = f32;\nalias A = f32;\n", include_str!("../../kernels/einsum.wgsl")),
    dtype: DType::F32,
    entries: &["einsum"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static EINSUM_F16: KernelSource = KernelSource {
    name: "einsum_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\nalias A = f32;\n", include_str!("../../kernels/einsum.wgsl")),
    dtype: DType::F16,
    entries: &["einsum"],
    needs_f16: true,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static EINSUM_I32: KernelSource = KernelSource {
    name: "einsum_i32",
    wgsl: concat!("alias T = i32;\nalias A = i32;\n", include_str!("../../kernels/einsum.wgsl")),
    dtype: DType::I32,
    entries: &["einsum"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static EINSUM_I64: KernelSource = KernelSource {
    name: "einsum_i64",
    wgsl: concat!("alias T = u32;\nalias A = u32;\n", include_str!("../../kernels/einsum.wgsl")),
    dtype: DType::I64,
    entries: &["einsum_i64"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

pub static FAMILY: Family =
    Family { name: "einsum", sources: &[&EINSUM_F32, &EINSUM_F16, &EINSUM_I32, &EINSUM_I64], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Einsum { equation } = req.op else { return None };
    let n = req.inputs.len();
    if n == 0 || n > MAX_OPERANDS {
        return None;
    }
    let dtype = req.dtype(0)?;
    let source = match dtype {
        DType::F32 => &EINSUM_F32,
        DType::F16 if req.ctx.supports_f16() => &EINSUM_F16,
        DType::I32 => &EINSUM_I32,
        DType::I64 => &EINSUM_I64,
        _ => return None,
    };
    if (0..n).any(|i| req.dtype(i) != Some(dtype)) || req.outputs.first() != Some(&dtype) {
        return None;
    }
    let matmul = if dtype == DType::F32 && is_batched_matmul(equation) {
        let request = KernelRequest {
            op: &Op::MatMul { activation: None },
            inputs: req.inputs.clone(),
            outputs: req.outputs.clone(),
            ctx: req.ctx,
        };
        match (super::matmul::FAMILY.build)(&request) {
            Some(Ok(k)) => Some(k),
            Some(Err(e)) => return Some(Err(e)),
            None => None,
        }
    } else {
        None
    };
    Some(Ok(Box::new(Einsum { equation: equation.clone(), source, matmul })))
}

struct Einsum {
    equation: String,
    source: &'static KernelSource,
    /// The matmul kernel, for equations that are a plain batched matmul.
    matmul: Option<Box<dyn GpuKernel>>,
}

/// Whether the equation is `P i j, P j k -> P i k` for distinct letters (P at
/// most 4 of them: matmul's batch limit), with no `...`, so that MatMul's own
/// semantics on the same operands give the same result.
fn is_batched_matmul(equation: &str) -> bool {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return false;
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let labels = |t: &str| -> Option<Vec<Label>> { t.bytes().map(letter).collect() };
    let terms: Vec<Vec<Label>> = match lhs.split(',').map(labels).collect::<Option<_>>() {
        Some(t) => t,
        None => return false,
    };
    let [a, b] = &terms[..] else { return false };
    let output = match rhs {
        Some(r) => match labels(r) {
            Some(o) => o,
            None => return false,
        },
        None => {
            // numpy's implicit output: letters seen once, in character order.
            let mut once: Vec<Label> =
                a.iter().chain(b).copied().filter(|l| a.iter().chain(b).filter(|x| *x == l).count() == 1).collect();
            once.sort_by_key(|&l| char_code(l));
            once
        }
    };
    if a.len() < 2 || a.len() != b.len() || output.len() != a.len() || a.len() - 2 > 4 {
        return false;
    }
    let p = a.len() - 2;
    let (i, j, k) = (a[p], a[p + 1], b[p + 1]);
    let distinct = |v: &[Label]| v.iter().enumerate().all(|(n, l)| !v[..n].contains(l));
    distinct(a)
        && distinct(b)
        && distinct(&[i, j, k])
        && a[..p] == b[..p]
        && a[..p] == output[..p]
        && b[p] == j
        && output[p] == i
        && output[p + 1] == k
}

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::kernel(NAME, msg.into())
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a size or offset is 2^32 or more"))
}

impl GpuKernel for Einsum {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_on_device(&self, index: usize) -> bool {
        self.matmul.as_ref().is_none_or(|m| m.reads_on_device(index))
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let y = &io.outputs[0];
        // Operands the matmul kernel pre-packed are not on the device: their shapes
        // come from the host.
        let shapes: Vec<Vec<usize>> = (0..io.inputs.len())
            .map(|i| match (io.inputs[i].as_ref(), io.host(i)) {
                (Some(t), _) => Ok(t.shape.clone()),
                (None, Some(t)) => Ok(t.shape().to_vec()),
                (None, None) => Err(err(format!("input {i} is not on the device"))),
            })
            .collect::<Result<_>>()?;
        let shape_refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        // Parsed as smelt-cpu parses it, so both take the same labels and sizes.
        let spec = EinsumSpec::new(&self.equation, &shape_refs).map_err(err)?;
        let out_shape = spec.out_shape();
        if out_shape != y.shape {
            return Err(err(format!("output shape {:?}, but '{}' gives {out_shape:?}", y.shape, self.equation)));
        }
        if let Some(m) = &self.matmul {
            return m.record(rec, io);
        }
        let ops: Vec<_> = (0..io.inputs.len()).map(|i| io.input(i, NAME)).collect::<Result<_>>()?;
        if ops.is_empty() || ops.len() > MAX_OPERANDS {
            return Err(err(format!("{} operands; the kernel takes 1 to {MAX_OPERANDS}", ops.len())));
        }
        // Contracted labels: in some operand, not in the output, in first-seen order.
        let mut summed: Vec<Label> = Vec::new();
        for labels in &spec.inputs {
            for &l in labels {
                if !spec.output.contains(&l) && !summed.contains(&l) {
                    summed.push(l);
                }
            }
        }
        let all: Vec<Label> = spec.output.iter().chain(&summed).copied().collect();
        let positions: usize = summed.iter().map(|&l| spec.sizes[l]).product();
        let mut params = vec![u(y.len())?, ops.len() as u32, u(spec.output.len())?, u(summed.len())?, u(positions)?];
        for &l in &all {
            params.push(u(spec.sizes[l])?);
        }
        let words = self.source.dtype.size() / 4;
        u(y.len() * words.max(1))?;
        for (t, labels) in ops.iter().zip(&spec.inputs) {
            // Element offsets, and for i64 the word index twice that, fit in u32.
            u(t.len() * words.max(1))?;
            let mut row_major = vec![1usize; t.shape.len()];
            for d in (0..t.shape.len().saturating_sub(1)).rev() {
                row_major[d] = row_major[d + 1] * t.shape[d + 1];
            }
            let mut strides = vec![0usize; all.len()];
            for (d, &l) in labels.iter().enumerate() {
                // A size-1 dim of a broadcast label reads one element throughout;
                // a repeated label walks the diagonal (both strides at once).
                let stride = if t.shape[d] == 1 && spec.sizes[l] != 1 { 0 } else { row_major[d] };
                let at = all.iter().position(|&x| x == l).expect("every operand label is in `all`");
                strides[at] += stride;
            }
            for s in strides {
                params.push(u(s)?);
            }
        }
        if y.is_empty() {
            return Ok(());
        }
        let mut binds: Vec<Bind> = ops.iter().map(|t| Bind::Tensor(t)).collect();
        while binds.len() < MAX_OPERANDS {
            binds.push(Bind::Placeholder);
        }
        binds.push(Bind::Tensor(y));
        let entry = if self.source.dtype == DType::I64 { "einsum_i64" } else { "einsum" };
        rec.dispatch(self.source, entry, &[("WG", WG as f64)], &binds, &params, grid_1d(y.len(), WG))
    }
}

#[cfg(test)]
mod tests {
    use super::is_batched_matmul;

    #[test]
    fn batched_matmul_equations_are_recognised() {
        for eq in [
            "ij,jk->ik",
            "ij,jk",
            "bij,bjk->bik",
            "bhij,bhjd->bhid",
            " b i j , b j k -> b i k",
            "abcdij,abcdjk->abcdik",
        ] {
            assert!(is_batched_matmul(eq), "{eq}");
        }
        for eq in [
            "ij,kj->ik",
            "bhid,bhjd->bhij",
            "ij,jk->ki",
            "bij,bjk->bki",
            "...ij,...jk->...ik",
            "ii,ij->ij",
            "ij,jk,kl->il",
            "abcdeij,abcdejk->abcdeik",
            "bij,cjk->bik",
            "ji,jk",
        ] {
            assert!(!is_batched_matmul(eq), "{eq}");
        }
    }
}
