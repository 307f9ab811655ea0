//! Failures the GPU layer must turn into errors that name what went wrong, and
//! after which the context keeps working: a shader that does not compile, a
//! buffer larger than the device allows.

mod common;

use common::gpu;
use smelt_gpu::kernel::{grid_1d, Bind, KernelSource, Recorder};
use smelt_gpu::GpuTensor;
use smelt_ir::DType;

static BROKEN: KernelSource = KernelSource {
    name: "broken_for_test",
    wgsl: "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n\
           @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { y[g.x] = undefined_name; }",
    dtype: DType::F32,
    entries: &["main"],
    needs_f16: false,
    override_sets: || vec![vec![]],
};

#[test]
fn a_shader_that_does_not_compile_is_an_error_naming_the_kernel() {
    let Some(ctx) = gpu() else { return };
    let y = GpuTensor { buffer: ctx.upload("y", &[0u8; 256]).unwrap(), offset: 0, dtype: DType::F32, shape: vec![64] };
    for _ in 0..2 {
        let mut rec = Recorder::new(&ctx);
        let err = rec.dispatch(&BROKEN, "main", &[], &[Bind::Tensor(&y)], &[], grid_1d(64, 64)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken_for_test") && text.contains("does not compile"), "{text}");
    }
    // The error was the kernel's: the device has nothing left to report.
    ctx.check().unwrap();
}

#[test]
fn a_buffer_larger_than_the_device_allows_is_an_error() {
    let Some(ctx) = gpu() else { return };
    let too_big = ctx.limits.max_buffer_size + 1;
    let Err(err) = ctx.acquire(too_big) else { panic!("a {too_big}-byte buffer was allocated") };
    let err = err.to_string();
    assert!(err.contains(&too_big.to_string()) && err.contains("more than this GPU allows"), "{err}");
    ctx.check().unwrap();
    let ok = ctx.acquire(1024).map_err(|e| e.to_string()).expect("a small buffer after the refusal");
    ctx.release(ok);
}
