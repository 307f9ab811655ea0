"""End-to-end accuracy on the full-size test models (build/models).

Each case makes random, realistic inputs with tools/random_inputs.py, runs them
through `smelt run` and through onnxruntime, and checks that smelt writes the
model's outputs with the right names, dtypes and shapes, and that for every
output max|smelt - onnxruntime| / max|onnxruntime| <= 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import compare_outputs

# Relative to the largest reference value of each output: tight enough to
# catch a wrong kernel (a mistake shows as 1e-2 or more), loose enough for
# float32 sums taken in a different order over 12 layers.
TOLERANCE = 1e-4

# (model file, batch, sequence length). Sequence length is ignored by
# ResNet-50; the transformers' second shapes show batch and sequence are
# really dynamic (GPT-2 at an odd length, BERT at batch 2, whose second row
# ends in padding).
CASES = [
    ("resnet50.onnx", 1, 128),
    ("resnet50.onnx", 2, 128),
    ("resnet50.onnx", 8, 128),
    ("bert_base.onnx", 1, 128),
    ("bert_base.onnx", 2, 128),
    ("gpt2_small.onnx", 1, 128),
    ("gpt2_small.onnx", 1, 37),
]


def case_id(case) -> str:
    model, batch, seq = case
    stem = Path(model).stem
    return f"{stem}-b{batch}" if stem == "resnet50" else f"{stem}-b{batch}-s{seq}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_model_matches_onnxruntime(case, models_dir, smelt, ort_reference,
                                   random_inputs, accuracy_report):
    model_file, batch, seq = case
    model = models_dir / model_file
    feeds = random_inputs(model, batch, seq)

    # The inputs really are non-trivial: non-zero everywhere it matters, and
    # for BERT at batch 2 the second row's mask has padding.
    for name, path in feeds.items():
        value = np.load(path)
        assert np.count_nonzero(value), f"input {name} is all zeros"
    if "attention_mask" in feeds and batch > 1:
        mask = np.load(feeds["attention_mask"])
        assert (mask == 0).any(), "expected padding in the attention mask"

    want = ort_reference.run(model, feeds)
    got = smelt.run(model, feeds)
    ratios = compare_outputs(got.outputs, want, TOLERANCE)

    timing = (f"  (smelt: loaded in {got.load_ms:.0f} ms, ran in {got.run_ms:.0f} ms)"
              if got.run_ms is not None else "")
    for name, ratio in ratios.items():
        line = f"{case_id(case):<22} {name:<20} {ratio:.2e}{timing}"
        print(line)
        accuracy_report.append(line)
