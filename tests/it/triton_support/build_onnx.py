"""Builds the tiny ONNX network the Triton tests serve, and a reference result.

    python build_onnx.py OUT_DIR SEED

Writes OUT_DIR/model.onnx (a few 3x3 convolutions with random weights, ReLU,
global average pooling), OUT_DIR/input.f32 (a random input, raw little-endian
float32, shape 1x3x32x32) and OUT_DIR/expected.f32 (what onnxruntime computes
for it, shape 1x16), so that a test can check Triton's answer against an
independent run of the same network.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

out_dir, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
channels = [3, 8, 16, 16]
nodes, weights = [], []
previous = "input"
for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
    w = (rng.standard_normal((c_out, c_in, 3, 3)) * 0.2).astype(np.float32)
    b = (rng.standard_normal(c_out) * 0.1).astype(np.float32)
    weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
    nodes.append(helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"conv{i}"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
    previous = f"relu{i}"
nodes.append(helper.make_node("GlobalAveragePool", [previous], ["pooled"]))
nodes.append(helper.make_node("Flatten", ["pooled"], ["output"]))
graph = helper.make_graph(
    nodes,
    "tiny_cnn",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
    [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels[-1]])],
    weights,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
# An IR version every onnxruntime of the last years reads.
model.ir_version = 8
onnx.checker.check_model(model)
os.makedirs(out_dir, exist_ok=True)
path = os.path.join(out_dir, "model.onnx")
onnx.save(model, path)

x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
(y,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})
x.astype("<f4").tofile(os.path.join(out_dir, "input.f32"))
y.astype("<f4").tofile(os.path.join(out_dir, "expected.f32"))
