// Batched matrix product with a fused epilogue:
//   Y[b, m, n] = act(alpha * sum_k A[b, m, k] * B[b, k, n] + beta * C[m, n])
// A and B are read through strides, so transposed operands (Gemm's transA/transB)
// and broadcast batches need no copies. Tiles of TM x TN outputs per workgroup of
// 16 x 16 threads, each thread computing a 4 x 4 block; K advances TK at a time
// through workgroup memory.
//
// Parameters (u32): M, N, K, batch, a_off, a_sm, a_sk, b_off, b_sk, b_sn, y_off,
// y_sm, c_off, c_sm, c_sn, has_c, alpha (f32 bits), beta (f32 bits), batch dims[4],
// a batch strides[4], b batch strides[4], y batch strides[4]. Offsets and strides
// are in elements. Grid: (ceil(N / TN), ceil(M / TM), batch).

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let M = p[0];
    let N = p[1];
    let K = p[2];
    // Batch offsets from the batch index, dim by dim (innermost last).
    var rest = wid.z;
    var a_base = p[4];
    var b_base = p[7];
    var y_base = p[10];
    for (var d = 4u; d > 0u; d -= 1u) {
        let dim = p[17u + d];
        let coord = rest % dim;
        rest = rest / dim;
        a_base += coord * p[21u + d];
        b_base += coord * p[25u + d];
        y_base += coord * p[29u + d];
    }
    let a_sm = p[5];
    let a_sk = p[6];
    let b_sk = p[8];
    let b_sn = p[9];
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i += 1u) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < K; k0 += TK) {
        for (var i = 0u; i < 4u; i += 1u) {
            let e = tid + i * 256u;
            // A: consecutive threads walk k (contiguous for row-major A).
            let am = e / TK;
            let ak = e % TK;
            let gm = row0 + am;
            let gk = k0 + ak;
            var av = 0.0;
            if (gm < M && gk < K) {
                av = a[a_base + gm * a_sm + gk * a_sk];
            }
            a_tile[ak * TM + am] = av;
            // B: consecutive threads walk n (contiguous for row-major B).
            let bk = e / TN;
            let bn = e % TN;
            let gk2 = k0 + bk;
            let gn = col0 + bn;
            var bv = 0.0;
            if (gk2 < K && gn < N) {
                bv = b[b_base + gk2 * b_sk + gn * b_sn];
            }
            b_tile[bk * TN + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk += 1u) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i += 1u) {
                ar[i] = a_tile[kk * TM + lid.y * 4u + i];
                br[i] = b_tile[kk * TN + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i += 1u) {
                for (var j = 0u; j < 4u; j += 1u) {
                    acc[i * 4u + j] = fma(ar[i], br[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let alpha = bitcast<f32>(p[16]);
    let beta = bitcast<f32>(p[17]);
    for (var i = 0u; i < 4u; i += 1u) {
        let gm = row0 + lid.y * 4u + i;
        if (gm >= M) {
            continue;
        }
        for (var j = 0u; j < 4u; j += 1u) {
            let gn = col0 + lid.x * 4u + j;
            if (gn >= N) {
                continue;
            }
            var v = alpha * acc[i * 4u + j];
            if (p[15] != 0u) {
                v += beta * c[p[12] + gm * p[13] + gn * p[14]];
            }
            y[y_base + gm * p[11] + gn] = activate(v);
        }
    }
}
