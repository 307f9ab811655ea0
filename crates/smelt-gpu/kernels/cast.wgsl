// Cast between f32, i32, i64 and bool/u8 sources and f32, i32, i64 outputs, one
// thread per element. i64 values are read from their low word (|v| < 2^31).
// Float to integer truncates toward zero, as ONNX Cast does.
//
// Parameters (u32): n (elements).

override WG: u32 = 256u;
// Source: 0 f32, 1 i32, 2 i64, 3 one byte (bool/u8), 4 u32.
override SRC: u32 = 0u;
// Destination: 0 f32, 1 i32, 2 i64.
override DST: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn cast_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var f = 0.0;
    var n = 0;
    var is_float = false;
    switch SRC {
        case 0u: { f = bitcast<f32>(x[i]); is_float = true; }
        case 1u: { n = bitcast<i32>(x[i]); }
        case 2u: { n = bitcast<i32>(x[2u * i]); }
        case 3u: { n = i32((x[i / 4u] >> (8u * (i % 4u))) & 0xffu); }
        default: { n = i32(x[i]); }
    }
    if (DST == 0u) {
        if (!is_float) {
            f = f32(n);
        }
        y[i] = bitcast<u32>(f);
        return;
    }
    if (is_float) {
        n = i32(trunc(f));
    }
    if (DST == 1u) {
        y[i] = bitcast<u32>(n);
    } else {
        y[2u * i] = bitcast<u32>(n);
        y[2u * i + 1u] = select(0u, 0xffffffffu, n < 0);
    }
}
