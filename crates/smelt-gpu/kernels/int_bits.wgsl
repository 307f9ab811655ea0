// Integer unary ops (Neg, Abs, Sign, BitwiseNot, Relu) on 8-, 16-, 32- and 64-bit
// integers, and BitShift (with numpy broadcasting) on unsigned ones. Results wrap
// as the CPU's: Neg and Abs of the most negative value give it back.
//
// Storage is array<u32>: 8- and 16-bit elements are packed four or two to a word
// and each thread writes one whole output word, so no two threads share a word.
// In the last word, lanes past the tensor's end keep what the buffer held. 64-bit
// elements are (low, high) word pairs, one thread per element.
//
// Parameters (u32): int_unary: words (threads), n (elements).
//                   bit_shift: words (threads), n, out dims[8], a strides[8],
//                   b strides[8] (elements; broadcast dims have stride 0).

override WG: u32 = 256u;
// Element width in bits: 8, 16, 32 or 64.
override BITS: u32 = 32u;
// 1 for signed types (int_unary).
override SIGNED: u32 = 1u;
// int_unary: 0 Neg, 1 Abs, 2 Sign, 3 BitwiseNot, 4 Relu. bit_shift: 0 right, 1 left.
override OP: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

// The width of a narrow element: BITS, or 32 when BITS is 64 (those paths do not
// use it; this keeps every shift below 32 for the override evaluation).
fn narrow() -> u32 {
    return select(BITS, 32u, BITS == 64u);
}

// Elements per 32-bit word.
fn lanes() -> u32 {
    return 32u / narrow();
}

fn mask() -> u32 {
    return 0xffffffffu >> (32u - narrow());
}

// Element e of a BITS-wide array, zero-extended.
fn lane_of(word: u32, e: u32) -> u32 {
    return (word >> (narrow() * (e % lanes()))) & mask();
}

fn sign_extend(v: u32) -> i32 {
    let unused = 32u - narrow();
    return bitcast<i32>(v << unused) >> unused;
}

// One element of at most 32 bits (zero-extended in, masked out).
fn unary_narrow(v: u32) -> u32 {
    var r: u32;
    if (SIGNED == 1u) {
        let s = sign_extend(v);
        switch OP {
            case 0u: { r = bitcast<u32>(0 - s); }
            case 1u: { r = bitcast<u32>(select(s, 0 - s, s < 0)); }
            case 2u: { r = bitcast<u32>(sign(s)); }
            case 3u: { r = ~v; }
            default: { r = bitcast<u32>(max(s, 0)); }
        }
    } else {
        switch OP {
            case 0u: { r = 0u - v; }
            case 2u: { r = select(0u, 1u, v != 0u); }
            case 3u: { r = ~v; }
            default: { r = v; }
        }
    }
    return r & mask();
}

fn neg64(v: vec2<u32>) -> vec2<u32> {
    let lo = ~v.x + 1u;
    return vec2<u32>(lo, ~v.y + select(0u, 1u, lo == 0u));
}

fn unary_wide(v: vec2<u32>) -> vec2<u32> {
    let negative = SIGNED == 1u && (v.y & 0x80000000u) != 0u;
    switch OP {
        case 0u: { return neg64(v); }
        case 1u: { return select(v, neg64(v), negative); }
        case 2u: {
            if (negative) {
                return vec2<u32>(0xffffffffu, 0xffffffffu);
            }
            return vec2<u32>(select(0u, 1u, any(v != vec2<u32>(0u))), 0u);
        }
        case 3u: { return ~v; }
        default: { return select(v, vec2<u32>(0u), negative); }
    }
}

@compute @workgroup_size(WG)
fn int_unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Both entries share the binding layout; b is not read here.
    _ = &b;
    let w = gid.x + gid.y * nwg.x * WG;
    if (w >= p[0]) {
        return;
    }
    if (BITS == 64u) {
        let r = unary_wide(vec2<u32>(a[2u * w], a[2u * w + 1u]));
        y[2u * w] = r.x;
        y[2u * w + 1u] = r.y;
        return;
    }
    let n = p[1];
    let first = w * lanes();
    let src = a[w];
    var word = 0u;
    for (var l = 0u; l < lanes(); l += 1u) {
        let shift = narrow() * l;
        if (first + l < n) {
            word |= unary_narrow((src >> shift) & mask()) << shift;
        } else {
            word |= y[w] & (mask() << shift);
        }
    }
    y[w] = word;
}

// Shifts of unsigned values; amounts of the width or more give 0 (numpy's answer).
fn shift_narrow(v: u32, s: u32) -> u32 {
    if (s >= narrow()) {
        return 0u;
    }
    return select(v >> s, (v << s) & mask(), OP == 1u);
}

fn shift_wide(v: vec2<u32>, s: vec2<u32>) -> vec2<u32> {
    if (s.y != 0u || s.x >= 64u) {
        return vec2<u32>(0u);
    }
    let k = s.x;
    if (k == 0u) {
        return v;
    }
    if (OP == 1u) {
        if (k >= 32u) {
            return vec2<u32>(0u, v.x << (k - 32u));
        }
        return vec2<u32>(v.x << k, (v.y << k) | (v.x >> (32u - k)));
    }
    if (k >= 32u) {
        return vec2<u32>(v.y >> (k - 32u), 0u);
    }
    return vec2<u32>((v.x >> k) | (v.y << (32u - k)), v.y >> k);
}

// The elements of a and b that output element e reads.
fn operands(e: u32) -> vec2<u32> {
    var rest = e;
    var ia = 0u;
    var ib = 0u;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[1u + d];
        let coord = rest % dim;
        rest = rest / dim;
        ia += coord * p[9u + d];
        ib += coord * p[17u + d];
    }
    return vec2<u32>(ia, ib);
}

@compute @workgroup_size(WG)
fn bit_shift(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    if (w >= p[0]) {
        return;
    }
    if (BITS == 64u) {
        let i = operands(w);
        let r = shift_wide(vec2<u32>(a[2u * i.x], a[2u * i.x + 1u]), vec2<u32>(b[2u * i.y], b[2u * i.y + 1u]));
        y[2u * w] = r.x;
        y[2u * w + 1u] = r.y;
        return;
    }
    let n = p[1];
    let first = w * lanes();
    var word = 0u;
    for (var l = 0u; l < lanes(); l += 1u) {
        let e = first + l;
        let shift = narrow() * l;
        if (e < n) {
            let i = operands(e);
            let v = lane_of(a[i.x / lanes()], i.x);
            let s = lane_of(b[i.y / lanes()], i.y);
            word |= shift_narrow(v, s) << shift;
        } else {
            word |= y[w] & (mask() << shift);
        }
    }
    y[w] = word;
}
