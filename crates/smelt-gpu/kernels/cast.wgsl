// Cast between f32, f16, i32, i64, u32, i8 and bool/u8 sources and f32, f16,
// i32, i64, bool and u8/i8 outputs. i64 sources are read from their low word
// (|v| < 2^31). f16 is converted by bit manipulation (exact widening, narrowing
// rounded to nearest even), so no shader-f16 support is needed. Floats to
// integers truncate toward zero, NaN and out-of-range values giving i32::MIN
// (i64::MIN for i64 outputs) as x86's cvttss2si does (what the CPU reference
// matches); narrow integer outputs keep the low bits. Anything to bool is x != 0 (NaN is true).
//
// Wide outputs (f32, i32, i64): one thread per element. f16, bool and u8
// outputs are packed in 32-bit words: one thread per output word, so no two
// threads write one word; lanes past the end keep what the buffer held.
//
// Parameters (u32): threads, n (elements).

override WG: u32 = 256u;
// Source: 0 f32, 1 i32, 2 i64, 3 one byte unsigned (bool/u8), 4 u32, 5 f16, 6 i8.
override SRC: u32 = 0u;
// Destination: 0 f32, 1 i32, 2 i64, 3 f16, 4 bool, 5 u8/i8.
override DST: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

struct Value {
    f: f32,
    n: i32,
    is_float: bool,
    nonzero: bool,
}

fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0x1fu) {
        // Infinity, or NaN made quiet (as the CPU's widening does).
        return bitcast<f32>(sign | 0x7f800000u | select(0u, 0x400000u | (m << 13u), m != 0u));
    }
    if (e == 0u) {
        // Zero or subnormal: m * 2^-24, exact in f32.
        let v = f32(m) * 5.9604644775390625e-8;
        return select(v, -v, sign != 0u);
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// f32 bits to f16 bits, rounding to nearest even; overflow gives infinity, NaN
// stays NaN (quiet, with the top of its payload).
fn f32_to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = i32((b >> 23u) & 0xffu);
    let m = b & 0x7fffffu;
    if (e == 0xff) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let ee = e - 112;
    if (ee >= 31) {
        return sign | 0x7c00u;
    }
    var r: u32;
    var rem: u32;
    var half: u32;
    if (ee <= 0) {
        // Subnormal (or zero) in f16: the 24-bit significand shifted right.
        let shift = u32(14 - ee);
        if (shift >= 25u) {
            return sign;
        }
        let mant = m | 0x800000u;
        r = mant >> shift;
        rem = mant & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    } else {
        r = (u32(ee) << 10u) | (m >> 13u);
        rem = m & 0x1fffu;
        half = 0x1000u;
    }
    // A carry out of the significand moves into the exponent (up to infinity).
    if (rem > half || (rem == half && (r & 1u) == 1u)) {
        r += 1u;
    }
    return sign | r;
}

// (int32_t)f as x86-64 computes it.
fn cvtt_i32(f: f32) -> i32 {
    if (f >= -2147483648.0 && f < 2147483648.0) {
        return i32(f);
    }
    return i32(-2147483647 - 1);
}

// (int64_t)f as x86-64 computes it, as (low, high) words: exact below 2^63 in
// magnitude (an f32 that large is an integer), i64::MIN for NaN and beyond.
fn cvtt_i64(f: f32) -> vec2<u32> {
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) {
        return vec2<u32>(0u, 0x80000000u);
    }
    let a = trunc(abs(f));
    // Scaling by 2^-32 and back is exact, so hi and lo are a's exact halves.
    let hi = floor(a * 2.3283064365386963e-10);
    let lo = a - hi * 4294967296.0;
    var r = vec2<u32>(u32(lo), u32(hi));
    if (f < 0.0) {
        let l = ~r.x + 1u;
        r = vec2<u32>(l, ~r.y + select(0u, 1u, l == 0u));
    }
    return r;
}

fn load(i: u32) -> Value {
    var v = Value(0.0, 0, false, false);
    switch SRC {
        case 0u: {
            v.f = bitcast<f32>(x[i]);
            v.is_float = true;
            v.nonzero = (x[i] & 0x7fffffffu) != 0u;
        }
        case 1u: { v.n = bitcast<i32>(x[i]); v.nonzero = v.n != 0; }
        case 2u: { v.n = bitcast<i32>(x[2u * i]); v.nonzero = (x[2u * i] | x[2u * i + 1u]) != 0u; }
        case 3u: { v.n = i32((x[i / 4u] >> (8u * (i % 4u))) & 0xffu); v.nonzero = v.n != 0; }
        case 4u: {
            v.n = bitcast<i32>(x[i]);
            // Through f32 as unsigned: values past 2^31 are not negative.
            v.f = f32(x[i]);
            v.is_float = DST == 0u || DST == 3u;
            v.nonzero = v.n != 0;
        }
        case 5u: {
            let h = (x[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
            v.f = f16_to_f32(h);
            v.is_float = true;
            v.nonzero = (h & 0x7fffu) != 0u;
        }
        default: {
            v.n = bitcast<i32>(x[i / 4u] << (24u - 8u * (i % 4u))) >> 24u;
            v.nonzero = v.n != 0;
        }
    }
    return v;
}

fn as_int(v: Value) -> i32 {
    return select(v.n, cvtt_i32(v.f), v.is_float);
}

fn as_float(v: Value) -> f32 {
    return select(f32(v.n), v.f, v.is_float);
}

// Output element i as the low bits of a word (packed outputs).
fn narrow(i: u32) -> u32 {
    let v = load(i);
    switch DST {
        case 3u: { return f32_to_f16(bitcast<u32>(as_float(v))); }
        case 4u: { return select(0u, 1u, v.nonzero); }
        default: { return bitcast<u32>(as_int(v)) & 0xffu; }
    }
}

@compute @workgroup_size(WG)
fn cast_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p[0]) {
        return;
    }
    if (DST <= 2u) {
        let v = load(t);
        switch DST {
            case 0u: { y[t] = bitcast<u32>(as_float(v)); }
            case 1u: { y[t] = bitcast<u32>(as_int(v)); }
            default: {
                if (v.is_float) {
                    let r = cvtt_i64(v.f);
                    y[2u * t] = r.x;
                    y[2u * t + 1u] = r.y;
                } else {
                    y[2u * t] = bitcast<u32>(v.n);
                    // u32 sources zero-extend.
                    y[2u * t + 1u] = select(0u, 0xffffffffu, v.n < 0 && SRC != 4u);
                }
            }
        }
        return;
    }
    let bits = select(8u, 16u, DST == 3u);
    let per = 32u / bits;
    let mask = 0xffffffffu >> (32u - bits);
    var word = 0u;
    for (var l = 0u; l < per; l += 1u) {
        let e = t * per + l;
        if (e < p[1]) {
            word |= narrow(e) << (bits * l);
        } else {
            word |= y[t] & (mask << (bits * l));
        }
    }
    y[t] = word;
}
