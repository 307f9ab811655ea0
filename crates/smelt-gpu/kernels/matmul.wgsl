// Batched matrix product with a fused epilogue:
//   Y[b, m, n] = act(alpha * sum_k A[b, m, k] * B[b, k, n] + beta * C[m, n])
// A and B are read through strides, so transposed operands (Gemm's transA/transB)
// and broadcast batches need no copies.
//
// Two entry points, chosen by the launcher from the shape:
// - `matmul`: register-tiled GEMM. A workgroup of TT x TT threads computes a
//   (MT TT) x (MT TT) tile of Y; each thread an MT x MT micro-tile held in vec4
//   registers. K advances BK at a time through workgroup memory.
// - `gemv`: one row of A against B (M = 1, GPT-2's decode step), where a tile
//   would leave all but one of its rows idle and the product is bound by reading B.
//
// Parameters (u32): M, N, K, batch, a_off, a_sm, a_sk, b_off, b_sk, b_sn, y_off,
// y_sm, c_off, c_sm, c_sn, has_c, alpha (f32 bits), beta (f32 bits), batch dims[4],
// a batch strides[4], b batch strides[4], y batch strides[4]. Offsets and strides
// are in elements.
// Grids: matmul (ceil(N / (MT TT)), ceil(M / (MT TT)), batch);
//        gemv (ceil(N / 32), M, batch).

// Tile shape, three sets used (the launcher picks by how many workgroups a shape
// makes, so a GPU of ~100 multiprocessors has work for each):
//   TT 16, MT 8: 128 x 128 tiles, 256 threads: most reuse per load, for large Y;
//   TT 16, MT 4: 64 x 64 tiles, 256 threads: 4x the workgroups, same occupancy;
//   TT 8,  MT 4: 32 x 32 tiles, 64 threads: small Y (BERT's 128-row products).
// MT is 4 or 8 (the micro-tile code is written for those two).
override TT: u32 = 16u;
override MT: u32 = 8u;
// K step. 16 halves the barriers of 8 and still fits two 128 x 16 tiles (17 KiB)
// in the 32 KiB of workgroup memory that lavapipe (and WebGPU) guarantee.
const BK: u32 = 16u;
// Row stride of the workgroup tiles in vec4s for TT = 16: 128 columns plus one
// vec4 of padding, so the column-wise stores of a k-contiguous A do not all land
// in the same memory bank. The arrays are sized for TT = 16 (the largest).
const TILE_VEC4S: u32 = 528u; // BK * (128 / 4 + 1)

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// A tile transposed ([BK][rows]) and B tile ([BK][cols]), vec4-wide so a thread
// reads four rows (or columns) of one k with one load.
var<workgroup> a_tile: array<vec4<f32>, TILE_VEC4S>;
var<workgroup> b_tile: array<vec4<f32>, TILE_VEC4S>;
var<workgroup> gemv_part: array<f32, 256>;

// (A, B, Y) base offsets of batch `z`, dim by dim (innermost last).
fn batch_bases(z: u32) -> vec3<u32> {
    var rest = z;
    var base = vec3<u32>(p[4], p[7], p[10]);
    for (var d = 4u; d > 0u; d -= 1u) {
        let dim = p[17u + d];
        let coord = rest % dim;
        rest = rest / dim;
        base += coord * vec3<u32>(p[21u + d], p[25u + d], p[29u + d]);
    }
    return base;
}

// The epilogue for one output element: alpha, beta * C, activation.
fn finish(gm: u32, gn: u32, acc: f32) -> f32 {
    var v = bitcast<f32>(p[16]) * acc;
    if (p[15] != 0u) {
        v += bitcast<f32>(p[17]) * c[p[12] + gm * p[13] + gn * p[14]];
    }
    return activate(v);
}

// Stores up to four consecutive columns of one row (those inside M x N).
fn store4(y_base: u32, gm: u32, gn: u32, v: vec4<f32>) {
    let M = p[0];
    let N = p[1];
    if (gm >= M) {
        return;
    }
    let row = y_base + gm * p[11];
    for (var j = 0u; j < 4u; j += 1u) {
        if (gn + j < N) {
            y[row + gn + j] = finish(gm, gn + j, v[j]);
        }
    }
}

@compute @workgroup_size(TT, TT)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let M = p[0];
    let N = p[1];
    let K = p[2];
    let bases = batch_bases(wid.z);
    let a_sm = p[5];
    let a_sk = p[6];
    let b_sk = p[8];
    let b_sn = p[9];
    let tile = MT * TT; // rows (and columns) of Y per workgroup
    let threads = TT * TT;
    let row0 = wid.y * tile;
    let col0 = wid.x * tile;
    let tid = lid.y * TT + lid.x;
    let stride = tile + 4u; // floats per tile row, padded (see TILE_VEC4S)
    let stride4 = stride / 4u;
    // Each thread loads `loads` elements of each tile per K step, along a line:
    // one coordinate fixed, the other stepping by `threads / extent` - walked so
    // that consecutive threads read consecutive addresses, for plain and
    // transposed operands alike. Offsets are worked out here once; the loop only
    // adds steps.
    let loads = BK * tile / threads;
    var a_m0: u32; // first (row, k) of this thread in the A tile, and the step
    var a_k0: u32;
    var a_dm = 0u;
    var a_dk = 0u;
    if (a_sk == 1u) {
        a_m0 = tid / BK;
        a_k0 = tid % BK;
        a_dm = threads / BK;
    } else {
        a_k0 = tid / tile;
        a_m0 = tid % tile;
        a_dk = threads / tile;
    }
    var b_k0: u32;
    var b_n0: u32;
    var b_dk = 0u;
    var b_dn = 0u;
    if (b_sn == 1u || b_sk != 1u) {
        b_k0 = tid / tile;
        b_n0 = tid % tile;
        b_dk = threads / tile;
    } else {
        b_n0 = tid / BK;
        b_k0 = tid % BK;
        b_dn = threads / BK;
    }
    let a_gstep = a_dm * a_sm + a_dk * a_sk;
    let a_sstep = a_dk * stride + a_dm;
    let b_gstep = b_dk * b_sk + b_dn * b_sn;
    let b_sstep = b_dk * stride + b_dn;
    var a_at = bases.x + (row0 + a_m0) * a_sm + a_k0 * a_sk; // at k0 = 0
    var b_at = bases.y + b_k0 * b_sk + (col0 + b_n0) * b_sn;

    // This thread's micro-tile: rows 4 ty .. 4 ty + 3 and tile/2 + the same, and
    // likewise for columns. Two halves rather than 8 adjacent rows keep the vec4
    // reads of a warp on distinct banks. Sixteen named vec4s, not an array: an
    // array indexed in a loop the driver does not unroll lives in (slow) local
    // memory.
    var c0l = vec4<f32>(0.0);
    var c0h = vec4<f32>(0.0);
    var c1l = vec4<f32>(0.0);
    var c1h = vec4<f32>(0.0);
    var c2l = vec4<f32>(0.0);
    var c2h = vec4<f32>(0.0);
    var c3l = vec4<f32>(0.0);
    var c3h = vec4<f32>(0.0);
    var c4l = vec4<f32>(0.0);
    var c4h = vec4<f32>(0.0);
    var c5l = vec4<f32>(0.0);
    var c5h = vec4<f32>(0.0);
    var c6l = vec4<f32>(0.0);
    var c6h = vec4<f32>(0.0);
    var c7l = vec4<f32>(0.0);
    var c7h = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var i = 0u; i < loads; i += 1u) {
            let gm = row0 + a_m0 + i * a_dm;
            let gk = k0 + a_k0 + i * a_dk;
            var av = 0.0;
            if (gm < M && gk < K) {
                av = a[a_at + i * a_gstep];
            }
            let ai = a_k0 * stride + a_m0 + i * a_sstep;
            a_tile[ai / 4u][ai % 4u] = av;

            let gk2 = k0 + b_k0 + i * b_dk;
            let gn = col0 + b_n0 + i * b_dn;
            var bv = 0.0;
            if (gk2 < K && gn < N) {
                bv = b[b_at + i * b_gstep];
            }
            let bi = b_k0 * stride + b_n0 + i * b_sstep;
            b_tile[bi / 4u][bi % 4u] = bv;
        }
        a_at += BK * a_sk;
        b_at += BK * b_sk;
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 1u) {
            let al = a_tile[kk * stride4 + lid.y];
            let bl = b_tile[kk * stride4 + lid.x];
            c0l = fma(vec4<f32>(al.x), bl, c0l);
            c1l = fma(vec4<f32>(al.y), bl, c1l);
            c2l = fma(vec4<f32>(al.z), bl, c2l);
            c3l = fma(vec4<f32>(al.w), bl, c3l);
            // MT is a constant once the pipeline is built: no branch remains.
            if (MT == 8u) {
                let ah = a_tile[kk * stride4 + TT + lid.y];
                let bh = b_tile[kk * stride4 + TT + lid.x];
                c0h = fma(vec4<f32>(al.x), bh, c0h);
                c1h = fma(vec4<f32>(al.y), bh, c1h);
                c2h = fma(vec4<f32>(al.z), bh, c2h);
                c3h = fma(vec4<f32>(al.w), bh, c3h);
                c4l = fma(vec4<f32>(ah.x), bl, c4l);
                c4h = fma(vec4<f32>(ah.x), bh, c4h);
                c5l = fma(vec4<f32>(ah.y), bl, c5l);
                c5h = fma(vec4<f32>(ah.y), bh, c5h);
                c6l = fma(vec4<f32>(ah.z), bl, c6l);
                c6h = fma(vec4<f32>(ah.z), bh, c6h);
                c7l = fma(vec4<f32>(ah.w), bl, c7l);
                c7h = fma(vec4<f32>(ah.w), bh, c7h);
            }
        }
        workgroupBarrier();
    }

    let half = tile / 2u;
    let rl = row0 + lid.y * 4u;
    let rh = rl + half;
    let cl = col0 + lid.x * 4u;
    let ch = cl + half;
    let yb = bases.z;
    store4(yb, rl, cl, c0l);
    store4(yb, rl + 1u, cl, c1l);
    store4(yb, rl + 2u, cl, c2l);
    store4(yb, rl + 3u, cl, c3l);
    if (MT == 8u) {
        store4(yb, rl, ch, c0h);
        store4(yb, rl + 1u, ch, c1h);
        store4(yb, rl + 2u, ch, c2h);
        store4(yb, rl + 3u, ch, c3h);
        store4(yb, rh, cl, c4l);
        store4(yb, rh, ch, c4h);
        store4(yb, rh + 1u, cl, c5l);
        store4(yb, rh + 1u, ch, c5h);
        store4(yb, rh + 2u, cl, c6l);
        store4(yb, rh + 2u, ch, c6h);
        store4(yb, rh + 3u, cl, c7l);
        store4(yb, rh + 3u, ch, c7h);
    }
}

// 32 columns x 8 slices of K per workgroup: a warp reads 32 consecutive floats of
// a row of B (128 bytes) per step, and the 8 partial sums meet in workgroup memory.
@compute @workgroup_size(32, 8)
fn gemv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let N = p[1];
    let K = p[2];
    let bases = batch_bases(wid.z);
    let gm = wid.y;
    let gn = wid.x * 32u + lid.x;
    let a_row = bases.x + gm * p[5];
    let a_sk = p[6];
    let b_sk = p[8];
    let b_col = bases.y + gn * p[9];
    // Four independent sums per thread so four loads are in flight at once.
    var s = vec4<f32>(0.0);
    if (gn < N) {
        var k = lid.y;
        for (; k + 24u < K; k += 32u) {
            let av = vec4<f32>(a[a_row + k * a_sk], a[a_row + (k + 8u) * a_sk], a[a_row + (k + 16u) * a_sk],
                               a[a_row + (k + 24u) * a_sk]);
            let bv = vec4<f32>(b[b_col + k * b_sk], b[b_col + (k + 8u) * b_sk], b[b_col + (k + 16u) * b_sk],
                               b[b_col + (k + 24u) * b_sk]);
            s = fma(av, bv, s);
        }
        for (; k < K; k += 8u) {
            s.x = fma(a[a_row + k * a_sk], b[b_col + k * b_sk], s.x);
        }
    }
    gemv_part[lid.y * 32u + lid.x] = (s.x + s.y) + (s.z + s.w);
    workgroupBarrier();
    if (lid.y == 0u && gn < N) {
        var total = 0.0;
        for (var j = 0u; j < 8u; j += 1u) {
            total += gemv_part[j * 32u + lid.x];
        }
        y[bases.z + gm * p[11] + gn] = finish(gm, gn, total);
    }
}
