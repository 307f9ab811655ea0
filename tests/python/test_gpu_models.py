"""The full-size test models on the GPU backend (`smelt run --device gpu`).

In CI the GPU is lavapipe (Mesa's CPU Vulkan driver, ~1 GFLOP/s), so each model
runs once at batch 1 (short sequences for the transformers) and is compared with
onnxruntime: max|smelt - onnxruntime| / max|onnxruntime| <= 1e-3. Without a
Vulkan/Metal/DX12 adapter the tests skip, saying why; with SMELT_REQUIRE_GPU=1
they fail instead.
"""

from __future__ import annotations

import pytest

from support import compare_outputs

TOLERANCE = 1e-3

# (model file, batch, sequence length). lavapipe is slow: keep the transformers'
# sequences short; the shapes are still dynamic (odd length for GPT-2).
CASES = [
    ("resnet50.onnx", 1, 1),
    ("bert_base.onnx", 1, 16),
    ("gpt2_small.onnx", 1, 13),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0].split(".")[0] for c in CASES])
def test_gpu_model_matches_onnxruntime(case, gpu_available, models_dir, smelt, ort_reference,
                                       random_inputs, accuracy_report):
    model_file, batch, seq = case
    model = models_dir / model_file
    feeds = random_inputs(model, batch, seq)
    want = ort_reference.run(model, feeds)
    output_dir = smelt.fresh_dir("gpu-outputs")
    args = ["run", model]
    for name, path in feeds.items():
        args += ["--input", f"{name}={path}"]
    args += ["--output-dir", output_dir, "--device", "gpu"]
    done = smelt.cli(*args, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"smelt run --device gpu failed on {model.name}:\n{done.stderr.strip()}", pytrace=False)
    import numpy as np
    got = {p.stem: np.load(p, allow_pickle=False) for p in sorted(output_dir.glob("*.npy"))}
    ratios = compare_outputs(got, want, TOLERANCE)
    for name, ratio in ratios.items():
        line = f"gpu {model.stem:<12} {name:<20} {ratio:.2e}"
        print(line)
        accuracy_report.append(line)
