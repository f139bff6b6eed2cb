"""LSTM / GRU / RNN, unrolled before import (nm_tvm/unroll_recurrent.py), against ONNX Runtime.

* The rewrite alone, run in ONNX Runtime, equals the recurrent node to fp32 rounding over the
  forms the support table claims: directions, layouts, initial states given as inputs, as
  constants or absent, optional bias, peepholes, clip, input_forget, linear_before_reset,
  activations with alpha / beta, any subset of the outputs, an opset before Slice / Clip took
  their bounds as inputs.
* Compiled strictly (GEMM-only) for the fp32 target and calibrated on the inputs, every output
  of every cell and direction stays within ``approx.op_error_bound``, the bound the conformance
  runner holds the ONNX node cases to (the sum of the model's table limits plus fp32 slack).
* Forms the rewrite cannot express raise ModelLoadError naming the node and why.

ONNX Runtime has no layout=1 recurrent kernels: those references run the layout-0 node on
swapped inputs and swap the outputs back.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm import approx
from nm_tvm.conformance import ATOL, RTOL
from nm_tvm.frontend import ModelLoadError
from nm_tvm.unroll_recurrent import unroll_recurrent
from nm_tvm.validate import onnx_runtime_outputs

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
NODE = "encoder.rnn"


def _model(op, direction="forward", seq=4, batch=2, inputs=3, hidden=5, layout=0,
           bias=True, initial="input", peepholes=False, outputs=("Y", "Y_h", "Y_c"),
           sequence_lens=None, opset=17, scale=0.5, seed=0, **attrs):
    """A one-node model and its feeds. ``initial``: initial_h / initial_c as graph "input",
    "constant" (an initializer) or None (absent); ``sequence_lens``: a constant, or "input"."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gh = GATES[op] * hidden
    x_shape = (seq, batch, inputs) if layout == 0 else (batch, seq, inputs)
    h_shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    y_shape = (seq, dirs, batch, hidden) if layout == 0 else (batch, seq, dirs, hidden)

    def weight(*shape):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    inits = [numpy_helper.from_array(weight(dirs, gh, inputs), "W"),
             numpy_helper.from_array(weight(dirs, gh, hidden), "R")]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    names = ["X", "W", "R"]

    def optional(name, value, how):
        if how is None:
            names.append("")
        elif how == "input":
            dtype = TensorProto.INT32 if value.dtype == np.int32 else TensorProto.FLOAT
            graph_inputs.append(helper.make_tensor_value_info(name, dtype, value.shape))
            feeds[name] = value
            names.append(name)
        else:
            inits.append(numpy_helper.from_array(value, name))
            names.append(name)

    optional("B", weight(dirs, 2 * gh), "constant" if bias else None)
    lens = np.full(batch, seq, np.int32) if sequence_lens is None or sequence_lens == "input" \
        else np.asarray(sequence_lens, np.int32)
    optional("sequence_lens", lens, None if sequence_lens is None else
             "input" if sequence_lens == "input" else "constant")
    optional("initial_h", rng.standard_normal(h_shape).astype(np.float32), initial)
    if op == "LSTM":
        optional("initial_c", rng.standard_normal(h_shape).astype(np.float32), initial)
        optional("P", weight(dirs, 3 * hidden), "constant" if peepholes else None)
    while names[-1] == "":
        names.pop()
    outs = [o if o != "Y_c" or op == "LSTM" else "" for o in outputs]
    while outs and not outs[-1]:
        outs.pop()
    if layout:
        attrs["layout"] = layout
    node = helper.make_node(op, names, outs, name=NODE, hidden_size=hidden,
                            direction=direction, **attrs)
    graph = helper.make_graph(
        [node], "recurrent", graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, y_shape if o == "Y" else h_shape)
         for o in outs if o], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=9)
    onnx.checker.check_model(proto)
    return proto, feeds


def _reference(proto, feeds):
    """ONNX Runtime's outputs; for layout 1 those of the layout-0 node on swapped tensors."""
    node = proto.graph.node[0]
    if not any(a.name == "layout" and a.i for a in node.attribute):
        return onnx_runtime_outputs(proto, feeds)
    twin = onnx.ModelProto.FromString(proto.SerializeToString())
    kept = [a for a in twin.graph.node[0].attribute if a.name != "layout"]
    del twin.graph.node[0].attribute[:]
    twin.graph.node[0].attribute.extend(kept)
    swapped = ("X", "initial_h", "initial_c", "Y_h", "Y_c")
    for info in list(twin.graph.input) + list(twin.graph.output):
        dims = info.type.tensor_type.shape.dim
        sizes = [d.dim_value for d in dims]
        if info.name in swapped:
            sizes[0], sizes[1] = sizes[1], sizes[0]
        elif info.name == "Y":  # (batch, seq, dirs, hidden) -> (seq, dirs, batch, hidden)
            sizes = [sizes[1], sizes[2], sizes[0], sizes[3]]
        for d, size in zip(dims, sizes):
            d.dim_value = size
    for init in twin.graph.initializer:
        if init.name in swapped:
            init.CopyFrom(numpy_helper.from_array(
                np.ascontiguousarray(np.swapaxes(numpy_helper.to_array(init), 0, 1)), init.name))
    outs = onnx_runtime_outputs(twin, {k: np.ascontiguousarray(np.swapaxes(v, 0, 1))
                                       if k in swapped else v for k, v in feeds.items()})
    return [np.transpose(o, (2, 0, 1, 3)) if info.name == "Y" else np.swapaxes(o, 0, 1)
            for o, info in zip(outs, proto.graph.output)]


def _check_rewrite(proto, feeds):
    expected = _reference(proto, feeds)
    unrolled = unroll_recurrent(proto)
    onnx.checker.check_model(unrolled)
    assert not {n.op_type for n in unrolled.graph.node} & set(GATES)
    got = onnx_runtime_outputs(unrolled, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        # fp32: the same products summed in another order, ORT's activation kernels vs its ops
        np.testing.assert_allclose(g, e, rtol=0, atol=RTOL * np.abs(e).max() + ATOL)
    return unrolled


def _check_compiled(proto, feeds):
    compiled = nm_tvm.compile(proto, strict=True, calibration=[feeds])
    assert compiled.host_ops == []
    got = compiled.run(feeds)
    expected = _reference(proto, feeds)
    op = proto.graph.node[0].op_type
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        bound = approx.op_error_bound(op, compiled.pwl_tables, [feeds["X"]], e)
        err = float(np.max(np.abs(g.astype(np.float64) - e)))
        assert err <= bound, f"{op}: max abs err {err:.3g} > bound {bound:.3g}"
    # every layer named after the source node (a partitioner fallback names them "00_matmul")
    assert compiled.layers and all(layer["node"].startswith(NODE + "/")
                                   for layer in compiled.layers)
    return compiled


# ------------------------------------------------------------------------- the rewrite alone
REWRITE_FORMS = [
    dict(layout=1),
    dict(initial="constant"),
    dict(initial=None, bias=False),
    dict(sequence_lens=[4, 4]),
    dict(outputs=("", "Y_h")),
    dict(outputs=("Y",)),
    dict(outputs=("Y", "", "Y_c")),
    dict(clip=0.6),
    dict(clip=0.6, layout=1, initial="constant"),
    dict(opset=9, initial="constant", clip=1.5),
    dict(seq=1, batch=1),
]


@pytest.mark.parametrize("form", REWRITE_FORMS, ids=lambda f: ",".join(f"{k}={v}" for k, v in
                                                                      f.items()))
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", sorted(GATES))
def test_rewrite_equals_the_recurrent_node(op, direction, form):
    _check_rewrite(*_model(op, direction, **form))


@pytest.mark.parametrize("op, direction, form", [
    ("LSTM", "bidirectional", dict(peepholes=True)),
    ("LSTM", "forward", dict(peepholes=True, initial=None)),
    ("LSTM", "reverse", dict(input_forget=1)),
    ("LSTM", "bidirectional", dict(input_forget=1, peepholes=True, clip=0.5)),
    ("GRU", "bidirectional", dict(linear_before_reset=1)),
    ("GRU", "forward", dict(linear_before_reset=1, initial=None)),
    ("GRU", "reverse", dict(linear_before_reset=1, clip=0.7, layout=1)),
    ("LSTM", "bidirectional", dict(activations=["HardSigmoid", "Elu", "Softsign"] * 2,
                                   activation_alpha=[0.3, 0.9, 0.25],
                                   activation_beta=[0.45, 0.55])),
    ("GRU", "bidirectional", dict(activations=["LeakyRelu", "Softplus", "Sigmoid", "Relu"],
                                  activation_alpha=[0.2])),
    ("RNN", "bidirectional", dict(activations=["Affine", "ScaledTanh"],
                                  activation_alpha=[0.7, 1.5], activation_beta=[0.1, 0.6])),
    ("RNN", "forward", dict(activations=["HardSigmoid"])),  # ONNX defaults: alpha 0.2, beta 0.5
    ("RNN", "forward", dict(activations=["Elu"])),  # alpha 1.0
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_rewrite_of_cell_attributes(op, direction, form):
    _check_rewrite(*_model(op, direction, **form))


def test_input_projection_is_one_gemm_and_weights_are_folded():
    """One MatMul of X for every step and both directions, one recurrent GEMM per step and
    direction (none at the first step from a zero state); W, R and B themselves are gone."""
    proto, feeds = _model("LSTM", "bidirectional", seq=3, initial=None)
    unrolled = _check_rewrite(proto, feeds)
    matmuls = [n for n in unrolled.graph.node if n.op_type == "MatMul"]
    assert [n.input[0] for n in matmuls].count("X") == 1
    assert len(matmuls) == 1 + 2 * (3 - 1)
    assert not {"W", "R", "B"} & {i.name for i in unrolled.graph.initializer}
    assert all(n.name.startswith(NODE + "/") for n in unrolled.graph.node)


# ------------------------------------------------------------------------- compiled
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", sorted(GATES))
def test_compiled_within_the_table_bound(op, direction):
    proto, feeds = _model(op, direction, seq=3 + (direction == "reverse"),
                          batch=1 + (op != "RNN"), hidden=4 + 2 * (op == "RNN"), seed=3)
    compiled = _check_compiled(proto, feeds)
    assert any(layer["name"] == f"{NODE}/{'forward/' * (direction == 'bidirectional')}step1/"
               f"{'gates' if op != 'GRU' else 'zr'}" for layer in compiled.layers)


@pytest.mark.parametrize("form", [
    dict(op="LSTM", layout=1, peepholes=True, clip=0.8, input_forget=1, initial="constant"),
    dict(op="GRU", direction="reverse", linear_before_reset=1, clip=0.6, initial=None),
    dict(op="LSTM", direction="reverse", batch=3, outputs=("", "Y_h")),  # h(c) fused
    dict(op="RNN", direction="bidirectional", activations=["Relu", "Softsign"],
         outputs=("", "Y_h")),
], ids=["lstm", "gru", "lstm_y_h", "rnn"])
def test_compiled_cell_attributes(form):
    form = dict(form)
    _check_compiled(*_model(form.pop("op"), form.pop("direction", "forward"), seq=3, hidden=4,
                            **form))


# ------------------------------------------------------------------------- refused forms
@pytest.mark.parametrize("form, message", [
    (dict(sequence_lens=[4, 3]), r"sequence_lens = \[4, 3\] differs from the sequence "
                                 r"length 4 .*varying lengths need masking"),
    (dict(sequence_lens="input"), "sequence_lens .* is computed at run time"),
    (dict(activations=["ThresholdedRelu"]), "'activations': ThresholdedRelu"),
    (dict(activations=["Swish"]), "'activations': 'Swish' is not supported"),
    (dict(activations=["Affine"]), "Affine needs both activation_alpha and activation_beta"),
    (dict(activations=["Tanh", "Tanh"]), "lists 2 functions; 1 per direction"),
])
def test_unsupported_forms_name_the_node(form, message):
    proto, _ = _model("RNN", **form)
    with pytest.raises(ModelLoadError, match=f"RNN node '{NODE}': .*{message}"):
        nm_tvm.compile(proto, strict=True)


def test_run_time_weights_are_refused():
    proto, _ = _model("GRU")
    weights = next(i for i in proto.graph.initializer if i.name == "R")
    proto.graph.input.append(helper.make_tensor_value_info("R", TensorProto.FLOAT,
                                                           list(weights.dims)))
    kept = [i for i in proto.graph.initializer if i.name != "R"]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    with pytest.raises(ModelLoadError, match=f"GRU node '{NODE}': input R .* must be a "
                                             "constant"):
        nm_tvm.compile(proto, strict=True)
