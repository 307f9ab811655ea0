// Comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual) and logical ops
// (And, Or, Xor) with numpy broadcasting, giving bool. Bool tensors are one byte
// per element, and WGSL stores whole words, so each thread computes the four
// elements of one output word. Operands are read as raw words and decoded by
// ELEM, so one file serves every input type.
//
// Parameters (u32 words): n (output elements), out dims[8], a strides[8],
// b strides[8]; shapes right-aligned into 8 dims, a broadcast dim has stride 0.

override WG: u32 = 256u;
// Operand type: 0 f32, 1 f16, 2 i32, 3 i64, 4 bool/u8.
override ELEM: u32 = 0u;
// 0 Equal, 1 Less, 2 LessOrEqual, 3 Greater, 4 GreaterOrEqual, 5 And, 6 Or, 7 Xor.
override OP: u32 = 0u;

const MAX_RANK: u32 = 8u;
// Order of two values that do not compare (a NaN).
const UNORDERED: i32 = 2;

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

fn byte_of(word: u32, i: u32) -> u32 {
    return (word >> (8u * (i % 4u))) & 0xffu;
}

fn half_of(word: u32, i: u32) -> u32 {
    return (word >> (16u * (i % 2u))) & 0xffffu;
}

fn f16_bits_to_f32(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

// NaN by its bits (compilers may assume `v != v` is false).
fn f32_is_nan(bits: u32) -> bool {
    return (bits & 0x7fffffffu) > 0x7f800000u;
}

fn f16_is_nan(bits: u32) -> bool {
    return (bits & 0x7fffu) > 0x7c00u;
}

fn order_f32(x: f32, z: f32) -> i32 {
    return select(select(0, 1, x > z), -1, x < z);
}

fn order_i32(x: i32, z: i32) -> i32 {
    return select(select(0, 1, x > z), -1, x < z);
}

fn order_u32(x: u32, z: u32) -> i32 {
    return select(select(0, 1, x > z), -1, x < z);
}

// Order of a[ia] and b[ib]: -1, 0, 1, or UNORDERED.
fn order(ia: u32, ib: u32) -> i32 {
    switch ELEM {
        case 0u: {
            let x = a[ia];
            let z = b[ib];
            if (f32_is_nan(x) || f32_is_nan(z)) { return UNORDERED; }
            return order_f32(bitcast<f32>(x), bitcast<f32>(z));
        }
        case 1u: {
            let x = half_of(a[ia / 2u], ia);
            let z = half_of(b[ib / 2u], ib);
            if (f16_is_nan(x) || f16_is_nan(z)) { return UNORDERED; }
            return order_f32(f16_bits_to_f32(x), f16_bits_to_f32(z));
        }
        case 2u: {
            return order_i32(bitcast<i32>(a[ia]), bitcast<i32>(b[ib]));
        }
        case 3u: {
            // High words signed, then low words unsigned.
            let hi = order_i32(bitcast<i32>(a[2u * ia + 1u]), bitcast<i32>(b[2u * ib + 1u]));
            if (hi != 0) { return hi; }
            return order_u32(a[2u * ia], b[2u * ib]);
        }
        default: {
            return order_u32(byte_of(a[ia / 4u], ia), byte_of(b[ib / 4u], ib));
        }
    }
}

// Truth of a bool operand element.
fn truth_a(i: u32) -> bool {
    return byte_of(a[i / 4u], i) != 0u;
}

fn truth_b(i: u32) -> bool {
    return byte_of(b[i / 4u], i) != 0u;
}

fn result(ia: u32, ib: u32) -> bool {
    switch OP {
        case 5u: { return truth_a(ia) && truth_b(ib); }
        case 6u: { return truth_a(ia) || truth_b(ib); }
        case 7u: { return truth_a(ia) != truth_b(ib); }
        default: {}
    }
    let o = order(ia, ib);
    if (o == UNORDERED) {
        return false;
    }
    switch OP {
        case 0u: { return o == 0; }
        case 1u: { return o < 0; }
        case 2u: { return o <= 0; }
        case 3u: { return o > 0; }
        default: { return o >= 0; }
    }
}

@compute @workgroup_size(WG)
fn compare(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    let n = p[0];
    if (w * 4u >= n) {
        return;
    }
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let i = w * 4u + k;
        if (i >= n) {
            break;
        }
        var rest = i;
        var ia = 0u;
        var ib = 0u;
        for (var d = MAX_RANK; d > 0u; d -= 1u) {
            let dim = p[d];
            let coord = rest % dim;
            rest = rest / dim;
            ia += coord * p[8u + d];
            ib += coord * p[16u + d];
        }
        if (result(ia, ib)) {
            word |= 1u << (8u * k);
        }
    }
    y[w] = word;
}
