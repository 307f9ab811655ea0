//! The kernel test harness: one GPU context per test binary, random inputs, and a
//! check that runs an op on the GPU and on the CPU reference and compares.
#![allow(dead_code)]

use smelt_gpu::{GpuConfig, GpuContext};
use smelt_ir::{half::f16, DType, Op, Tensor};
use std::sync::{Arc, OnceLock};

/// The GPU for these tests, or `None` (test skipped) when there is none. With
/// `SMELT_REQUIRE_GPU=1` a missing GPU fails the test instead.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CONTEXT: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CONTEXT.get_or_init(|| GpuContext::new(None, GpuConfig::default()).map_err(|e| e.to_string()));
    match ctx {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if std::env::var("SMELT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("SMELT_REQUIRE_GPU=1 but no GPU could be opened: {e}");
            }
            eprintln!("skipped: no GPU ({e}); set SMELT_REQUIRE_GPU=1 to make this a failure");
            None
        }
    }
}

/// SplitMix64, so every run sees the same inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A tensor of `dtype` with values uniform in [lo, hi) (integers truncated).
pub fn random(rng: &mut Rng, dtype: DType, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let values: Vec<f32> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    match dtype {
        DType::F32 => Tensor::from_vec(shape, values).unwrap(),
        DType::F16 => Tensor::from_vec(shape, values.into_iter().map(f16::from_f32).collect::<Vec<_>>()).unwrap(),
        DType::I32 => Tensor::from_vec(shape, values.into_iter().map(|v| v as i32).collect::<Vec<_>>()).unwrap(),
        DType::I64 => Tensor::from_vec(shape, values.into_iter().map(|v| v as i64).collect::<Vec<_>>()).unwrap(),
        DType::Bool => Tensor::from_bools(shape, &values.into_iter().map(|v| v > 0.5).collect::<Vec<_>>()).unwrap(),
        other => panic!("random() does not make {other}"),
    }
}

/// Tolerance: |gpu - cpu| <= abs + rel * |cpu|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

pub const F32_TOL: Tol = Tol { abs: 1e-5, rel: 1e-4 };
pub const F16_TOL: Tol = Tol { abs: 2e-3, rel: 4e-3 };
pub const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

/// Runs `op` on the GPU and with smelt-cpu's reference and compares every output.
/// `constant[i]`: hand input i to the kernel as a constant (weights). Panics, naming
/// the op and shapes, on a missing kernel or a mismatch.
pub fn check(ctx: &GpuContext, op: &Op, inputs: &[Option<&Tensor>], constant: &[bool], n_outputs: usize, tol: Tol) {
    let what = format!(
        "{} on {:?}",
        op.name(),
        inputs.iter().map(|t| t.map(|t| (t.dtype(), t.shape().to_vec()))).collect::<Vec<_>>()
    );
    let expected = smelt_cpu::eval_alloc(op, inputs, n_outputs).unwrap_or_else(|e| panic!("{what}: CPU: {e}"));
    let got = smelt_gpu::exec::run_op(ctx, op, inputs, constant, n_outputs)
        .unwrap_or_else(|e| panic!("{what}: GPU: {e}"))
        .unwrap_or_else(|| panic!("{what}: no GPU kernel takes this op"));
    assert_eq!(got.len(), expected.len(), "{what}: output count");
    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.dtype(), e.dtype(), "{what}: output {k} dtype");
        assert_eq!(g.shape(), e.shape(), "{what}: output {k} shape");
        let (gv, ev) = (g.to_f64_vec(), e.to_f64_vec());
        let mut worst = (0.0f64, 0usize);
        for (i, (a, b)) in gv.iter().zip(&ev).enumerate() {
            let same_nan = a.is_nan() && b.is_nan();
            let same_inf = a.is_infinite() && a == b;
            let err = (a - b).abs();
            if !(same_nan || same_inf || err <= tol.abs + tol.rel * b.abs()) {
                panic!("{what}: output {k} element {i}: GPU {a} vs CPU {b} (|diff| {err}, tolerance {tol:?})");
            }
            if err > worst.0 {
                worst = (err, i);
            }
        }
    }
}

/// Builds `op`'s kernel and records it for `inputs` and the output `out` as given
/// (no shape inference in between, so a kernel's own checks are reached), and
/// returns the error recording gave. Panics when no kernel takes the op or when
/// recording succeeds: for tests of the errors a kernel gives on what it cannot run.
pub fn record_error(ctx: &GpuContext, op: &Op, inputs: &[Option<&Tensor>], out: (DType, &[usize])) -> String {
    use smelt_gpu::{GpuTensor, InputInfo, KernelRequest, NodeIo, Recorder};
    let request = KernelRequest {
        op,
        inputs: inputs
            .iter()
            .map(|t| {
                t.map(|t| InputInfo { dtype: t.dtype(), shape: smelt_ir::Shape::fixed(t.shape()), constant: None })
            })
            .collect(),
        outputs: vec![out.0],
        ctx,
    };
    let kernel = smelt_gpu::ops::build_kernel(&request)
        .unwrap_or_else(|| panic!("{}: no GPU kernel takes it", op.name()))
        .unwrap_or_else(|e| panic!("{}: build failed: {e}", op.name()));
    let upload = |dtype: DType, shape: &[usize], bytes: &[u8]| GpuTensor {
        buffer: ctx.upload("test", if bytes.is_empty() { &[0u8; 4] } else { bytes }).unwrap(),
        offset: 0,
        dtype,
        shape: shape.to_vec(),
    };
    let device: Vec<Option<GpuTensor>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.filter(|_| kernel.reads_on_device(i)).map(|t| upload(t.dtype(), t.shape(), t.bytes())))
        .collect();
    let y = upload(out.0, out.1, &vec![0u8; smelt_ir::num_elements(out.1) * out.0.size()]);
    let mut rec = Recorder::new(ctx);
    match kernel.record(&mut rec, &NodeIo { inputs: &device, host: inputs, outputs: std::slice::from_ref(&y) }) {
        Ok(()) => panic!("{}: recording succeeded", op.name()),
        Err(e) => e.to_string(),
    }
}
