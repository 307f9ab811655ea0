// 2-D convolution as an implicit GEMM, per group g:
//   Y[n, g*Cog + m, oh, ow] = act(sum_k W[g*Cog + m, k] * X'[k, (n, oh, ow)] + bias)
// where k runs over (ci, kh, kw) of the group's input channels and X' is the
// im2col matrix, read straight from X (zero outside the padding) and never stored.
// Same register tiling as `matmul` in matmul.wgsl: a workgroup of TT x TT threads
// computes (MT TT) output channels x (MT TT) output pixels, each thread an
// MT x MT micro-tile in vec4 registers, K advancing BK at a time through
// workgroup memory.
//
// Parameters (u32): batch, C_in, H, W, C_out, OH, OW, KH, KW, stride h, stride w,
// pad top, pad left, dilation h, dilation w, Cin per group, Cout per group,
// has_bias. Grid: (ceil(batch*OH*OW / (MT TT)), ceil(Cog / (MT TT)), groups).

// Tile shape: the same three sets as matmul.wgsl, chosen the same way.
override TT: u32 = 16u;
override MT: u32 = 8u;
// K step and padded tile rows: as in matmul.wgsl (the arrays fit TT = 16).
const BK: u32 = 16u;
const TILE_VEC4S: u32 = 528u; // BK * (128 / 4 + 1)

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

var<workgroup> a_tile: array<vec4<f32>, TILE_VEC4S>; // weights [BK][channels]
var<workgroup> b_tile: array<vec4<f32>, TILE_VEC4S>; // im2col [BK][pixels]

// Stores up to four consecutive output pixels (columns) of channel `co` (a row
// of the group's GEMM; skipped past Cog).
fn store4(gm: u32, co: u32, col: u32, v: vec4<f32>) {
    let CO = p[4];
    let OH = p[5];
    let OW = p[6];
    let N = p[0] * OH * OW;
    if (gm >= p[16]) {
        return;
    }
    var b0 = 0.0;
    if (p[17] != 0u) {
        b0 = bias[co];
    }
    for (var j = 0u; j < 4u; j += 1u) {
        let cj = col + j;
        if (cj < N) {
            let ow = cj % OW;
            let t = cj / OW;
            let oh = t % OH;
            let n = t / OH;
            y[((n * CO + co) * OH + oh) * OW + ow] = activate(v[j] + b0);
        }
    }
}

@compute @workgroup_size(TT, TT)
fn conv2d(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let batch = p[0];
    let C = p[1];
    let H = p[2];
    let W = p[3];
    let OH = p[5];
    let OW = p[6];
    let KH = p[7];
    let KW = p[8];
    let cig = p[15];
    let cog = p[16];
    let g = wid.z;
    let M = cog;
    let N = batch * OH * OW;
    let KHW = KH * KW;
    let K = cig * KHW;
    let tile = MT * TT;
    let threads = TT * TT;
    let row0 = wid.y * tile;
    let col0 = wid.x * tile;
    let tid = lid.y * TT + lid.x;
    let stride = tile + 4u;
    let stride4 = stride / 4u;

    // The im2col column this thread loads is the same at every K step (threads is
    // a multiple of tile), so its pixel is decoded once, here.
    let bn = tid % tile;
    let col = col0 + bn;
    let col_ok = col < N;
    let ow = col % OW;
    let t = col / OW;
    let oh = t % OH;
    let n = t / OH;
    let ih0 = i32(oh * p[9]) - i32(p[11]);
    let iw0 = i32(ow * p[10]) - i32(p[12]);
    let x_base = (n * C + g * cig) * H * W;
    let w_base = g * cog * K;

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

    // Per K step each thread loads `loads` weights along a row (k fastest, as W
    // is laid out) and `loads` im2col values down its column, so consecutive
    // threads read consecutive addresses.
    let loads = BK * tile / threads;
    let a_m0 = tid / BK;
    let a_k0 = tid % BK;
    let a_dm = threads / BK;
    let b_k0 = tid / tile;
    let b_dk = threads / tile;
    var w_at = w_base + (row0 + a_m0) * K + a_k0; // at k0 = 0
    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var i = 0u; i < loads; i += 1u) {
            let gm = row0 + a_m0 + i * a_dm;
            let gk = k0 + a_k0;
            var av = 0.0;
            if (gm < M && gk < K) {
                av = w[w_at + i * a_dm * K];
            }
            let ai = a_k0 * stride + a_m0 + i * a_dm;
            a_tile[ai / 4u][ai % 4u] = av;

            let bk = b_k0 + i * b_dk;
            let gk2 = k0 + bk;
            var bv = 0.0;
            if (col_ok && gk2 < K) {
                let ci = gk2 / KHW;
                let r = gk2 % KHW;
                let ih = ih0 + i32((r / KW) * p[13]);
                let iw = iw0 + i32((r % KW) * p[14]);
                if (ih >= 0 && ih < i32(H) && iw >= 0 && iw < i32(W)) {
                    bv = x[x_base + (ci * H + u32(ih)) * W + u32(iw)];
                }
            }
            let bi = bk * stride + bn;
            b_tile[bi / 4u][bi % 4u] = bv;
        }
        w_at += BK;
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
    let co = g * cog;
    store4(rl, co + rl, cl, c0l);
    store4(rl + 1u, co + rl + 1u, cl, c1l);
    store4(rl + 2u, co + rl + 2u, cl, c2l);
    store4(rl + 3u, co + rl + 3u, cl, c3l);
    if (MT == 8u) {
        store4(rl, co + rl, ch, c0h);
        store4(rl + 1u, co + rl + 1u, ch, c1h);
        store4(rl + 2u, co + rl + 2u, ch, c2h);
        store4(rl + 3u, co + rl + 3u, ch, c3h);
        store4(rh, co + rh, cl, c4l);
        store4(rh, co + rh, ch, c4h);
        store4(rh + 1u, co + rh + 1u, cl, c5l);
        store4(rh + 1u, co + rh + 1u, ch, c5h);
        store4(rh + 2u, co + rh + 2u, cl, c6l);
        store4(rh + 2u, co + rh + 2u, ch, c6h);
        store4(rh + 3u, co + rh + 3u, cl, c7l);
        store4(rh + 3u, co + rh + 3u, ch, c7h);
    }
}
