// Elementwise unary ops on a contiguous tensor: y = f(x), f chosen by the ACT
// override (codes in activation.wgsl). `T` is declared before this file (f32 or
// f16); arithmetic is in f32. Parameters: n.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) { return; }
    y[i] = T(activate(f32(x[i])));
}
