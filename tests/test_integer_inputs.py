"""Integer graph inputs end to end: Gather on a constant table (GATHER) and Cast to float
(a converting LOAD) on the accelerator, strict GEMM-only, bit-exact to ONNX Runtime on both
presets; negative indices; a BERT-style attention mask; run-time errors that name the index."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.runtime import InputError
from nm_tvm.validate import onnx_runtime_outputs
from test_simulator import bf16

TARGETS = ["nm/fp32-16x16", "nm/bf16-32x32"]


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "ints", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(proto)
    return proto


def _embedding(rng, vocab=300, width=40, ids_shape=(2, 7), axis=0, itype=TensorProto.INT64):
    table = rng.standard_normal((vocab, width) if axis == 0 else (width, vocab)).astype(np.float32)
    out_shape = list(ids_shape) + [width] if axis == 0 else [width] + list(ids_shape)
    return _model([helper.make_node("Gather", ["table", "ids"], ["y"], axis=axis, name="embed")],
                  [helper.make_tensor_value_info("ids", itype, list(ids_shape))],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                  [numpy_helper.from_array(table, "table")])


def _assert_gemm_only(compiled, kinds):
    assert not compiled.host_ops
    assert sorted({layer["kind"] for layer in compiled.layers}) == sorted(kinds)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("axis,np_type,onnx_type", [(0, np.int64, TensorProto.INT64),
                                                    (1, np.int32, TensorProto.INT32)])
def test_embedding_lookup_is_exact(target, axis, np_type, onnx_type, rng):
    proto = _embedding(rng, axis=axis, itype=onnx_type)
    compiled = nm_tvm.compile(proto, target=target)
    _assert_gemm_only(compiled, ["nm.gather"])
    ids = rng.integers(-300, 300, size=(2, 7)).astype(np_type)
    ids[0, :3] = [0, 299, -300]  # both ends, from either side
    (out,) = compiled.run({"ids": ids})
    (ref,) = onnx_runtime_outputs(proto, {"ids": ids})
    np.testing.assert_array_equal(out, ref)  # a copy: exact even through bf16 targets
    assert compiled.stats.totals["n_gather"] >= 1


def test_out_of_range_index_is_named(rng):
    compiled = nm_tvm.compile(_embedding(rng), target="nm/fp32-16x16")
    ids = np.zeros((2, 7), np.int64)
    ids[1, 4] = 300
    with pytest.raises(Exception, match=r"index 11 of 14 is 300, outside \[-300, 300\)"):
        compiled.run({"ids": ids})
    with pytest.raises(InputError, match="input 'ids' has dtype int32; expected int64"):
        compiled.run({"ids": ids.astype(np.int32)})


@pytest.mark.parametrize("target", TARGETS)
def test_cast_of_large_integers_is_exact(target):
    proto = _model([helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT, name="cast")],
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, [3, 5])],
                   [helper.make_tensor_value_info("f", TensorProto.FLOAT, [3, 5])], [])
    compiled = nm_tvm.compile(proto, target=target)
    _assert_gemm_only(compiled, ["nm.cast"])
    ids = np.array([[0, 1, 257, 30521, -9], [2**24 + 1, 2**31, -(2**40) - 3, 7, 8],
                    [9, 10, 11, 12, 2**53 + 1]], np.int64)
    (out,) = compiled.run({"ids": ids})
    np.testing.assert_array_equal(out, onnx_runtime_outputs(proto, {"ids": ids})[0])


@pytest.mark.parametrize("target", TARGETS)
def test_bert_style_embedding_and_mask(target, rng):
    """Token + position embeddings and the additive attention mask of an exported BERT:
    Gather, Cast, Sub, Mul, Add all on the accelerator."""
    seq, width = 6, 32
    tok = rng.standard_normal((100, width)).astype(np.float32)
    pos = rng.standard_normal((seq, width)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["tok", "ids"], ["t"], name="word_embeddings"),
        helper.make_node("Add", ["t", "pos"], ["emb"], name="add_pos"),
        helper.make_node("Unsqueeze", ["mask", "axes"], ["m1"], name="unsq"),
        helper.make_node("Cast", ["m1"], ["mf"], to=TensorProto.FLOAT, name="mask_cast"),
        helper.make_node("Sub", ["one", "mf"], ["inv"], name="invert"),
        helper.make_node("Mul", ["inv", "big"], ["bias"], name="mask_bias"),
    ]
    proto = _model(nodes,
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq]),
                    helper.make_tensor_value_info("mask", TensorProto.INT64, [1, seq])],
                   [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, seq, width]),
                    helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 1, seq])],
                   [numpy_helper.from_array(tok, "tok"), numpy_helper.from_array(pos, "pos"),
                    numpy_helper.from_array(np.array([1], np.int64), "axes"),
                    numpy_helper.from_array(np.array(1.0, np.float32), "one"),
                    numpy_helper.from_array(np.array(-10000.0, np.float32), "big")])
    compiled = nm_tvm.compile(proto, target=target)
    assert not compiled.host_ops
    feeds = {"ids": np.array([[5, 99, 0, 17, 0, 0]], np.int64),
             "mask": np.array([[1, 1, 1, 1, 0, 0]], np.int64)}
    out = compiled.run(feeds)
    ref = onnx_runtime_outputs(proto, feeds)
    np.testing.assert_array_equal(out[1], ref[1])  # mask arithmetic on 0/1 values: exact
    # the gathered rows and the add both stay in the fp32 accumulator: exact on bf16 too
    np.testing.assert_array_equal(out[0], ref[0])


def test_gather_of_a_computed_tensor_falls_back_by_name(rng):
    """The table must be a constant: a gathered activation stays on the host, named."""
    proto = _model(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Gather", ["r", "ids"], ["y"], axis=0, name="pick")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 3]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [])
    with pytest.raises(Exception, match="relax.take \\(node 'pick'\\)"):
        nm_tvm.compile(proto, target="nm/fp32-16x16")
    compiled = nm_tvm.compile(proto, target="nm/fp32-16x16", strict=False)
    feeds = {"x": rng.standard_normal((5, 3)).astype(np.float32),
             "ids": np.array([4, -1], np.int64)}
    np.testing.assert_array_equal(compiled.run(feeds)[0], onnx_runtime_outputs(proto, feeds)[0])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("x_shape, axis, indices", [
    ((2, 1, 128), 0, 0),                       # silero-vad: state[0] (a scalar index)
    ((2, 1, 128), 0, -1),                      # from the end
    ((3, 10, 4), 1, [[1, 3, 5], [9, 0, 0]]),   # runs: a stride-2 slice, then single rows
])
def test_gather_of_a_computed_tensor_at_constant_indices_is_slices(target, x_shape, axis,
                                                                   indices, rng):
    """Constant indices into an activation: strided DMA slices (and a concat), exact on fp32;
    on bf16 the copies pass through the bf16 scratchpad (as every Slice), so the result is
    ORT's rounded to bf16 once."""
    idx = np.array(indices, np.int64)
    out_shape = list(x_shape[:axis]) + list(idx.shape) + list(x_shape[axis + 1:])
    proto = _model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Gather", ["r", "ids"], ["y"], axis=axis, name="pick")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(idx, "ids")])
    compiled = nm_tvm.compile(proto, target=target)
    assert not compiled.host_ops
    assert "nm.gather" not in {layer["kind"] for layer in compiled.layers}
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    (ref,) = onnx_runtime_outputs(proto, feeds)
    np.testing.assert_array_equal(compiled.run(feeds)[0], bf16(ref) if "bf16" in target else ref)


def _one_hot(classes=4):
    return _model(
        [helper.make_node("Expand", ["ids", "shape"], ["e"]),
         helper.make_node("Equal", ["e", "classes"], ["m"]),
         helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT)],
        [helper.make_tensor_value_info("ids", TensorProto.INT32, [1, 6, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4])],
        [numpy_helper.from_array(np.array([1, 6, 1], np.int64), "shape"),
         numpy_helper.from_array(np.arange(classes, dtype=np.int32).reshape(1, 1, classes),
                                 "classes")])


def test_expand_of_an_integer_tensor_to_its_own_shape_is_removed():
    """jax2tf exports (magika) broadcast int32 bytes to their own shape before a one-hot
    Equal: an identity, where an integer broadcast would have no accelerator form."""
    proto = _one_hot()
    compiled = nm_tvm.compile(proto)
    assert not compiled.host_ops
    feeds = {"ids": np.array([0, 3, 2, 2, 1, 7], np.int32).reshape(1, 6, 1)}
    np.testing.assert_array_equal(compiled.run(feeds)[0], onnx_runtime_outputs(proto, feeds)[0])


def _embedding_layer_norm(rng, vocab=500, width=32, seq=8, scale=12.0):
    """Token embeddings of a large scale into LayerNorm: variances far above the default
    rsqrt range, as in real text encoders."""
    table = (scale * rng.standard_normal((vocab, width))).astype(np.float32)
    gamma = np.ones(width, np.float32)
    beta = np.zeros(width, np.float32)
    return _model(
        [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
         helper.make_node("LayerNormalization", ["e", "gamma", "beta"], ["y"], axis=-1,
                          epsilon=1e-12, name="ln")],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, width])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(gamma, "gamma"),
         numpy_helper.from_array(beta, "beta")])


def test_token_models_are_calibrated_on_synthetic_ids_by_default(rng):
    proto = _embedding_layer_norm(rng)
    default = nm_tvm.compile(proto, target="nm/fp32-16x16")
    assert default.calibration == ("synthetic, 2 samples (ids: ids in [0, 500))")
    none = nm_tvm.compile(proto, target="nm/fp32-16x16", calibration=[])
    assert none.calibration == "default ranges"
    ids = {"ids": rng.integers(0, 500, (1, 8)).astype(np.int64)}
    (ref,) = onnx_runtime_outputs(proto, ids)
    err_default = np.abs(default.run(ids)[0] - ref).max()
    err_none = np.abs(none.run(ids)[0] - ref).max()
    assert err_default * 5 < err_none  # measured 0.003-0.02 vs 0.12-0.36 (outputs ~3)
    given = nm_tvm.compile(proto, target="nm/fp32-16x16", calibration=[ids])
    assert given.calibration == "1 given sample(s)"
    with pytest.raises(ValueError, match="calibration='often'"):
        nm_tvm.compile(proto, target="nm/fp32-16x16", calibration="often")


def test_one_hot_inputs_keep_default_ranges_and_auto_draws_their_categories():
    """Synthetic calibration by default is for embedding indices only; "auto" fills a one-hot
    input with values of the categories it is compared with."""
    assert nm_tvm.compile(_one_hot()).calibration == "default ranges"
    assert nm_tvm.compile(_one_hot(), calibration="auto").calibration == \
        "synthetic, 2 samples (ids: 4 one-hot categories)"


def test_float_models_keep_default_ranges_unless_approximated_or_auto(rng):
    def one_op(op):
        return _model([helper.make_node(op, ["x"], ["y"], name="t")],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [])
    # an approximated operator: synthetic calibration, widening the default ranges
    assert nm_tvm.compile(one_op("Tanh")).calibration == "synthetic, 2 samples (x: N(0, 1))"
    assert nm_tvm.compile(one_op("Relu")).calibration == "default ranges"  # exact only
    assert nm_tvm.compile(one_op("Relu"), calibration="auto").calibration == \
        "synthetic, 2 samples (x: N(0, 1))"
