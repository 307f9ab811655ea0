#!/usr/bin/env bash
# Smelt's GPU backend (wgpu/Vulkan) against PyTorch CUDA fp32 on an H100, in one
# call of the device tool. Prints images/s, sequences/s and tokens/s side by side
# with the ratio, a 4096^3 fp32 matmul in GFLOP/s for both, and Smelt's GPU
# memory-pool statistics.
#
# There is no Rust on the H100 machine: build here, carry the binary and the
# Vulkan loader. Steps, from the repository root on the build machine:
#
#   1. Build:   CARGO_TARGET_DIR=/work/target-gpu cargo build --release -p smelt
#               mkdir -p .gpubench && cp /work/target-gpu/release/smelt .gpubench/
#               echo /.gpubench/ >> .git/info/exclude
#   2. Vulkan loader (once; the device README's recipe):
#               echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#               o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#               apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
#               (libvulkan1 alone is not enough: NVIDIA's Vulkan ICD lives in
#               libGLX_nvidia, which needs glvnd; without it the loader finds no driver.)
#   3. Run with the device tool (kind nvidia-h100-x1), carry [".gpubench", ".gl"]:
#               bash scripts/gpu_bench_h100.sh
#      The models are not carried (1 GB): tools/gen_models.py regenerates the
#      same bytes there with onnx + numpy (both in the machine's image), which
#      takes a few minutes for ResNet-50's BatchNorm statistics.
#
# Environment: SMELT_BIN (default .gpubench/smelt), SECONDS_PER_CASE (default 5),
# OUT (the device tool's output folder; results are also written there).
set -uo pipefail
cd "$(dirname "$0")/.."
SMELT_BIN=${SMELT_BIN:-.gpubench/smelt}
SECONDS_PER_CASE=${SECONDS_PER_CASE:-5}
OUT=${OUT:-/tmp/gpu_bench_out}
mkdir -p "$OUT"
MODELS=${MODELS:-/tmp/smelt_models}

# Vulkan loader from the carried .deb, and NVIDIA's ICD if the loader finds none.
if ! ldconfig -p | grep -q libGLdispatch.so.0 || ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export SMELT_WGPU_BACKEND=vulkan

echo "== devices"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$SMELT_BIN" devices || { echo "smelt sees no GPU: check the Vulkan loader/ICD above"; exit 1; }

echo "== models"
if [ ! -f "$MODELS/gpt2_small.onnx" ]; then
    python3 tools/gen_models.py "$MODELS" >"$OUT/gen_models.log" 2>&1 || { cat "$OUT/gen_models.log"; exit 1; }
fi
python3 scripts/gpu_bench_torch.py make-matmul "$MODELS/matmul4096.onnx" --size 4096
ls -la "$MODELS"

have_bench=0
"$SMELT_BIN" bench --help >/dev/null 2>&1 && have_bench=1

# smelt_rate MODEL BATCH SEQ -> prints runs/s (bench), or 1000/run_ms of one
# `smelt run` (that first run includes pipeline compilation: a lower bound).
smelt_rate() {
    local model=$1 batch=$2 seq=$3 tag=$4
    if [ $have_bench = 1 ]; then
        local shapes=()
        case $(basename "$model") in
            bert*) for n in input_ids attention_mask token_type_ids; do shapes+=(--shape "$n=$batch,$seq"); done ;;
            gpt2*) shapes+=(--shape "input_ids=$batch,$seq") ;;
        esac
        MPS_VERBOSE=1 "$SMELT_BIN" bench "$model" --device gpu --batch "$batch" "${shapes[@]}" \
            --warmup 2 --duration "$SECONDS_PER_CASE" --json "$OUT/smelt_$tag.json" \
            >"$OUT/smelt_$tag.log" 2>&1 || { tail -5 "$OUT/smelt_$tag.log" >&2; echo nan; return; }
        python3 -c "
import json,sys
d=json.load(open('$OUT/smelt_$tag.json'))
def find(o):
    if isinstance(o,dict):
        for k in ('runs_per_s','runs_per_second','throughput_runs_per_s'):
            if k in o: return o[k]
        for k in ('mean_ms','latency_mean_ms'):
            if k in o: return 1000.0/o[k]
        for v in o.values():
            r=find(v)
            if r is not None: return r
    return None
r=find(d); print(r if r is not None else 'nan')"
    else
        local dir=$OUT/in_$tag
        python3 tools/random_inputs.py "$model" --batch "$batch" --seq "$seq" --out "$dir" >"$dir.txt"
        local args=()
        while IFS= read -r line; do args+=(--input "$line"); done <"$dir.txt"
        MPS_VERBOSE=1 "$SMELT_BIN" run "$model" "${args[@]}" --output-dir "$dir/out" --device gpu \
            >"$OUT/smelt_$tag.log" 2>&1 || { tail -5 "$OUT/smelt_$tag.log" >&2; echo nan; return; }
        python3 -c "
import re
m=re.search(r'ran in ([0-9.]+) ms', open('$OUT/smelt_$tag.log').read())
print(1000.0/float(m.group(1)) if m else 'nan')"
    fi
}

torch_rate() {
    python3 scripts/gpu_bench_torch.py model "$1" --batch "$2" --seq "$3" --seconds "$SECONDS_PER_CASE" \
        2>"$OUT/torch_$4.log" | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['runs_per_s'])" \
        || { tail -3 "$OUT/torch_$4.log" >&2; echo nan; }
}

echo "== accuracy: smelt --device gpu against onnxruntime (CPU) on the same random inputs"
for spec in "resnet50 4 1" "bert_base 4 128" "gpt2_small 1 128"; do
    set -- $spec
    tag="$1_b$2_s$3"; dir="$OUT/acc_$tag"
    python3 tools/random_inputs.py "$MODELS/$1.onnx" --batch "$2" --seq "$3" --out "$dir/in" >"$dir.inputs" 2>&1 \
        || { echo "$tag: inputs failed"; cat "$dir.inputs"; continue; }
    args=(); while IFS= read -r line; do args+=(--input "$line"); done <"$dir.inputs"
    python3 tools/ort_reference.py "$MODELS/$1.onnx" "${args[@]}" --output-dir "$dir/ort" >/dev/null 2>"$dir.ort.log" \
        || { echo "$tag: onnxruntime failed"; tail -3 "$dir.ort.log"; continue; }
    "$SMELT_BIN" run "$MODELS/$1.onnx" "${args[@]}" --output-dir "$dir/smelt" --device gpu >/dev/null 2>"$dir.smelt.log" \
        || { echo "$tag: smelt failed"; tail -3 "$dir.smelt.log"; continue; }
    python3 - "$dir" "$tag" <<'PY' | tee -a "$OUT/summary.txt"
import sys, pathlib, numpy as np
d, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
for ref in sorted((d / "ort").glob("*.npy")):
    want, got = np.load(ref), np.load(d / "smelt" / ref.name)
    ratio = float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))
    print(f"{tag:<22} {ref.stem:<20} max|d|/max|ref| {ratio:.2e} {'ok' if ratio <= 1e-3 else 'ABOVE 1e-3'}")
PY
done

echo "== throughput (smelt: $([ $have_bench = 1 ] && echo 'smelt bench' || echo 'one smelt run, compile included'))"
printf "%-26s %-12s %14s %14s %8s\n" case unit smelt pytorch ratio | tee "$OUT/summary.txt"
for spec in "resnet50 1 1 images" "resnet50 32 1 images" "bert_base 1 128 sequences" \
            "bert_base 32 128 sequences" "gpt2_small 1 128 tokens"; do
    set -- $spec
    name=$1 batch=$2 seq=$3 unit=$4
    tag="${name}_b${batch}_s${seq}"
    s=$(smelt_rate "$MODELS/$name.onnx" "$batch" "$seq" "$tag")
    t=$(torch_rate "$MODELS/$name.onnx" "$batch" "$seq" "$tag")
    python3 - "$tag" "$unit" "$s" "$t" "$batch" "$seq" <<'PY' | tee -a "$OUT/summary.txt"
import sys
tag, unit, s, t, batch, seq = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
per_run = batch * (seq if unit == "tokens" else 1)
s_items, t_items = s * per_run, t * per_run
ratio = s_items / t_items if t_items == t_items and t_items > 0 else float("nan")
print(f"{tag:<26} {unit + '/s':<12} {s_items:14.1f} {t_items:14.1f} {ratio:8.3f}")
PY
done

echo "== 4096^3 fp32 matmul"
s=$(smelt_rate "$MODELS/matmul4096.onnx" 1 1 matmul4096)
t=$(python3 scripts/gpu_bench_torch.py matmul --size 4096 --seconds "$SECONDS_PER_CASE" | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['gflops'])")
python3 -c "s=float('$s')*2*4096**3/1e9; t=float('$t'); print(f'end to end (64 MB in, 64 MB out per run): smelt {s:.0f} GFLOP/s   pytorch (on-device tensors) {t:.0f} GFLOP/s   ratio {s/t:.3f}')" | tee -a "$OUT/summary.txt"
# The kernel alone: chains of 1 and 9 products on one row expanded on the device.
for r in 1 9; do python3 scripts/gpu_bench_torch.py make-matmul "$MODELS/matmul4096_r$r.onnx" --size 4096 --repeat $r; done
"$SMELT_BIN" bench "$MODELS/matmul4096_r1.onnx" --device gpu --warmup 1 --duration "$SECONDS_PER_CASE" --json "$OUT/smelt_mm_r1.json" >/dev/null 2>&1
"$SMELT_BIN" bench "$MODELS/matmul4096_r9.onnx" --device gpu --warmup 1 --duration "$SECONDS_PER_CASE" --json "$OUT/smelt_mm_r9.json" >/dev/null 2>&1
python3 - "$OUT" "$t" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
out, t = sys.argv[1], float(sys.argv[2])
p50 = lambda r: json.load(open(f"{out}/smelt_mm_r{r}.json"))["latency_ms"]["p50"]
per = (p50(9) - p50(1)) / 8 / 1e3
s = 2 * 4096 ** 3 / per / 1e9
print(f"kernel (chain of 9 minus chain of 1, p50): smelt {s:.0f} GFLOP/s   pytorch {t:.0f} GFLOP/s   ratio {s/t:.3f}")
PY

if [ $have_bench = 1 ] && "$SMELT_BIN" bench --help | grep -q -- --concurrency; then
    echo "== concurrent runs of one session (ResNet-50 batch 1): transfers overlap GPU work"
    for c in 1 4; do
        "$SMELT_BIN" bench "$MODELS/resnet50.onnx" --device gpu --concurrency $c --warmup 2 \
            --duration "$SECONDS_PER_CASE" --json "$OUT/smelt_resnet_c$c.json" >"$OUT/smelt_resnet_c$c.log" 2>&1
        python3 -c "import json; d=json.load(open('$OUT/smelt_resnet_c$c.json')); print(f'concurrency $c: {d[\"items_per_s\"]:.1f} images/s, p50 {d[\"latency_ms\"][\"p50\"]:.2f} ms')" \
            | tee -a "$OUT/summary.txt"
    done
fi

echo "== Smelt GPU memory pool (from the backend's verbose log of the last runs)"
grep -h "\[smelt-gpu\] closing\|\[smelt-gpu\] plan for" "$OUT"/smelt_*.log | tail -20 | tee -a "$OUT/summary.txt"
