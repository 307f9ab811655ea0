"""`smelt bench`: a short run on a tiny model writes the documented JSON, and bad
flags are refused with a message naming the flag or input.

The model has an embedding table of only 5 rows, fewer than the default id range
(16), so a bench that did not derive the id range from the table would index
past it and fail.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import PANIC_MARKER, Smelt, assert_refused, make_model, save_model

TABLE_ROWS = 5
DEFAULT_SEQUENCE = 128        # what smelt bench gives non-batch symbolic dims


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory) -> Path:
    """input_ids, attention_mask: i64 [batch, sequence]; features: f32 [batch, 4].
    hidden = Gather(table[5, 8], input_ids) * mask; scores = Relu(features)."""
    table = np.arange(TABLE_ROWS * 8, dtype=np.float32).reshape(TABLE_ROWS, 8) / 10
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"], name="embed"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Unsqueeze", ["mask_f", "axes"], ["mask_3d"], name="unsqueeze"),
        helper.make_node("Mul", ["embedded", "mask_3d"], ["hidden"], name="mask"),
        helper.make_node("Relu", ["features"], ["scores"], name="relu"),
    ]
    ids = ["batch", "sequence"]
    model = make_model(
        nodes,
        inputs=[helper.make_tensor_value_info("input_ids", TensorProto.INT64, ids),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ids),
                helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        outputs=[helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None),
                 helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)],
        initializers=[numpy_helper.from_array(table, "table"),
                      numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")],
    )
    return save_model(model, tmp_path_factory.mktemp("bench") / "embedding.onnx")


def bench(smelt: Smelt, model: Path, *flags) -> tuple[dict, str]:
    """A short `smelt bench --json`; returns the JSON and stdout."""
    out = smelt.fresh_dir("bench") / "result.json"
    done = smelt.cli("bench", model, "--warmup", "0.1", "--duration", "0.3", "--threads", "1",
                     "--json", out, *flags)
    assert done.returncode == 0, f"smelt bench failed:\n{done.stderr}"
    assert PANIC_MARKER not in done.stderr
    return json.loads(out.read_text()), done.stdout


def test_json_has_throughput_latency_and_memory(smelt: Smelt, embedding_model: Path):
    result, stdout = bench(smelt, embedding_model, "--batch", "3")
    assert result["device"] == "cpu" and result["backend"] == "cpu"
    assert result["batch"] == 3 and result["threads"] == 1
    assert result["runs"] >= 1
    assert result["items"] == 3 * result["runs"]
    assert result["duration_s"] >= 0.3
    assert result["items_per_s"] == pytest.approx(result["items"] / result["duration_s"], rel=1e-6)
    assert result["runs_per_s"] == pytest.approx(result["runs"] / result["duration_s"], rel=1e-6)
    latency = result["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert latency["min"] <= latency["mean"] <= latency["max"]
    # One run's latency cannot exceed the measured time.
    assert latency["max"] <= result["duration_s"] * 1e3
    assert result["peak_rss_bytes"] > 1 << 20
    assert result["gpu_memory_bytes"] is None
    assert result["plan_memory"]["weight_bytes"] >= TABLE_ROWS * 8 * 4
    assert result["warmup_runs"] >= 1 and result["load_ms"] > 0 and result["first_run_ms"] > 0

    inputs = {i["name"]: i for i in result["inputs"]}
    assert inputs["input_ids"]["shape"] == [3, DEFAULT_SEQUENCE]
    assert inputs["input_ids"]["dtype"] == "i64"
    assert f"[0, {TABLE_ROWS})" in inputs["input_ids"]["values"]
    assert inputs["attention_mask"]["values"].startswith("all ones")
    assert inputs["features"]["shape"] == [3, 4]
    assert inputs["features"]["dtype"] == "f32"
    assert "items/s" in stdout and "p99" in stdout


def test_shape_flag_sets_an_input_shape(smelt: Smelt, embedding_model: Path):
    result, _ = bench(smelt, embedding_model, "--batch", "2",
                      "--shape", "input_ids=2,7", "--shape", "attention_mask=2,7")
    inputs = {i["name"]: i["shape"] for i in result["inputs"]}
    assert inputs == {"input_ids": [2, 7], "attention_mask": [2, 7], "features": [2, 4]}


def test_not_a_terminal_gets_no_progress_bar(smelt: Smelt, embedding_model: Path):
    done = smelt.cli("bench", embedding_model, "--warmup", "0", "--duration", "0.2")
    assert done.returncode == 0, done.stderr
    # indicatif draws with carriage returns and escape sequences; none in a pipe.
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr


@pytest.mark.parametrize("flags, mentions", [
    (["--duration", "0"], ["--duration"]),
    (["--duration=-1"], ["--duration"]),
    (["--warmup", "nan"], ["--warmup"]),
    (["--batch", "0"], ["--batch"]),
    (["--threads", "0"], ["--threads"]),
    (["--device", "tpu"], ["tpu"]),
    (["--shape", "no_such_input=1,2"], ["no_such_input", "input_ids"]),
    (["--shape", "input_ids=2,x"], ["x"]),
    (["--shape", "input_ids"], ["--shape"]),
    (["--shape", "input_ids=2,3,4"], ["input_ids"]),
])
def test_bad_flags_are_refused(smelt: Smelt, embedding_model: Path, flags, mentions):
    done = smelt.cli("bench", embedding_model, "--warmup", "0", "--duration", "0.1", *flags)
    assert_refused(done, *mentions)


def test_missing_model_is_refused(smelt: Smelt, tmp_path: Path):
    missing = tmp_path / "missing.onnx"
    done = smelt.cli("bench", missing, "--duration", "0.1")
    assert_refused(done, str(missing))


def test_input_file_gives_values_and_shape(smelt: Smelt, embedding_model: Path):
    ids = smelt.fresh_dir("ids") / "ids.npy"
    np.save(ids, np.array([[0, 4, 1]], dtype=np.int64))
    result, _ = bench(smelt, embedding_model, "--input", f"input_ids={ids}",
                      "--shape", "attention_mask=1,3")
    inputs = {i["name"]: i for i in result["inputs"]}
    assert inputs["input_ids"]["shape"] == [1, 3]
    assert inputs["input_ids"]["values"] == f"from {ids}"
    assert inputs["features"]["shape"] == [1, 4]


def test_input_file_for_an_unknown_input_is_refused(smelt: Smelt, embedding_model: Path):
    ids = smelt.fresh_dir("ids") / "ids.npy"
    np.save(ids, np.zeros((1, 3), dtype=np.int64))
    done = smelt.cli("bench", embedding_model, "--duration", "0.1", "--input", f"token_ids={ids}")
    assert_refused(done, "token_ids", "--input")


# --------------------------------------------------------------------------
# scripts/compare_cpu.py's docs update
# --------------------------------------------------------------------------


def load_compare_cpu():
    import importlib.util
    from support import REPO_ROOT
    spec = importlib.util.spec_from_file_location("compare_cpu", REPO_ROOT / "scripts" / "compare_cpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_cpu"] = module       # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_compare_cpu_rewrites_only_the_cpu_section(tmp_path: Path):
    compare = load_compare_cpu()
    docs = tmp_path / "BENCHMARKS.md"
    compare.write_docs(f"{compare.CPU_BEGIN}\nfirst\n{compare.CPU_END}", docs)
    created = docs.read_text()
    assert compare.SERVER_BEGIN in created and compare.SERVER_END in created
    server = f"{compare.SERVER_BEGIN}\nserver numbers\n{compare.SERVER_END}"
    docs.write_text(created.replace(f"{compare.SERVER_BEGIN}\n{compare.SERVER_END}", server))
    compare.write_docs(f"{compare.CPU_BEGIN}\nsecond\n{compare.CPU_END}", docs)
    text = docs.read_text()
    assert "second" in text and "first" not in text
    assert server in text
    assert text.count(compare.CPU_BEGIN) == 1 and text.count(compare.CPU_END) == 1


def test_compare_cpu_table_reports_failures_and_ratios():
    compare = load_compare_cpu()
    row = compare.ROWS[0]
    samples = {"smelt": compare.Samples([10.0, 30.0, 20.0]), "onnxruntime": compare.Samples([40.0]),
               "tract": compare.Samples(error="cannot load the model")}
    text = compare.table([row], {row.key: samples})
    line = text.splitlines()[-1]
    # Rounds cannot be paired when the engines measured different numbers of them.
    assert "| 20.00 | 40.00 | n/a (cannot load the model) | 0.50 | – | – |" in line


def test_compare_cpu_pairs_rounds():
    compare = load_compare_cpu()
    row = compare.ROWS[0]
    # BERT-base b8's rounds of 2026-12-07 13:20: the medians give 1.09 because
    # onnxruntime's median fell in a slow phase; round by round Smelt won 3 of 7.
    smelt = [20.13, 19.84, 17.43, 19.97, 17.52, 20.21, 17.47]
    onnxruntime = [19.07, 20.92, 18.24, 18.00, 17.73, 19.17, 17.67]
    samples = {"smelt": compare.Samples(smelt), "onnxruntime": compare.Samples(onnxruntime),
               "tract": compare.Samples([8.0] * 7)}
    line = compare.table([row], {row.key: samples}).splitlines()[-1]
    assert "| 19.84 | 18.24 | 8.00 | 1.09 | 0.99 (3 of 7) | 2.48 |" in line, line


def test_compare_cpu_docs_leave_out_the_local_binary():
    compare = load_compare_cpu()
    argv = ["--rounds", "7", "--smelt", "/tmp/copy/smelt", "--duration", "6", "--smelt=/x"]
    assert compare.recorded_args(argv) == ["--rounds", "7", "--duration", "6"]
