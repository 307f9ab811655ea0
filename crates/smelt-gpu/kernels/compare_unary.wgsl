// Not, IsNaN and IsInf, giving bool (one byte per element; each thread computes
// the four elements of one output word). The input is read as raw words and
// decoded by ELEM.
//
// Parameters (u32 words): n (elements).

override WG: u32 = 256u;
// Input type: 0 f32, 1 f16, 4 bool (Not).
override ELEM: u32 = 0u;
// 0 Not, 1 IsNaN, 2 IsInf (both signs), 3 IsInf (+inf only), 4 IsInf (-inf only),
// 5 IsInf detecting neither sign (always false).
override OP: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// The element's bits widened to f32 layout, so one test serves f32 and f16.
fn f32_bits(i: u32) -> u32 {
    if (ELEM == 1u) {
        let h = (x[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
        let sign = (h & 0x8000u) << 16u;
        let mag = h & 0x7fffu;
        // Only NaN and infinity matter here: map the f16 specials to f32 ones and
        // every finite value to a finite one.
        if (mag > 0x7c00u) { return sign | 0x7fc00000u; }
        if (mag == 0x7c00u) { return sign | 0x7f800000u; }
        return sign;
    }
    return x[i];
}

fn test_element(i: u32) -> bool {
    if (OP == 0u) {
        return ((x[i / 4u] >> (8u * (i % 4u))) & 0xffu) == 0u;
    }
    let bits = f32_bits(i);
    let mag = bits & 0x7fffffffu;
    let negative = (bits & 0x80000000u) != 0u;
    switch OP {
        case 1u: { return mag > 0x7f800000u; }
        case 2u: { return mag == 0x7f800000u; }
        case 3u: { return mag == 0x7f800000u && !negative; }
        case 4u: { return mag == 0x7f800000u && negative; }
        default: { return false; }
    }
}

@compute @workgroup_size(WG)
fn test_unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    let n = p[0];
    if (w * 4u >= n) {
        return;
    }
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let i = w * 4u + k;
        if (i < n && test_element(i)) {
            word |= 1u << (8u * k);
        }
    }
    y[w] = word;
}
