// Einsum, one thread per output element: out[o] = sum over the contracted index
// space s of the product over operands k of op_k[offset_k(o, s)]. The host parses
// the equation against the shapes (src/ops/einsum.rs) and passes, for every
// operand and every index letter, the element stride the letter moves it by:
// 0 for a letter the operand lacks or broadcasts (size 1), the sum of both dims'
// strides for a repeated letter (a diagonal). Up to four operands; unused
// operand bindings get a placeholder. `T` is the storage type and `A` the type
// sums run in (f32 for f32/f16, i32 wrapping for i32), declared before this file.
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

@compute @workgroup_size(WG)
fn einsum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let K = min(p[1], 4u);
    let R = p[2];
    let S = p[3];
    let L = R + S;
    let sb = 5u + L;
    var base: array<u32, 4>;
    for (var k = 0u; k < 4u; k += 1u) {
        base[k] = 0u;
    }
    var rem = i;
    for (var d = R; d > 0u; d -= 1u) {
        let c = rem % p[4u + d];
        rem = rem / p[4u + d];
        for (var k = 0u; k < K; k += 1u) {
            base[k] += c * p[sb + k * L + d - 1u];
        }
    }
    var acc = A(0);
    for (var s = 0u; s < p[4]; s += 1u) {
        var off = base;
        var r = s;
        for (var d = S; d > 0u; d -= 1u) {
            let c = r % p[4u + R + d];
            r = r / p[4u + R + d];
            for (var k = 0u; k < K; k += 1u) {
                off[k] += c * p[sb + k * L + R + d - 1u];
            }
        }
        var prod = load(0u, off[0]);
        for (var k = 1u; k < K; k += 1u) {
            prod *= load(k, off[k]);
        }
        acc += prod;
    }
    y[i] = T(acc);
}
