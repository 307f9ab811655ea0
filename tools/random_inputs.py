#!/usr/bin/env python3
"""Write random, realistic inputs for a model's graph inputs as .npy files.

Usage: random_inputs.py MODEL --batch B --seq S --out DIR [--seed N] [--vocab V]

Each graph input (initializers excluded) gets DIR/<NAME>.npy. Symbolic
dimensions are filled in by name: one whose name mentions "batch" gets B, one
that mentions "seq", "len" or "token" gets S; unnamed or other symbolic
dimensions get B in position 0 and S elsewhere.

Values by input:
  float inputs     N(0, 1) (float16/float64 inputs are cast from it).
  *mask*           attention mask, 1 = token, 0 = padding: even rows are full,
                   odd rows end in 1..S/4 padding zeros; never an all-zero row.
  *token_type*     segment ids: 0 for a first segment, 1 after a random split
                   point, 0 again on padding.
  other integers   token ids in [1, V): V is the row count of the embedding
                   table the input indexes through a Gather, or --vocab; ids on
                   padded positions (when the model also has a mask) are 0.
  bool inputs      random True/False.

Prints one NAME=PATH line per input, ready to pass as --input to
tools/ort_reference.py or `smelt run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
INT_TYPES = (TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8,
             TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64)


def file_name_for(name: str) -> str:
    """Keep an ONNX tensor name usable as a file name (mirrors smelt)."""
    return "".join("_" if c in "/\\:\0" else c for c in name)


def gather_table_rows(model: onnx.ModelProto) -> dict[str, int]:
    """For each graph input used as Gather indices into an initializer table,
    the table's first dimension (the vocabulary size)."""
    tables = {init.name: init.dims[0] for init in model.graph.initializer if init.dims}
    rows = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if axis == 0:
                rows[node.input[1]] = tables[node.input[0]]
    return rows


def concrete_shape(value_info: onnx.ValueInfoProto, batch: int, seq: int) -> list[int]:
    shape = []
    for position, dim in enumerate(value_info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
            continue
        label = dim.dim_param.lower()
        if "batch" in label:
            shape.append(batch)
        elif any(word in label for word in ("seq", "len", "token")):
            shape.append(seq)
        else:
            shape.append(batch if position == 0 else seq)
    return shape


def padding_mask(shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """1 = token, 0 = padding; odd rows padded at the end, no row all zero."""
    mask = np.ones(shape, dtype=np.int64)
    if len(shape) != 2:
        return mask
    rows, length = shape
    for row in range(1, rows, 2):
        pad = int(rng.integers(1, max(1, length // 4) + 1))
        pad = min(pad, length - 1)          # keep at least one token
        if pad > 0:
            mask[row, length - pad:] = 0
    return mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq", type=int, default=128,
                        help="sequence length for symbolic sequence dims (default 128)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npy files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab", type=int,
                        help="token id range when the model has no embedding Gather for an input")
    args = parser.parse_args()

    model = onnx.load(str(args.model), load_external_data=False)
    rng = np.random.default_rng(args.seed)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    vocab_of = gather_table_rows(model)

    # The mask comes first so that token ids and segment ids can follow it.
    def order(vi):
        return 0 if "mask" in vi.name.lower() else 1
    mask = None
    values: dict[str, np.ndarray] = {}
    for vi in sorted(inputs, key=order):
        elem = vi.type.tensor_type.elem_type
        shape = concrete_shape(vi, args.batch, args.seq)
        name = vi.name.lower()
        np_type = helper.tensor_dtype_to_np_dtype(elem)
        if elem in FLOAT_TYPES:
            value = rng.standard_normal(shape, dtype=np.float32).astype(np_type)
        elif elem == TensorProto.BOOL:
            value = rng.integers(0, 2, size=shape).astype(bool)
        elif elem not in INT_TYPES:
            raise SystemExit(f"error: input {vi.name!r} has unsupported type "
                             f"{TensorProto.DataType.Name(elem)}")
        elif "mask" in name:
            value = padding_mask(shape, rng)
            mask = value
        elif "token_type" in name or "segment" in name:
            value = np.zeros(shape, dtype=np.int64)
            if len(shape) == 2 and shape[1] > 1:
                for row in range(shape[0]):
                    split = int(rng.integers(1, shape[1]))
                    value[row, split:] = 1
            if mask is not None and mask.shape == value.shape:
                value = value * mask
        else:
            vocab = vocab_of.get(vi.name, args.vocab)
            if vocab is None:
                raise SystemExit(f"error: cannot tell the id range of {vi.name!r}; pass --vocab")
            value = rng.integers(1, vocab, size=shape, dtype=np.int64)
            if mask is not None and mask.shape == value.shape:
                value = value * mask
        values[vi.name] = np.ascontiguousarray(value.astype(np_type))

    args.out.mkdir(parents=True, exist_ok=True)
    for vi in inputs:                       # report in graph order
        path = args.out / f"{file_name_for(vi.name)}.npy"
        np.save(path, values[vi.name], allow_pickle=False)
        print(f"{vi.name}={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
