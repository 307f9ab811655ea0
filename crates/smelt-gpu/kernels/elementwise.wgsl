// Elementwise binary ops with numpy broadcasting. `T` (the storage
// type, f32 or f16) is declared by a line the Rust side puts before this file;
// arithmetic is done in f32. Dims are run-time parameters, so one pipeline serves
// every shape.
//
// Parameters (u32 words): n, rank, out dims[8], a strides[8], b strides[8],
// a offset, b offset. Shapes are right-aligned into 8 dims; a broadcast dim has
// stride 0.

override WG: u32 = 256u;
// Binary op code (see src/ops/elementwise.rs).
override OP: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> a: array<T>;
@group(0) @binding(1) var<storage, read_write> b: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Source index of output element `i` for the operand whose strides start at p[s].
fn source_index(i: u32, s: u32) -> u32 {
    var rest = i;
    var index = 0u;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[1u + d];
        let coord = rest % dim;
        rest = rest / dim;
        index += coord * p[s + d - 1u];
    }
    return index;
}

fn pow_f32(x: f32, e: f32) -> f32 {
    if (e == 2.0) { return x * x; }
    if (e == 3.0) { return x * x * x; }
    if (e == 1.0) { return x; }
    if (e == 0.0) { return 1.0; }
    let r = pow(abs(x), e);
    if (x < 0.0) {
        if (fract(e) != 0.0) { return quiet_nan(); }
        if (fract(e * 0.5) != 0.0) { return -r; }
    }
    return r;
}

fn is_inf_f32(v: f32) -> bool {
    // By the bits: a compiler may assume floats are finite in comparisons.
    return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
}

// C fmod. x - z * trunc(x / z) is NaN (inf * 0) for a finite x and an infinite
// z, where fmod gives x (ONNX's Mod edge-case tests check it).
fn fmod_f32(x: f32, z: f32) -> f32 {
    if (is_inf_f32(z) && !is_inf_f32(x)) {
        return x;
    }
    return x - z * trunc(x / z);
}

fn binary_f32(x: f32, z: f32) -> f32 {
    switch OP {
        case 0u: { return x + z; }
        case 1u: { return x - z; }
        case 2u: { return x * z; }
        case 3u: { return x / z; }
        case 4u: { return pow_f32(x, z); }
        // C fmod: the sign of the dividend.
        case 5u: { return fmod_f32(x, z); }
        // Python %: the sign of the divisor.
        case 6u: {
            let r = fmod_f32(x, z);
            return select(r, r + z, r != 0.0 && ((r < 0.0) != (z < 0.0)));
        }
        case 7u: { return select(x, z * x, x < 0.0); }
        case 8u: { return max(x, z); }
        case 9u: { return min(x, z); }
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p[0]) { return; }
    let ia = p[26] + source_index(i, 10u);
    let ib = p[27] + source_index(i, 18u);
    y[i] = T(activate(binary_f32(f32(a[ia]), f32(b[ib]))));
}
