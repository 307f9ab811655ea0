// Einsum, one thread per output element: out[o] = sum over the contracted index
// space s of the product over operands k of op_k[offset_k(o, s)]. The host parses
// the equation against the shapes (src/ops/einsum.rs) and passes, for every
// operand and every index letter, the element stride the letter moves it by:
// 0 for a letter the operand lacks or broadcasts (size 1), the sum of both dims'
// strides for a repeated letter (a diagonal). Up to four operands; unused
// operand bindings get a placeholder. `T` is the storage type and `A` the type
// sums run in (f32 for f32/f16, i32 wrapping for i32), declared before this file;
// `einsum_i64` reads T = u32 words as (low, high) pairs and wraps in 64 bits.
//
// Parameters (u32): n (output elements), operands K, output letters R,
// contracted letters S, contracted positions (product of their sizes), then the
// R output sizes and S contracted sizes, then per operand its R + S strides.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> a0: array<T>;
@group(0) @binding(1) var<storage, read_write> a1: array<T>;
@group(0) @binding(2) var<storage, read_write> a2: array<T>;
@group(0) @binding(3) var<storage, read_write> a3: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> p: array<u32>;

fn load(k: u32, i: u32) -> A {
    switch k {
        case 0u: {
            return A(a0[i]);
        }
        case 1u: {
            return A(a1[i]);
        }
        case 2u: {
            return A(a2[i]);
        }
        default: {
            return A(a3[i]);
        }
    }
}

// Each operand's offset for output element i with every contracted letter at 0.
fn base_offsets(i: u32) -> array<u32, 4> {
    let K = min(p[1], 4u);
    let R = p[2];
    let L = R + p[3];
    let sb = 5u + L;
    var base: array<u32, 4>;
    var rem = i;
    for (var d = R; d > 0u; d -= 1u) {
        let c = rem % p[4u + d];
        rem = rem / p[4u + d];
        for (var k = 0u; k < K; k += 1u) {
            base[k] += c * p[sb + k * L + d - 1u];
        }
    }
    return base;
}

// The offsets at contracted position s (row-major over the contracted letters).
fn offsets_at(base: array<u32, 4>, s: u32) -> array<u32, 4> {
    let K = min(p[1], 4u);
    let R = p[2];
    let S = p[3];
    let L = R + S;
    let sb = 5u + L;
    var off = base;
    var r = s;
    for (var d = S; d > 0u; d -= 1u) {
        let c = r % p[4u + R + d];
        r = r / p[4u + R + d];
        for (var k = 0u; k < K; k += 1u) {
            off[k] += c * p[sb + k * L + R + d - 1u];
        }
    }
    return off;
}

@compute @workgroup_size(WG)
fn einsum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let K = min(p[1], 4u);
    let base = base_offsets(i);
    var acc = A(0);
    for (var s = 0u; s < p[4]; s += 1u) {
        let off = offsets_at(base, s);
        var prod = load(0u, off[0]);
        for (var k = 1u; k < K; k += 1u) {
            prod *= load(k, off[k]);
        }
        acc += prod;
    }
    y[i] = T(acc);
}

// ── 64-bit integers as (low, high) u32 pairs, wrapping like the CPU's i64 ──

fn load64(k: u32, i: u32) -> vec2<u32> {
    let w = 2u * i;
    switch k {
        case 0u: {
            return vec2<u32>(u32(a0[w]), u32(a0[w + 1u]));
        }
        case 1u: {
            return vec2<u32>(u32(a1[w]), u32(a1[w + 1u]));
        }
        case 2u: {
            return vec2<u32>(u32(a2[w]), u32(a2[w + 1u]));
        }
        default: {
            return vec2<u32>(u32(a3[w]), u32(a3[w + 1u]));
        }
    }
}

// The full 64-bit product of two u32, through 16-bit halves.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// Low 64 bits of a product: two's complement makes it the same for signed.
fn mul64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = mul_wide(a.x, b.x);
    return vec2<u32>(lo.x, lo.y + a.x * b.y + a.y * b.x);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

@compute @workgroup_size(WG)
fn einsum_i64(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let K = min(p[1], 4u);
    let base = base_offsets(i);
    var acc = vec2<u32>(0u, 0u);
    for (var s = 0u; s < p[4]; s += 1u) {
        let off = offsets_at(base, s);
        var prod = load64(0u, off[0]);
        for (var k = 1u; k < K; k += 1u) {
            prod = mul64(prod, load64(k, off[k]));
        }
        acc = add64(acc, prod);
    }
    y[2u * i] = T(acc.x);
    y[2u * i + 1u] = T(acc.y);
}
