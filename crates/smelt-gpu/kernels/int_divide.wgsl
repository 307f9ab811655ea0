// Integer Div and Mod on i32 and i64 with numpy broadcasting, as the CPU computes
// them: Div truncates toward zero, Mod with FMOD = 1 keeps the dividend's sign
// (C fmod) and with FMOD = 0 the divisor's (Python %); MIN / -1 wraps to MIN and
// MIN % -1 is 0. A zero divisor is an error on the CPU, which a kernel cannot
// raise: the thread that meets one reports it through the status words
// (status.wgsl, appended) and writes nothing, and the run fails at this node.
// Every element of the divisor is read by some thread whenever the output is not
// empty (broadcasting uses them all), so the GPU fails exactly when the CPU does.
//
// i64 is a (low, high) pair of u32 words, as in int_binary.wgsl: division is a
// 64-bit restoring long division on the magnitudes, signs applied afterwards.
//
// Parameters (u32 words): n (output elements), out dims[8], a strides[8],
// b strides[8], failure code; shapes right-aligned into 8 dims, a broadcast dim
// has stride 0.

override WG: u32 = 256u;
// 0 i32, 1 i64.
override ELEM: u32 = 0u;
// 0 Div, 1 Mod.
override OP: u32 = 0u;
// Mod only: 1 remainder with the dividend's sign, 0 with the divisor's.
override FMOD: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>, 2>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

fn div_i32(x: i32, z: i32) -> i32 {
    // WGSL defines MIN / -1 as MIN and MIN % -1 as 0, the wrapping results.
    if (OP == 0u) {
        return x / z;
    }
    let r = x % z;
    if (FMOD == 0u && r != 0 && ((r < 0) != (z < 0))) {
        return r + z;
    }
    return r;
}

fn is_negative(x: vec2<u32>) -> bool {
    return (x.y >> 31u) != 0u;
}

fn neg64(x: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(0u - x.x, 0u - x.y - select(0u, 1u, x.x != 0u));
}

fn add64(x: vec2<u32>, z: vec2<u32>) -> vec2<u32> {
    let lo = x.x + z.x;
    return vec2<u32>(lo, x.y + z.y + select(0u, 1u, lo < x.x));
}

fn sub64(x: vec2<u32>, z: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(x.x - z.x, x.y - z.y - select(0u, 1u, x.x < z.x));
}

// x < z as unsigned 64-bit values.
fn less_u64(x: vec2<u32>, z: vec2<u32>) -> bool {
    return x.y < z.y || (x.y == z.y && x.x < z.x);
}

struct QuotRem {
    q: vec2<u32>,
    r: vec2<u32>,
}

// Unsigned n / d and n % d for d != 0 and d <= 2^63 (a magnitude of an i64; this
// keeps the shifted remainder, below 2d, inside 64 bits).
fn divmod_u64(n: vec2<u32>, d: vec2<u32>) -> QuotRem {
    if (n.y == 0u && d.y == 0u) {
        return QuotRem(vec2<u32>(n.x / d.x, 0u), vec2<u32>(n.x % d.x, 0u));
    }
    var q = vec2<u32>(0u, 0u);
    var r = vec2<u32>(0u, 0u);
    // Bit by bit from the top: bring down bit i of n, subtract d where it fits.
    for (var k = 0u; k < 64u; k += 1u) {
        let i = 63u - k;
        let word = select(n.x, n.y, i >= 32u);
        let bit = (word >> (i & 31u)) & 1u;
        r = vec2<u32>((r.x << 1u) | bit, (r.y << 1u) | (r.x >> 31u));
        if (!less_u64(r, d)) {
            r = sub64(r, d);
            if (i >= 32u) {
                q.y |= 1u << (i - 32u);
            } else {
                q.x |= 1u << i;
            }
        }
    }
    return QuotRem(q, r);
}

fn div_i64(x: vec2<u32>, z: vec2<u32>) -> vec2<u32> {
    let nx = is_negative(x);
    let nz = is_negative(z);
    // |MIN| = 2^63 is its own two's complement, read as unsigned it is right.
    let qr = divmod_u64(select(x, neg64(x), nx), select(z, neg64(z), nz));
    if (OP == 0u) {
        // Truncation toward zero: the quotient is negative when the signs differ
        // (MIN / -1 gives 2^63, which wraps back to MIN).
        return select(qr.q, neg64(qr.q), nx != nz);
    }
    // The truncated remainder has the dividend's sign.
    let r = select(qr.r, neg64(qr.r), nx);
    let nonzero = r.x != 0u || r.y != 0u;
    if (FMOD == 0u && nonzero && nx != nz) {
        return add64(r, z);
    }
    return r;
}

@compute @workgroup_size(WG)
fn int_divide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
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
    if (ELEM == 0u) {
        let z = bitcast<i32>(b[ib]);
        if (z == 0) {
            report_failure(p[25], 0);
            return;
        }
        y[i] = bitcast<u32>(div_i32(bitcast<i32>(a[ia]), z));
    } else {
        let z = vec2<u32>(b[2u * ib], b[2u * ib + 1u]);
        if (z.x == 0u && z.y == 0u) {
            report_failure(p[25], 0);
            return;
        }
        let r = div_i64(vec2<u32>(a[2u * ia], a[2u * ia + 1u]), z);
        y[2u * i] = r.x;
        y[2u * i + 1u] = r.y;
    }
}

