"""Layers are named as in the source model (nm_tvm.provenance) through every pass."""
from __future__ import annotations

import csv

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.models import bert_tiny, small_cnn
from nm_tvm.profile_report import write_csv

F32 = np.float32


def _node_names(proto: onnx.ModelProto) -> set[str]:
    return {n.name or n.output[0] for n in proto.graph.node}


def test_cnn_layers_carry_their_onnx_nodes():
    proto = small_cnn()
    compiled = nm_tvm.compile(proto)
    layers = {layer["name"]: layer["source_nodes"] for layer in compiled.layers}
    # conv + batch norm (folded into the weights) + ReLU run as one layer named after the conv
    assert layers["stem"] == ["stem", "stem_bn", "stem_relu"]
    assert layers["block1.conv2"] == ["block1.conv2", "block1.conv2_bn", "block1.conv2_add",
                                      "block1.conv2_relu"]
    names = _node_names(proto)
    assert all(set(nodes) <= names and nodes for nodes in layers.values())


def test_identical_layers_keep_their_own_names():
    """TVM shares one composite function between equal layer norms; each call keeps its node."""
    proto = bert_tiny(seq=8)
    compiled = nm_tvm.compile(proto)
    names = [layer["name"] for layer in compiled.layers]
    assert len(set(names)) == len(names)
    norms = {n.name for n in proto.graph.node if n.op_type == "LayerNormalization"}
    assert len(norms) >= 3
    for norm in norms:  # each layer norm decomposes into numbered steps, all its own
        steps = [layer for layer in compiled.layers if layer["name"].startswith(norm + "/")]
        assert len(steps) >= 6 and all(layer["source_nodes"] == [norm] for layer in steps)
    assert all(layer["source_nodes"] for layer in compiled.layers)
    assert set().union(*(layer["source_nodes"] for layer in compiled.layers)) <= _node_names(proto)


def test_unnamed_nodes_are_named_after_their_output():
    w = np.random.default_rng(0).standard_normal((4, 4)).astype(F32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["hidden"]),
         helper.make_node("Relu", ["hidden"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    compiled = nm_tvm.compile(proto)
    assert [(layer["name"], layer["source_nodes"]) for layer in compiled.layers] == [
        ("hidden", ["hidden", "y"])]


def test_relax_models_use_variable_names_or_numbered_kinds():
    import tvm
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((4, 8), "float32")) -> R.Tensor((4, 8), "float32"):
            with R.dataflow():
                proj = R.matmul(x, R.const(np.eye(8, dtype=F32)))
                lv = R.nn.relu(R.add(proj, R.const(np.ones((8,), F32))))
                R.output(lv)
            return lv

    compiled = nm_tvm.compile(Module)
    names = [layer["name"] for layer in compiled.layers]
    assert names[0] == "proj"  # the variable the anchor was bound to
    # automatic names (lv...) say nothing: those layers are numbered and named by kind
    assert names[1:] and all(name == f"{i:02d}_{layer['kind'].split('.', 1)[1]}"
                             for i, (name, layer) in enumerate(zip(names, compiled.layers))
                             if i > 0)
    assert all(layer["source_nodes"] == [] for layer in compiled.layers)


def test_shared_gemm_output_is_not_computed_twice():
    """x = MatMul + bias feeds both x * 0.5 and ReLU(x): folding the scale into the GEMM would
    run the GEMM twice (once scaled). The MACs stay those of one GEMM."""
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((16, 16)).astype(F32), rng.standard_normal(16).astype(F32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "b"], ["h"], name="fc_bias"),
             helper.make_node("Mul", ["h", "half"], ["scaled"], name="scale"),
             helper.make_node("Relu", ["h"], ["act"], name="act"),
             helper.make_node("Add", ["scaled", "act"], ["y"], name="sum")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(0.5, F32), "half")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    compiled = nm_tvm.compile(proto)
    x = rng.standard_normal((8, 16)).astype(F32)
    (y,) = compiled.run({"x": x})
    h = x @ w + b
    np.testing.assert_allclose(y, 0.5 * h + np.maximum(h, 0), rtol=1e-5, atol=1e-5)
    assert compiled.stats.macs == 8 * 16 * 16
    assert sum(layer["kind"].startswith("nm.matmul") for layer in compiled.layers) == 1


def test_profile_csv_names_layers_and_their_nodes(tmp_path):
    compiled = nm_tvm.compile(small_cnn())
    compiled.run({"input": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(F32)})
    path = tmp_path / "profile.csv"
    write_csv(compiled.stats, path)
    with open(path) as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    by_name = {row["layer"]: row for row in rows}
    assert by_name["expand"]["source_nodes"] == "expand + expand_bn + expand_relu"
    assert by_name["TOTAL"]["source_nodes"] == ""
    assert int(by_name["TOTAL"]["stall_queue"]) >= 0


@pytest.mark.parametrize("strict", [True, False])
def test_host_ops_name_their_onnx_node(strict):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="running_total")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(np.array(1, np.int64), "axis")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if strict:
        with pytest.raises(Exception, match="node 'running_total'"):
            nm_tvm.compile(proto)
    else:
        assert any("running_total" in op for op in nm_tvm.compile(proto, strict=False).host_ops)


def test_per_layer_compares_each_layer_with_its_nodes_output():
    from nm_tvm.per_layer import first_divergence, match_layers

    proto = bert_tiny(seq=8)
    compiled = nm_tvm.compile(proto)
    x = {"embeddings": np.random.default_rng(0).standard_normal((1, 8, 128)).astype(F32)}
    matches = {m.layer: m for m in match_layers(compiled, proto, x, 1e-2)}
    output_of = {n.name: n.output[0] for n in proto.graph.node}
    norm = "encoder.layer.0.output.LayerNorm"
    steps = sorted((m for name, m in matches.items() if name.startswith(norm + "/")),
                   key=lambda m: m.layer_id)
    assert all(m.onnx_tensor is None and m.ok is None for m in steps[:-1])  # inner steps
    assert steps[-1].onnx_tensor == output_of[norm] and steps[-1].ok
    dense = matches["encoder.layer.0.output.dense.matmul"]  # matmul + bias + residual
    assert dense.onnx_tensor == output_of["encoder.layer.0.res2"] and dense.ok
    assert first_divergence(list(matches.values())) is None


def test_per_node_rows_sum_the_layers_of_each_source_node(tmp_path):
    proto = bert_tiny(seq=8)
    compiled = nm_tvm.compile(proto)
    compiled.run({"embeddings": np.random.default_rng(0).standard_normal((1, 8, 128))
                  .astype(F32)})
    stats = compiled.stats
    nodes = {row["node"]: row for row in stats.per_node_rows()}
    norm = "encoder.layer.1.output.LayerNorm"
    steps = [layer for layer in stats.layers if layer.node == norm]
    assert nodes[norm]["layers"] == len(steps) == 8
    assert nodes[norm]["cycles"] == sum(layer.counters["cycles"] for layer in steps)
    assert nodes[norm]["macs"] == sum(layer.counters["macs"] for layer in steps) > 0
    assert sum(row["cycles"] for row in nodes.values()) == stats.cycles
    assert len(nodes) < len(stats.layers)  # decomposed nodes are one row each
    path = tmp_path / "nodes.csv"
    write_csv(stats, path, by_node=True)
    with open(path) as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert rows[-1]["node"] == "TOTAL" and int(rows[-1]["cycles"]) == stats.cycles
    assert [r["node"] for r in rows[:-1]] == list(nodes)
