// Sum, Mean, Max and Min of any number of inputs with numpy broadcasting, as one
// dispatch per input folding it into the output: the first copies its input
// (broadcast), each later one combines. Mean's division rides on the last step
// (`divisor`). `T` (f32 or f16) is declared before this file; arithmetic is in f32.
//
// Parameters (u32 words): n, step (0 first, 1 later), divisor (f32 bits), input
// strides over out dims[8] then out dims[8]; shapes right-aligned into 8 dims, a
// broadcast dim has stride 0.

override WG: u32 = 256u;
// 0 Sum/Mean, 1 Max, 2 Min.
override OP: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// NaN by its bits (compilers may assume `v != v` is false); a NaN wins Max and
// Min, as on the CPU.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn combine(acc: f32, v: f32) -> f32 {
    switch OP {
        case 1u: { return select(acc, v, v > acc || is_nan(v)); }
        case 2u: { return select(acc, v, v < acc || is_nan(v)); }
        default: { return acc + v; }
    }
}

@compute @workgroup_size(WG)
fn fold_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var rest = i;
    var src = 0u;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[3u + MAX_RANK + d - 1u];
        src += (rest % dim) * p[3u + d - 1u];
        rest = rest / dim;
    }
    let v = f32(x[src]);
    var r = v;
    if (p[1] == 1u) {
        r = combine(f32(y[i]), v);
    }
    y[i] = T(r / bitcast<f32>(p[2]));
}
