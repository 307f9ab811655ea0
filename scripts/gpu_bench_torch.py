#!/usr/bin/env python3
"""PyTorch CUDA fp32 baseline for scripts/gpu_bench_h100.sh.

Runs an ONNX model's graph node by node with PyTorch ops on the GPU, using the
very weights in the ONNX file (onnx -> numpy -> torch), so Smelt and PyTorch do
the same arithmetic on the same numbers. Only the ops the three benchmark
models use are implemented; anything else raises NotImplementedError naming it.

Usage:
  gpu_bench_torch.py model MODEL.onnx --batch B [--seq S] [--seconds T]
  gpu_bench_torch.py matmul --size 4096
Prints one JSON object per invocation: runs/s and items/s (or GFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

torch.backends.cuda.matmul.allow_tf32 = False  # a real fp32 baseline
torch.backends.cudnn.allow_tf32 = False


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class TorchGraph:
    def __init__(self, path: str, device: str):
        model = onnx.load(path)
        self.graph = model.graph
        self.device = device
        self.init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).to(device)
                     for t in self.graph.initializer}
        self.inputs = [i.name for i in self.graph.input if i.name not in self.init]
        self.outputs = [o.name for o in self.graph.output]

    def run(self, feeds: dict) -> list:
        env = dict(self.init)
        env.update(feeds)
        for node in self.graph.node:
            ins = [env[n] if n else None for n in node.input]
            outs = self.op(node, ins)
            for name, value in zip(node.output, outs):
                env[name] = value
        return [env[n] for n in self.outputs]

    def op(self, node, x):
        a = attrs(node)
        t = node.op_type
        if t == "Constant":
            return [torch.from_numpy(numpy_helper.to_array(a["value"]).copy()).to(self.device)]
        if t in ("Add", "Sub", "Mul", "Div", "Pow"):
            f = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow}[t]
            if t == "Div" and not x[0].is_floating_point():
                return [torch.div(x[0], x[1], rounding_mode="trunc")]
            return [f(x[0], x[1])]
        if t == "Relu":
            return [torch.relu(x[0])]
        if t == "Tanh":
            return [torch.tanh(x[0])]
        if t == "Erf":
            return [torch.erf(x[0])]
        if t == "Sqrt":
            return [torch.sqrt(x[0])]
        if t == "Sigmoid":
            return [torch.sigmoid(x[0])]
        if t == "Conv":
            k = len(x[1].shape) - 2
            pads = a.get("pads", [0] * 2 * k)
            return [torch.nn.functional.conv2d(x[0], x[1], x[2] if len(x) > 2 else None,
                                               stride=a.get("strides", [1] * k), padding=pads[:k],
                                               dilation=a.get("dilations", [1] * k), groups=a.get("group", 1))]
        if t == "BatchNormalization":
            return [torch.nn.functional.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0, a.get("epsilon", 1e-5))]
        if t == "MaxPool":
            k = a["kernel_shape"]
            pads = a.get("pads", [0] * 2 * len(k))
            return [torch.nn.functional.max_pool2d(x[0], k, a.get("strides", k), pads[:len(k)],
                                                   ceil_mode=bool(a.get("ceil_mode", 0)))]
        if t == "GlobalAveragePool":
            return [x[0].mean(dim=(2, 3), keepdim=True)]
        if t == "Flatten":
            ax = a.get("axis", 1)
            return [x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)]
        if t == "Gemm":
            A = x[0].t() if a.get("transA", 0) else x[0]
            B = x[1].t() if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            return [y]
        if t == "MatMul":
            return [torch.matmul(x[0], x[1])]
        if t == "Reshape":
            shape = [int(s) for s in x[1].tolist()]
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return [x[0].reshape(shape)]
        if t == "Transpose":
            perm = a.get("perm", list(range(x[0].dim()))[::-1])
            return [x[0].permute(*perm)]
        if t == "Shape":
            return [torch.tensor(list(x[0].shape), dtype=torch.int64, device=self.device)]
        if t == "Gather":
            ax = a.get("axis", 0)
            idx = x[1].long()
            idx = torch.where(idx < 0, idx + x[0].shape[ax], idx)
            return [torch.index_select(x[0], ax, idx.reshape(-1)).reshape(
                x[0].shape[:ax] + idx.shape + x[0].shape[ax + 1:])]
        if t == "Unsqueeze":
            y = x[0]
            for ax in sorted(int(v) for v in x[1].tolist()):
                y = y.unsqueeze(ax if ax >= 0 else ax + y.dim() + 1)
            return [y]
        if t == "Squeeze":
            return [x[0].squeeze(tuple(int(v) for v in x[1].tolist())) if len(x) > 1 else x[0].squeeze()]
        if t == "Concat":
            return [torch.cat(x, dim=a["axis"])]
        if t == "Slice":
            y = x[0]
            starts, ends = x[1].tolist(), x[2].tolist()
            axes = x[3].tolist() if len(x) > 3 and x[3] is not None else list(range(len(starts)))
            steps = x[4].tolist() if len(x) > 4 and x[4] is not None else [1] * len(starts)
            index = [slice(None)] * y.dim()
            for s, e, ax, st in zip(starts, ends, axes, steps):
                dim = y.shape[ax]
                s = max(0, min(dim, s + dim if s < 0 else s))
                e = max(0, min(dim, e + dim if e < 0 else e))
                index[ax] = slice(s, e, st)
            return [y[tuple(index)]]
        if t == "Softmax":
            return [torch.softmax(x[0], dim=a.get("axis", -1))]
        if t == "LayerNormalization":
            ax = a.get("axis", -1)
            shape = x[0].shape[ax:]
            return [torch.nn.functional.layer_norm(x[0], shape, x[1], x[2] if len(x) > 2 else None,
                                                   a.get("epsilon", 1e-5))]
        if t == "Cast":
            to = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16}[a["to"]]
            return [x[0].to(to)]
        if t == "Where":
            return [torch.where(x[0].bool(), x[1], x[2])]
        if t == "Split":
            sizes = [int(v) for v in x[1].tolist()]
            return list(torch.split(x[0], sizes, dim=a.get("axis", 0)))
        if t == "Range":
            return [torch.arange(x[0].item(), x[1].item(), x[2].item(), device=self.device, dtype=x[0].dtype)]
        if t in ("Identity", "Dropout"):
            return [x[0]]
        if t == "Equal":
            return [x[0] == x[1]]
        if t == "Expand":
            shape = [int(s) for s in x[1].tolist()]
            return [x[0] * torch.ones(shape, dtype=x[0].dtype, device=self.device)]
        if t == "ConstantOfShape":
            value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            return [torch.full([int(s) for s in x[0].tolist()], value.item(),
                               dtype=torch.from_numpy(value).dtype, device=self.device)]
        if t == "ReduceMean":
            axes = x[1].tolist() if len(x) > 1 else a.get("axes")
            return [x[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))]
        raise NotImplementedError(f"op {t} (node {node.name})")


def feeds_for(g: TorchGraph, batch: int, seq: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in g.graph.input:
        if inp.name in g.init:
            continue
        elem = inp.type.tensor_type.elem_type
        dims = [d.dim_value if d.dim_value else (batch if i == 0 else seq)
                for i, d in enumerate(inp.type.tensor_type.shape.dim)]
        if elem == onnx.TensorProto.FLOAT:
            feeds[inp.name] = torch.from_numpy(rng.standard_normal(dims).astype(np.float32)).to(device)
        elif "mask" in inp.name:
            feeds[inp.name] = torch.ones(dims, dtype=torch.int64, device=device)
        elif "type" in inp.name:
            feeds[inp.name] = torch.zeros(dims, dtype=torch.int64, device=device)
        else:
            feeds[inp.name] = torch.from_numpy(rng.integers(1, 1000, dims)).to(device)
    return feeds


def timed(fn, seconds: float) -> float:
    """Runs/s of fn after warm-up, synchronising the GPU."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        torch.cuda.synchronize()
        runs += 1
    return runs / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model")
    m.add_argument("model")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--seq", type=int, default=128)
    m.add_argument("--seconds", type=float, default=5.0)
    mk = sub.add_parser("make-matmul", help="write a one-MatMul ONNX model (A input, B constant)")
    mk.add_argument("out")
    mk.add_argument("--size", type=int, default=4096)
    mk.add_argument("--repeat", type=int, default=0,
                    help="instead: a chain of REPEAT products whose input is one row expanded on the "
                         "device and whose output is summed there, so a run moves a few KB: "
                         "(time of chain R - time of chain 1) / (R - 1) is one product's GPU time")
    mm = sub.add_parser("matmul")
    mm.add_argument("--size", type=int, default=4096)
    mm.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    if args.what == "make-matmul" and args.repeat > 0:
        n, r = args.size, args.repeat
        rng = np.random.default_rng(0)
        inits = [numpy_helper.from_array((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32), "B"),
                 numpy_helper.from_array(np.array([n, n], dtype=np.int64), "full"),
                 numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")]
        nodes = [onnx.helper.make_node("Expand", ["row", "full"], ["t0"])]
        for i in range(r):
            nodes.append(onnx.helper.make_node("MatMul", [f"t{i}", "B"], [f"t{i + 1}"]))
        nodes.append(onnx.helper.make_node("ReduceSum", [f"t{r}", "axis0"], ["Y"], keepdims=0))
        graph = onnx.helper.make_graph(
            nodes, "matmul_chain",
            [onnx.helper.make_tensor_value_info("row", onnx.TensorProto.FLOAT, [1, n])],
            [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [n])], inits)
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), args.out)
        return
    if args.what == "make-matmul":
        n = args.size
        b = numpy_helper.from_array(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32), "B")
        node = onnx.helper.make_node("MatMul", ["A", "B"], ["Y"])
        graph = onnx.helper.make_graph(
            [node], "matmul",
            [onnx.helper.make_tensor_value_info("A", onnx.TensorProto.FLOAT, [n, n])],
            [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [n, n])], [b])
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), args.out)
        return
    if args.what == "matmul":
        n = args.size
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        rate = timed(lambda: a @ b, args.seconds)
        print(json.dumps({"what": f"matmul {n}^3 fp32", "gflops": 2 * n ** 3 * rate / 1e9}))
        return
    g = TorchGraph(args.model, "cuda")
    feeds = feeds_for(g, args.batch, args.seq, "cuda")
    with torch.inference_mode():
        rate = timed(lambda: g.run(feeds), args.seconds)
    print(json.dumps({"model": args.model, "batch": args.batch, "seq": args.seq,
                      "runs_per_s": rate, "items_per_s": rate * args.batch}))


if __name__ == "__main__":
    main()
