// 2-D convolution as an implicit GEMM, per group g:
//   Y[n, g*Cog + m, oh, ow] = act(sum_k W[g*Cog + m, k] * X'[k, (n, oh, ow)] + bias)
// where k runs over (ci, kh, kw) of the group's input channels and X' is the
// im2col matrix, read straight from X (zero outside the padding) and never stored.
// Same tiling as matmul.wgsl: TM output channels x TN output pixels per workgroup.
//
// Parameters (u32): batch, C_in, H, W, C_out, OH, OW, KH, KW, stride h, stride w,
// pad top, pad left, dilation h, dilation w, Cin per group, Cout per group,
// has_bias. Grid: (ceil(batch*OH*OW / TN), ceil(Cog / TM), groups).

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

var<workgroup> a_tile: array<f32, 1024>; // weights [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // im2col [TK][TN]

@compute @workgroup_size(16, 16)
fn conv2d(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let batch = p[0];
    let C = p[1];
    let H = p[2];
    let W = p[3];
    let CO = p[4];
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
            let am = e / TK;
            let ak = e % TK;
            let gm = row0 + am;
            let gk = k0 + ak;
            var av = 0.0;
            if (gm < M && gk < K) {
                av = w[(g * cog + gm) * K + gk];
            }
            a_tile[ak * TM + am] = av;

            let bk = e / TN;
            let bn = e % TN;
            let gk2 = k0 + bk;
            let col = col0 + bn;
            var bv = 0.0;
            if (gk2 < K && col < N) {
                let ci = gk2 / KHW;
                let r = gk2 % KHW;
                let kh = r / KW;
                let kw = r % KW;
                let ow = col % OW;
                let t = col / OW;
                let oh = t % OH;
                let n = t / OH;
                let ih = i32(oh * p[9] + kh * p[13]) - i32(p[11]);
                let iw = i32(ow * p[10] + kw * p[14]) - i32(p[12]);
                if (ih >= 0 && ih < i32(H) && iw >= 0 && iw < i32(W)) {
                    bv = x[((n * C + g * cig + ci) * H + u32(ih)) * W + u32(iw)];
                }
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
    for (var i = 0u; i < 4u; i += 1u) {
        let gm = row0 + lid.y * 4u + i;
        if (gm >= M) {
            continue;
        }
        let co = g * cog + gm;
        var b0 = 0.0;
        if (p[17] != 0u) {
            b0 = bias[co];
        }
        for (var j = 0u; j < 4u; j += 1u) {
            let col = col0 + lid.x * 4u + j;
            if (col >= N) {
                continue;
            }
            let ow = col % OW;
            let t = col / OW;
            let oh = t % OH;
            let n = t / OH;
            y[((n * CO + co) * OH + oh) * OW + ow] = activate(acc[i * 4u + j] + b0);
        }
    }
}
