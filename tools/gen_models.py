#!/usr/bin/env python3
"""Generate Smelt's benchmark and end-to-end test models with onnx + numpy.

Usage: gen_models.py OUTDIR [--only resnet50|bert|gpt2] ...

Writes, with random weights from fixed seeds (the same command writes the same
bytes every time):

  resnet50.onnx    ResNet-50 v1.5 in torchvision's layout. Input `input`
                   [batch, 3, 224, 224] f32, output `logits` [batch, 1000].
  bert_base.onnx   BERT-base (12 layers, hidden 768, 12 heads). Inputs
                   `input_ids`, `attention_mask`, `token_type_ids` [batch, seq]
                   i64; outputs `last_hidden_state` [batch, seq, 768] and
                   `pooler_output` [batch, 768].
  gpt2_small.onnx  GPT-2 small (12 layers, 768, 12 heads). Input `input_ids`
                   [batch, seq] i64, output `logits` [batch, seq, 50257].

The graphs follow the node patterns PyTorch's TorchScript-based ONNX exporter
writes for the torchvision / Hugging Face modules (separate Conv,
BatchNormalization and Relu nodes; shapes computed at run time through
Shape -> Gather -> Unsqueeze -> Concat chains; Erf- and Tanh-GELU spelled out
node by node; small constants as Constant nodes, weights as initializers), so
that Smelt's importer and rewrite passes meet what real exported models contain.
Opset 17 (the first with LayerNormalization), IR version 8 (onnxruntime 1.31
loads IR <= 13, and onnx.helper.make_model would otherwise write a newer one).

Weights are scaled so activations stay in a healthy range: He init for the
convolutions, with BatchNormalization running statistics measured by a numpy
forward pass over random N(0, 1) images (so every BN layer really normalises);
LeCun-normal (std 1/sqrt(fan_in)) dense layers, sharpened for queries and keys
and shrunk on residual branches (see QK_GAIN), N(0, 0.02) embeddings for the
transformers, LayerNorm gamma near 1 and small beta, small non-zero biases.
Every model is checked with onnx.checker (full check, strict shape inference).
"""

from __future__ import annotations

import os

# One BLAS thread: the numpy calibration pass then sums in a fixed order on
# every machine, which keeps the written bytes reproducible. Must precede the
# numpy import.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 17
IR_VERSION = 8
PRODUCER = "smelt tools/gen_models.py"
# torch.finfo(torch.float32).min: what today's Hugging Face models use as the
# "masked out" score.
F32_MIN = float(np.finfo(np.float32).min)


# --------------------------------------------------------------------------
# Graph building
# --------------------------------------------------------------------------


class GraphBuilder:
    """Accumulates nodes and initializers with exporter-style names.

    Node names look like `/encoder/layer.3/attention/self/MatMul_1` and their
    outputs like `/encoder/layer.3/attention/self/MatMul_1_output_0`, the way
    the PyTorch exporter names them. Initializers keep their module path
    (`layer1.0.conv1.weight`). Buffers (BatchNorm running statistics, position
    ids, the causal mask) are initializers too, but are not counted as
    parameters.
    """

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.parameter_count = 0
        self.buffer_count = 0
        self._used_names: dict[str, int] = {}

    def _unique(self, base: str) -> str:
        count = self._used_names.get(base, 0)
        self._used_names[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def initializer(self, name: str, array: np.ndarray, buffer: bool = False) -> str:
        """Store `array` as an initializer named `name`; returns the name."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        if buffer:
            self.buffer_count += array.size
        else:
            self.parameter_count += array.size
        return name

    def node(self, op: str, inputs: list[str], scope: str = "", outputs: int = 1,
             out: str | None = None, **attrs) -> str | list[str]:
        """Append one node; returns its output name (a list if outputs > 1).

        `out` names the single output explicitly (for graph outputs).
        """
        node_name = self._unique(f"{scope}/{op}")
        if out is not None:
            out_names = [out]
        else:
            out_names = [f"{node_name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, out_names, name=node_name, **attrs))
        return out_names[0] if outputs == 1 else out_names

    def const(self, value, dtype, scope: str = "") -> str:
        """A Constant node holding a small scalar or 1-D tensor."""
        array = np.array(value, dtype=dtype)
        return self.node("Constant", [], scope, value=numpy_helper.from_array(array))

    # Shape helpers, written the way the exporter spells `x.size(i)`.
    def dim(self, x: str, index: int, scope: str) -> str:
        """x.shape[index] as a 1-element int64 tensor: Shape -> Gather -> Unsqueeze."""
        shape = self.node("Shape", [x], scope)
        scalar = self.node("Gather", [shape, self.const(index, np.int64, scope)], scope, axis=0)
        return self.node("Unsqueeze", [scalar, self.const([0], np.int64, scope)], scope)

    def dim_scalar(self, x: str, index: int, scope: str) -> str:
        """x.shape[index] as an int64 scalar: Shape -> Gather."""
        shape = self.node("Shape", [x], scope)
        return self.node("Gather", [shape, self.const(index, np.int64, scope)], scope, axis=0)

    def model(self, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto], doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER,
            producer_version="1",
            doc_string=doc,
        )
        return model


def tensor_info(name: str, elem_type: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)


def uniform(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=shape).astype(np.float32)


def quantize_f16(array: np.ndarray) -> np.ndarray:
    """Round to float16 precision (kept as float32) so that measured statistics
    come out bit-identical even if a BLAS sums in a slightly different order."""
    return array.astype(np.float16).astype(np.float32)


# --------------------------------------------------------------------------
# ResNet-50 v1.5
# --------------------------------------------------------------------------


def np_conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Plain NCHW convolution (no groups, no dilation) through im2col + matmul."""
    n, c, _, _ = x.shape
    out_c, _, kh, kw = w.shape
    if kh == 1 and kw == 1 and pad == 0:
        cols = x[:, :, ::stride, ::stride]
        ho, wo = cols.shape[2], cols.shape[3]
        cols = cols.transpose(0, 2, 3, 1).reshape(-1, c)
    else:
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
        ho, wo = windows.shape[2], windows.shape[3]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
    out = cols @ w.reshape(out_c, -1).T
    return np.ascontiguousarray(out.reshape(n, ho, wo, out_c).transpose(0, 3, 1, 2))


def np_maxpool_3x3_s2(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return windows.max(axis=(4, 5))


class ResNetBuilder:
    """Builds the ONNX graph and, alongside, runs the same layers in numpy on
    calibration images so that each BatchNormalization gets running statistics
    matching the activations it will really see."""

    BN_EPS = 1e-5

    def __init__(self, rng: np.random.Generator):
        self.g = GraphBuilder("resnet50")
        self.rng = rng

    def conv_bn(self, x: str, act: np.ndarray, prefix: str, bn_prefix: str, scope: str,
                in_c: int, out_c: int, k: int, stride: int, relu: bool):
        """Conv (no bias) -> BatchNormalization [-> Relu], in graph and numpy."""
        g, rng = self.g, self.rng
        pad = k // 2
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        w = normal(rng, (out_c, in_c, k, k), math.sqrt(2.0 / (out_c * k * k)))
        w_name = g.initializer(f"{prefix}.weight", w)
        y = g.node("Conv", [x, w_name], scope, dilations=[1, 1], group=1,
                   kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride])
        act = np_conv2d(act, w, stride, pad)

        # Trained-looking affine parameters; statistics measured on `act`.
        gamma = uniform(rng, (out_c,), 0.6, 1.2)
        beta = normal(rng, (out_c,), 0.1)
        mean = quantize_f16(act.mean(axis=(0, 2, 3)))
        var = quantize_f16(act.var(axis=(0, 2, 3)) + np.float32(1e-3))
        bn_inputs = [
            y,
            g.initializer(f"{bn_prefix}.weight", gamma),
            g.initializer(f"{bn_prefix}.bias", beta),
            g.initializer(f"{bn_prefix}.running_mean", mean, buffer=True),
            g.initializer(f"{bn_prefix}.running_var", var, buffer=True),
        ]
        y = g.node("BatchNormalization", bn_inputs, scope, epsilon=self.BN_EPS, momentum=0.9)
        scale = gamma / np.sqrt(var + np.float32(self.BN_EPS))
        act = (act - mean[None, :, None, None]) * scale[None, :, None, None] \
            + beta[None, :, None, None]
        if relu:
            y = g.node("Relu", [y], scope)
            act = np.maximum(act, 0)
        return y, act.astype(np.float32)

    def bottleneck(self, x: str, act: np.ndarray, name: str, in_c: int, width: int,
                   stride: int, downsample: bool):
        """torchvision Bottleneck (v1.5: the stride sits on the 3x3 conv)."""
        g = self.g
        scope = "/" + name.replace(".", "/")
        out_c = width * 4
        y, a = self.conv_bn(x, act, f"{name}.conv1", f"{name}.bn1", scope, in_c, width, 1, 1, True)
        y, a = self.conv_bn(y, a, f"{name}.conv2", f"{name}.bn2", scope, width, width, 3, stride, True)
        y, a = self.conv_bn(y, a, f"{name}.conv3", f"{name}.bn3", scope, width, out_c, 1, 1, False)
        if downsample:
            identity, identity_act = self.conv_bn(
                x, act, f"{name}.downsample.0", f"{name}.downsample.1",
                scope + "/downsample", in_c, out_c, 1, stride, False)
        else:
            identity, identity_act = x, act
        y = g.node("Add", [y, identity], scope)
        y = g.node("Relu", [y], scope)
        return y, np.maximum(a + identity_act, 0).astype(np.float32)


def build_resnet50(seed: int = 50) -> tuple[onnx.ModelProto, GraphBuilder]:
    rng = np.random.default_rng(seed)
    # Calibration images: N(0, 1), like normalised ImageNet pixels and like the
    # inputs tools/random_inputs.py writes.
    calib = rng.standard_normal((2, 3, 224, 224), dtype=np.float32)
    rb = ResNetBuilder(rng)
    g = rb.g

    x, act = rb.conv_bn("input", calib, "conv1", "bn1", "", 3, 64, 7, 2, True)
    x = g.node("MaxPool", [x], "/maxpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
               strides=[2, 2], ceil_mode=0, dilations=[1, 1])
    act = np_maxpool_3x3_s2(act)

    in_c = 64
    for layer_index, (blocks, width, stride) in enumerate(
            [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)], start=1):
        for block in range(blocks):
            block_stride = stride if block == 0 else 1
            x, act = rb.bottleneck(x, act, f"layer{layer_index}.{block}", in_c, width,
                                   block_stride, downsample=(block == 0))
            in_c = width * 4

    x = g.node("GlobalAveragePool", [x], "/avgpool")
    x = g.node("Flatten", [x], "", axis=1)
    # torch.nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(2048)
    fc_w = g.initializer("fc.weight", uniform(rng, (1000, 2048), -bound, bound))
    fc_b = g.initializer("fc.bias", uniform(rng, (1000,), -bound, bound))
    g.node("Gemm", [x, fc_w, fc_b], "/fc", out="logits", alpha=1.0, beta=1.0, transB=1)

    model = g.model(
        [tensor_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [tensor_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        "ResNet-50 v1.5 (torchvision layout), random weights, seed %d" % seed,
    )
    return model, g


# --------------------------------------------------------------------------
# Transformer pieces shared by BERT and GPT-2
# --------------------------------------------------------------------------

# With LeCun-normal query/key projections the attention scores have std ~1 and
# the softmax over 128 keys is nearly uniform; every layer then mixes all tokens
# into the same average and, through 12 layers, the hidden states of a sequence
# collapse onto one vector (measured: BERT's per-token spread fell from 0.85 to
# 0.03 of the overall std). Sharper attention (query and key weights scaled by
# QK_GAIN, so scores have std ~QK_GAIN**2 and the top key gets ~0.45 of the
# weight) and, in post-LayerNorm BERT, residual branches smaller than the
# residual itself (BRANCH_GAIN) keep the tokens distinct, as in trained models
# (BERT's per-token spread then ends at ~0.7, GPT-2's logits' at ~0.65).
QK_GAIN = 2.0
BRANCH_GAIN = 0.3


def linear(g: GraphBuilder, rng: np.random.Generator, x: str, prefix: str, scope: str,
           in_f: int, out_f: int, std: float | None = None,
           column_gain: np.ndarray | None = None) -> str:
    """x @ W + b with W stored [in, out], as the exporter writes nn.Linear on 3-D input.

    W ~ N(0, std^2), std defaulting to 1/sqrt(in_f); `column_gain` multiplies
    W's output columns (GPT-2's fused QKV projection scales its q and k parts).
    """
    std = 1.0 / math.sqrt(in_f) if std is None else std
    weight = normal(rng, (in_f, out_f), std)
    if column_gain is not None:
        weight = (weight * column_gain[None, :]).astype(np.float32)
    w = g.initializer(f"{prefix}.weight", weight)
    b = g.initializer(f"{prefix}.bias", normal(rng, (out_f,), 0.02))
    y = g.node("MatMul", [x, w], scope)
    return g.node("Add", [b, y], scope)


def layer_norm(g: GraphBuilder, rng: np.random.Generator, x: str, prefix: str,
               scope: str, hidden: int, eps: float, out: str | None = None) -> str:
    gamma = g.initializer(f"{prefix}.weight",
                          (1.0 + normal(rng, (hidden,), 0.05)).astype(np.float32))
    beta = g.initializer(f"{prefix}.bias", normal(rng, (hidden,), 0.02))
    return g.node("LayerNormalization", [x, gamma, beta], scope, out=out, axis=-1, epsilon=eps)


def split_heads(g: GraphBuilder, x: str, scope: str, heads: int, head_dim: int,
                perm: list[int]) -> str:
    """[b, s, h*d] -> Reshape [b, s, h, d] (dims read at run time) -> Transpose(perm)."""
    batch = g.dim(x, 0, scope)
    seq = g.dim(x, 1, scope)
    shape = g.node("Concat", [batch, seq, g.const([heads], np.int64, scope),
                              g.const([head_dim], np.int64, scope)], scope, axis=0)
    y = g.node("Reshape", [x, shape], scope)
    return g.node("Transpose", [y], scope, perm=perm)


def merge_heads(g: GraphBuilder, x: str, scope: str, hidden: int) -> str:
    """[b, h, s, d] -> Transpose [b, s, h, d] -> Reshape [b, s, h*d]."""
    y = g.node("Transpose", [x], scope, perm=[0, 2, 1, 3])
    batch = g.dim(y, 0, scope)
    seq = g.dim(y, 1, scope)
    shape = g.node("Concat", [batch, seq, g.const([hidden], np.int64, scope)], scope, axis=0)
    return g.node("Reshape", [y, shape], scope)


# --------------------------------------------------------------------------
# BERT-base
# --------------------------------------------------------------------------


def build_bert_base(seed: int = 110, qk_gain: float = QK_GAIN,
                    branch_gain: float = BRANCH_GAIN) -> tuple[onnx.ModelProto, GraphBuilder]:
    layers, hidden, heads, ffn = 12, 768, 12, 3072
    vocab, max_pos, type_vocab = 30522, 512, 2
    head_dim = hidden // heads
    eps = 1e-12
    rng = np.random.default_rng(seed)
    g = GraphBuilder("bert_base")

    # Embeddings: word + position + token type, then LayerNorm.
    scope = "/embeddings"
    word = g.initializer("embeddings.word_embeddings.weight", normal(rng, (vocab, hidden), 0.02))
    pos_table = g.initializer("embeddings.position_embeddings.weight",
                              normal(rng, (max_pos, hidden), 0.02))
    type_table = g.initializer("embeddings.token_type_embeddings.weight",
                               normal(rng, (type_vocab, hidden), 0.02))
    # The registered buffer position_ids = arange(512)[None], sliced to seq.
    pos_buffer = g.initializer("embeddings.position_ids",
                               np.arange(max_pos, dtype=np.int64)[None, :], buffer=True)
    seq_len = g.dim("input_ids", 1, scope)
    position_ids = g.node("Slice", [pos_buffer, g.const([0], np.int64, scope), seq_len,
                                    g.const([1], np.int64, scope),
                                    g.const([1], np.int64, scope)], scope)
    words = g.node("Gather", [word, "input_ids"], scope + "/word_embeddings", axis=0)
    types = g.node("Gather", [type_table, "token_type_ids"], scope + "/token_type_embeddings",
                   axis=0)
    x = g.node("Add", [words, types], scope)
    positions = g.node("Gather", [pos_table, position_ids], scope + "/position_embeddings",
                       axis=0)
    x = g.node("Add", [x, positions], scope)
    x = layer_norm(g, rng, x, "embeddings.LayerNorm", scope + "/LayerNorm", hidden, eps)

    # Extended attention mask: (1 - mask[:, None, None, :]) * finfo.min.
    scope = ""
    mask = g.node("Unsqueeze", ["attention_mask", g.const([1], np.int64, scope)], scope)
    mask = g.node("Unsqueeze", [mask, g.const([2], np.int64, scope)], scope)
    mask = g.node("Cast", [mask], scope, to=TensorProto.FLOAT)
    mask = g.node("Sub", [g.const(1.0, np.float32, scope), mask], scope)
    mask_bias = g.node("Mul", [mask, g.const(F32_MIN, np.float32, scope)], scope)

    for i in range(layers):
        prefix = f"encoder.layer.{i}"
        scope = f"/encoder/layer.{i}"
        att = scope + "/attention/self"
        qk_std = qk_gain / math.sqrt(hidden)
        q = linear(g, rng, x, f"{prefix}.attention.self.query", att + "/query", hidden, hidden,
                   std=qk_std)
        k = linear(g, rng, x, f"{prefix}.attention.self.key", att + "/key", hidden, hidden,
                   std=qk_std)
        v = linear(g, rng, x, f"{prefix}.attention.self.value", att + "/value", hidden, hidden)
        q = split_heads(g, q, att, heads, head_dim, [0, 2, 1, 3])
        k_t = split_heads(g, k, att, heads, head_dim, [0, 2, 3, 1])
        v = split_heads(g, v, att, heads, head_dim, [0, 2, 1, 3])
        scores = g.node("MatMul", [q, k_t], att)
        scores = g.node("Div", [scores, g.const(math.sqrt(head_dim), np.float32, att)], att)
        scores = g.node("Add", [scores, mask_bias], att)
        probs = g.node("Softmax", [scores], att, axis=-1)
        context = g.node("MatMul", [probs, v], att)
        context = merge_heads(g, context, att, hidden)

        out = scope + "/attention/output"
        y = linear(g, rng, context, f"{prefix}.attention.output.dense", out + "/dense",
                   hidden, hidden, std=branch_gain / math.sqrt(hidden))
        y = g.node("Add", [y, x], out)
        x = layer_norm(g, rng, y, f"{prefix}.attention.output.LayerNorm", out + "/LayerNorm",
                       hidden, eps)

        inter = scope + "/intermediate"
        h = linear(g, rng, x, f"{prefix}.intermediate.dense", inter + "/dense", hidden, ffn)
        # GELU, exact: x * 0.5 * (1 + erf(x / sqrt(2))).
        act = inter + "/intermediate_act_fn"
        e = g.node("Div", [h, g.const(math.sqrt(2.0), np.float32, act)], act)
        e = g.node("Erf", [e], act)
        e = g.node("Add", [e, g.const(1.0, np.float32, act)], act)
        h = g.node("Mul", [h, e], act)
        h = g.node("Mul", [h, g.const(0.5, np.float32, act)], act)

        out = scope + "/output"
        y = linear(g, rng, h, f"{prefix}.output.dense", out + "/dense", ffn, hidden,
                   std=branch_gain / math.sqrt(ffn))
        y = g.node("Add", [y, x], out)
        # The last layer's LayerNorm writes the graph output directly.
        x = layer_norm(g, rng, y, f"{prefix}.output.LayerNorm", out + "/LayerNorm", hidden, eps,
                       out="last_hidden_state" if i == layers - 1 else None)
    last_hidden = x

    # Pooler: tanh(dense(hidden[:, 0])); nn.Linear on 2-D input exports as Gemm.
    scope = "/pooler"
    first = g.node("Gather", [last_hidden, g.const(0, np.int64, scope)], scope, axis=1)
    pw = g.initializer("pooler.dense.weight", normal(rng, (hidden, hidden), 1 / math.sqrt(hidden)))
    pb = g.initializer("pooler.dense.bias", normal(rng, (hidden,), 0.02))
    pooled = g.node("Gemm", [first, pw, pb], scope + "/dense", alpha=1.0, beta=1.0, transB=1)
    g.node("Tanh", [pooled], scope + "/activation", out="pooler_output")

    ids = ["batch", "seq"]
    model = g.model(
        [tensor_info("input_ids", TensorProto.INT64, ids),
         tensor_info("attention_mask", TensorProto.INT64, ids),
         tensor_info("token_type_ids", TensorProto.INT64, ids)],
        [tensor_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden]),
         tensor_info("pooler_output", TensorProto.FLOAT, ["batch", hidden])],
        "BERT-base (uncased geometry), random weights, seed %d" % seed,
    )
    return model, g


# --------------------------------------------------------------------------
# GPT-2 small
# --------------------------------------------------------------------------


def build_gpt2_small(seed: int = 124,
                     qk_gain: float = QK_GAIN) -> tuple[onnx.ModelProto, GraphBuilder]:
    layers, hidden, heads, ffn = 12, 768, 12, 3072
    vocab, n_positions = 50257, 1024
    head_dim = hidden // heads
    eps = 1e-5
    rng = np.random.default_rng(seed)
    g = GraphBuilder("gpt2_small")
    # Residual output projections (attn.c_proj, mlp.c_proj) get their std
    # divided by sqrt(2 * n_layer), as GPT-2 initialises them, so the residual
    # stream grows slowly through the 24 additions.
    residual_scale = 1.0 / math.sqrt(2 * layers)

    wte = g.initializer("transformer.wte.weight", normal(rng, (vocab, hidden), 0.02))
    wpe = g.initializer("transformer.wpe.weight", normal(rng, (n_positions, hidden), 0.01))
    # Lower-triangular "bias" buffer of GPT2Attention, shared by all layers here
    # (the exporter deduplicates identical initializers).
    causal = g.initializer("transformer.h.attn.bias",
                           np.tril(np.ones((n_positions, n_positions), dtype=bool))[None, None],
                           buffer=True)

    scope = "/transformer"
    seq = g.dim_scalar("input_ids", 1, scope)
    position_ids = g.node("Range", [g.const(0, np.int64, scope), seq,
                                    g.const(1, np.int64, scope)], scope)
    position_ids = g.node("Unsqueeze", [position_ids, g.const([0], np.int64, scope)], scope)
    tokens = g.node("Gather", [wte, "input_ids"], scope + "/wte", axis=0)
    positions = g.node("Gather", [wpe, position_ids], scope + "/wpe", axis=0)
    x = g.node("Add", [tokens, positions], scope)

    for i in range(layers):
        prefix = f"transformer.h.{i}"
        scope = f"/transformer/h.{i}"
        att = scope + "/attn"
        h = layer_norm(g, rng, x, f"{prefix}.ln_1", scope + "/ln_1", hidden, eps)
        qkv_gain = np.concatenate([np.full(2 * hidden, qk_gain, np.float32),
                                   np.ones(hidden, np.float32)])
        qkv = linear(g, rng, h, f"{prefix}.attn.c_attn", att + "/c_attn", hidden, 3 * hidden,
                     column_gain=qkv_gain)
        q, k, v = g.node("Split", [qkv, g.const([hidden] * 3, np.int64, att)], att,
                         outputs=3, axis=2)
        q = split_heads(g, q, att, heads, head_dim, [0, 2, 1, 3])
        k_t = split_heads(g, k, att, heads, head_dim, [0, 2, 3, 1])
        v = split_heads(g, v, att, heads, head_dim, [0, 2, 1, 3])
        scores = g.node("MatMul", [q, k_t], att)
        scores = g.node("Div", [scores, g.const(math.sqrt(head_dim), np.float32, att)], att)

        # causal_mask = bias[:, :, key_len - query_len : key_len, :key_len]
        query_len = g.dim(q, 2, att)
        key_len = g.dim(k_t, 3, att)
        start = g.node("Sub", [key_len, query_len], att)
        rows = g.node("Slice", [causal, start, key_len, g.const([2], np.int64, att),
                                g.const([1], np.int64, att)], att)
        mask = g.node("Slice", [rows, g.const([0], np.int64, att), key_len,
                                g.const([3], np.int64, att), g.const([1], np.int64, att)], att)
        scores = g.node("Where", [mask, scores, g.const(F32_MIN, np.float32, att)], att)
        probs = g.node("Softmax", [scores], att, axis=-1)
        context = g.node("MatMul", [probs, v], att)
        context = merge_heads(g, context, att, hidden)
        y = linear(g, rng, context, f"{prefix}.attn.c_proj", att + "/c_proj", hidden, hidden,
                   std=residual_scale / math.sqrt(hidden))
        x = g.node("Add", [y, x], scope)

        mlp = scope + "/mlp"
        h = layer_norm(g, rng, x, f"{prefix}.ln_2", scope + "/ln_2", hidden, eps)
        h = linear(g, rng, h, f"{prefix}.mlp.c_fc", mlp + "/c_fc", hidden, ffn)
        # gelu_new: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
        act = mlp + "/act"
        half = g.node("Mul", [g.const(0.5, np.float32, act), h], act)
        cube = g.node("Pow", [h, g.const(3.0, np.float32, act)], act)
        cube = g.node("Mul", [g.const(0.044715, np.float32, act), cube], act)
        inner = g.node("Add", [h, cube], act)
        inner = g.node("Mul", [g.const(math.sqrt(2.0 / math.pi), np.float32, act), inner], act)
        t = g.node("Tanh", [inner], act)
        t = g.node("Add", [g.const(1.0, np.float32, act), t], act)
        h = g.node("Mul", [half, t], act)
        y = linear(g, rng, h, f"{prefix}.mlp.c_proj", mlp + "/c_proj", ffn, hidden,
                   std=residual_scale / math.sqrt(ffn))
        x = g.node("Add", [x, y], scope)

    x = layer_norm(g, rng, x, "transformer.ln_f", "/transformer/ln_f", hidden, eps)
    # Tied LM head: logits = x @ wte^T.
    wte_t = g.node("Transpose", [wte], "/lm_head", perm=[1, 0])
    g.node("MatMul", [x, wte_t], "/lm_head", out="logits")

    model = g.model(
        [tensor_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [tensor_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        "GPT-2 small, random weights, seed %d" % seed,
    )
    return model, g


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

MODELS = {
    "resnet50": ("resnet50.onnx", build_resnet50),
    "bert": ("bert_base.onnx", build_bert_base),
    "gpt2": ("gpt2_small.onnx", build_gpt2_small),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder to write the .onnx files into")
    parser.add_argument("--only", action="append", choices=sorted(MODELS),
                        help="build only this model (repeatable)")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)

    for key in args.only or list(MODELS):
        file_name, build = MODELS[key]
        started = time.monotonic()
        model, builder = build()
        built = time.monotonic()
        onnx.checker.check_model(model, full_check=True)
        checked = time.monotonic()
        path = args.outdir / file_name
        # Write beside the target and rename, so an interrupted run never
        # leaves a truncated model that looks complete.
        partial = path.with_suffix(".onnx.partial")
        partial.write_bytes(model.SerializeToString())
        os.replace(partial, path)
        size = path.stat().st_size
        print(f"{file_name:<16} {builder.parameter_count / 1e6:7.2f} M parameters "
              f"({builder.parameter_count:,}; +{builder.buffer_count:,} buffer elements), "
              f"{len(model.graph.node)} nodes, {size / 2**20:6.1f} MiB; "
              f"built {built - started:.1f} s, checked {checked - built:.1f} s, "
              f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
