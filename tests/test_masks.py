"""Boolean masks on the accelerator: comparisons, logic and Where as exact step tables and
VEC ops (passes/masks_as_float.py), Cast between float32 and integer / bool tensors by the
LOAD / STORE DMA. Every result equals ONNX Runtime's exactly, on both presets."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import nm_tvm
from nm_tvm.pwl import PL
from nm_tvm.target import simulator
from nm_tvm.target.isa import ElemType, MachineParams, Mem, Op, ProgramBuilder, Queue, \
    RegionKind, bit
from nm_tvm.validate import onnx_runtime_outputs

PRESETS = ["nm/fp32-16x16", "nm/bf16-32x32"]
F32 = np.float32
ONNX_TYPE = {np.dtype("float32"): T.FLOAT, np.dtype("bool"): T.BOOL, np.dtype("int64"): T.INT64,
             np.dtype("int32"): T.INT32, np.dtype("uint8"): T.UINT8, np.dtype("int8"): T.INT8}


def _model(nodes, inputs: dict, outputs: list, inits=()):
    """A graph over ``inputs`` (name -> example array) returning ``outputs`` (names), their
    types and shapes from ONNX shape inference."""
    graph = helper.make_graph(
        nodes, "masks",
        [helper.make_tensor_value_info(n, ONNX_TYPE[np.dtype(v.dtype)], list(v.shape))
         for n, v in inputs.items()], [], list(inits))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    proto.graph.output.extend(inferred[n] for n in outputs)
    onnx.checker.check_model(proto)
    return proto


def _check_exact(proto, feeds, target):
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    got = compiled.run(feeds)
    ref = onnx_runtime_outputs(proto, feeds)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_array_equal(g, r)
    return compiled


def _awkward_floats(rng, shape):
    """Values that break inexact comparisons: equal pairs, signed zeros, neighbours, inf."""
    x = rng.standard_normal(shape).astype(F32)
    flat = x.reshape(-1)
    flat[:6] = [0.0, -0.0, np.inf, -np.inf, 1.0, np.nextafter(F32(1.0), F32(2.0))]
    return x


# ------------------------------------------------------------------ PL step functions
@pytest.mark.parametrize("op", ["less", "greater", "less_equal", "greater_equal", "equal",
                                "not_equal"])
@pytest.mark.parametrize("k", [0.0, 0.5, -3.0])
def test_step_tables_are_exact_at_and_around_the_threshold(op, k):
    table = PL.identity().compare(op, k).table()
    k32 = F32(k)
    x = np.array([-np.inf, -1e30, np.nextafter(k32, F32(-np.inf)), k32,
                  np.nextafter(k32, F32(np.inf)), 1e30, np.inf, -0.0, 0.0], F32)
    np.testing.assert_array_equal(table(x), getattr(np, op)(x, k32).astype(F32))


def test_select_gives_infinite_constants_exactly():
    mask = PL.identity().compare("greater_equal", 0.0)
    table = mask.select(np.inf, -np.inf).table()
    np.testing.assert_array_equal(table(np.array([-2, 0, 3], F32)), [-np.inf, np.inf, np.inf])
    assert PL.identity().select(1.0, 0.0) is None  # not a mask: no select


# ------------------------------------------------------------------ whole models
@pytest.mark.parametrize("target", PRESETS)
def test_comparisons_logic_and_where_match_onnx_runtime_exactly(target, rng):
    x = _awkward_floats(rng, (2, 3, 4))
    y = x.copy()  # equal pairs, and x's neighbours, but no inf on both sides (see the pass)
    y.reshape(-1)[2:4] = [np.nextafter(F32(1e30), F32(0)), -1e30]
    y.reshape(-1)[:2] = [-0.0, 0.0]  # -0 == 0
    y.reshape(-1)[12:] = rng.standard_normal(y.size - 12).astype(F32)
    nodes = [helper.make_node(op, ["x", "y"], [op.lower()]) for op in
             ("Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal")]
    nodes += [helper.make_node("Not", ["equal"], ["ne"]),
              helper.make_node("And", ["less", "m"], ["a"]),
              helper.make_node("Or", ["a", "greater"], ["o"]),
              helper.make_node("Xor", ["o", "ne"], ["xo"]),
              helper.make_node("Where", ["xo", "x", "y"], ["w"]),
              helper.make_node("Cast", ["lessorequal"], ["le_f"], to=T.FLOAT),
              helper.make_node("CastLike", ["xo", "x"], ["xo_f"]),
              helper.make_node("CastLike", ["x", "x"], ["same"])]  # to its own type
    outputs = ["w", "le_f", "greaterorequal", "o", "xo_f", "same"]
    feeds = {"x": x, "y": y, "m": rng.random((3, 4)) > 0.3}
    compiled = _check_exact(_model(nodes, feeds, outputs), feeds, target)
    assert compiled.stats.macs == 0


@pytest.mark.parametrize("target", PRESETS)
def test_attention_padding_mask_from_token_ids(target, rng):
    """The exported-transformer pattern: ids == pad -> Where(mask, -inf, scores) -> Softmax:
    the mask and the masked scores exactly, the probabilities within the softmax tables'
    bound (the exp table's tail at -inf is below exp(-16), not 0)."""
    ids = np.array([[5, 9, 3, 0, 0, 0], [7, 1, 2, 4, 8, 0]], np.int64)
    scores = rng.standard_normal((2, 6)).astype(F32)
    pad = numpy_helper.from_array(np.array(0, np.int64), "pad")
    ninf = numpy_helper.from_array(np.array(-np.inf, F32), "ninf")
    nodes = [helper.make_node("Equal", ["ids", "pad"], ["is_pad"]),
             helper.make_node("Where", ["is_pad", "ninf", "scores"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1)]
    proto = _model(nodes, {"ids": ids, "scores": scores}, ["p", "masked"],
                   [pad, ninf])
    compiled = nm_tvm.compile(proto, target=target, strict=True)
    p, masked = compiled.run({"ids": ids, "scores": scores})
    p_ref, masked_ref = onnx_runtime_outputs(proto, {"ids": ids, "scores": scores})
    np.testing.assert_array_equal(masked, masked_ref)
    assert np.all(p[ids == 0] < 1e-7)
    np.testing.assert_allclose(p, p_ref, atol=2e-2)


@pytest.mark.parametrize("target", PRESETS)
def test_compare_with_scalar_constants_and_integer_tensors(target, rng):
    a = rng.integers(-5, 5, (3, 5)).astype(np.int64)
    b = rng.integers(-5, 5, (3, 5)).astype(np.int32)
    x = _awkward_floats(rng, (3, 5))
    half = numpy_helper.from_array(np.array(0.5, F32), "half")
    nodes = [helper.make_node("Less", ["x", "half"], ["lt"]),
             helper.make_node("Greater", ["half", "x"], ["gt"]),  # constant first
             helper.make_node("Cast", ["b"], ["b64"], to=T.INT64),
             helper.make_node("Equal", ["a", "b64"], ["eq"]),
             helper.make_node("Where", ["lt", "half", "x"], ["w"])]  # a constant branch
    outputs = ["lt", "gt", "eq", "w"]
    feeds = {"x": x, "a": a, "b": b}
    proto = _model(nodes, feeds, outputs, [half])
    # int32 -> int64 Cast is left on the host (int64 values above 2^24 would round)
    compiled = nm_tvm.compile(proto, target=target, strict=False)
    got, ref = compiled.run(feeds), onnx_runtime_outputs(proto, feeds)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    assert len(compiled.host_ops) == 1 and "'b64'" in compiled.host_ops[0] and \
        "relax.astype" in compiled.host_ops[0]


def test_where_with_a_fitted_branch_keeps_the_mask_exact(rng):
    """Less(Exp(x), 2): exp is a fitted table, the comparison a separate exact step on its
    output (never a fitted step function)."""
    x = rng.uniform(-3, 3, (4, 8)).astype(F32)
    two = numpy_helper.from_array(np.array(2.0, F32), "two")
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Less", ["e", "two"], ["m"]),
             helper.make_node("Cast", ["m"], ["y"], to=T.FLOAT)]
    proto = _model(nodes, {"x": x}, ["y", "e"], [two])
    compiled = nm_tvm.compile(proto, strict=True)
    y, e = compiled.run({"x": x})
    np.testing.assert_array_equal(y, (e < 2).astype(F32))  # exact on the table's output
    assert sum(1 for t in compiled.pwl_tables if t["exact"]) >= 1


# ------------------------------------------------------------------ casts by DMA
@pytest.mark.parametrize("target", PRESETS)
@pytest.mark.parametrize("dst", ["int64", "int32", "bool", "uint8", "int8"])
def test_cast_float_to_integer_truncates_like_onnx(target, dst):
    x = np.array([[0.0, -0.0, 1.7, -1.7, 2.5, -2.5, 100.9, -100.9]], F32)
    if dst == "uint8":
        x = np.abs(x)
    feeds = {"x": x}
    proto = _model([helper.make_node("Cast", ["x"], ["y"], to=ONNX_TYPE[np.dtype(dst)])],
                   feeds, ["y"])
    compiled = _check_exact(proto, feeds, target)
    assert [layer["kind"] for layer in compiled.layers] == ["nm.cast"]


@pytest.mark.parametrize("src", ["bool", "uint8", "int8"])
def test_byte_inputs_are_converted_by_the_load(src, rng):
    x = rng.integers(0, 2, (3, 7)).astype(src) if src == "bool" else \
        rng.integers(-100 if src == "int8" else 0, 100, (3, 7)).astype(src)
    feeds = {"x": x}
    proto = _model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT)], feeds, ["y"])
    _check_exact(proto, feeds, "nm/fp32-16x16")


def _store_program(values: np.ndarray, etype: ElemType):
    m = MachineParams(dim=8, sp_rows=16, acc_rows=16, pwl_entries=8, operand_dtype="float32",
                      dram_bytes=1 << 16, dram_bw=16, dram_latency=4)
    b = ProgramBuilder(m)
    n, elem = values.size, {ElemType.int64: 8, ElemType.int32: 4}.get(etype, 1)
    src = b.region(n * 4)
    dst = b.region(n * elem, RegionKind.ARGUMENT, etype)
    b.emit(Op.LOAD, signal=bit(Queue.STORE), dst_mem=Mem.ACCUMULATOR, dst_row=0, dram_addr=src,
           rows=1, cols=n, row_stride=n * 4, col_stride=4)
    b.emit(Op.STORE, wait=bit(Queue.LOAD), src_mem=Mem.ACCUMULATOR, src_row=0, dram_addr=dst,
           rows=1, cols=n, row_stride=n * elem, col_stride=elem)
    return b.encode()


@pytest.mark.parametrize("value,etype", [(300.0, ElemType.uint8), (-1.0, ElemType.uint8),
                                         (128.0, ElemType.int8), (np.nan, ElemType.int32),
                                         (3e9, ElemType.int32), (np.inf, ElemType.int64)])
def test_store_out_of_range_is_an_error_naming_the_value(value, etype):
    values = np.array([1.0, value], F32)
    out = np.zeros(2, {ElemType.uint8: np.uint8, ElemType.int8: np.int8,
                       ElemType.int32: np.int32, ElemType.int64: np.int64}[etype])
    with pytest.raises(ValueError, match=f"stored to a {etype.name} region .* outside"):
        simulator.run_program(_store_program(values, etype), [values, out])


def test_store_to_bool_counts_one_byte_per_element():
    values = np.array([0.0, -0.0, 2.0, np.nan, -1e-30, 0.0, 1.0], F32)
    out = np.zeros(values.size, bool)
    simulator.take_stats()
    _, out = simulator.run_program(_store_program(values, ElemType.bool), [values, out])
    (stats,) = simulator.take_stats()
    np.testing.assert_array_equal(out, [False, False, True, True, True, False, True])
    assert stats["dram_write_bytes"] == values.size


@pytest.mark.parametrize("strict", [True, False])
def test_integer_arithmetic_tvm_cannot_lower_is_named(strict):
    """Integer Pow has no accelerator form and TVM's host lowering rejects it: the error names
    the op, dtype and node (host fallback would not help), not TVM's internal check."""
    from nm_tvm.runtime import IntegerArithmeticError

    x = np.arange(4, dtype=np.int64)
    proto = _model([helper.make_node("Pow", ["x", "x"], ["y"], name="int_pow")], {"x": x}, ["y"])
    with pytest.raises(IntegerArithmeticError, match=r"relax.power on int64 \(node 'int_pow'\)"):
        nm_tvm.compile(proto, strict=strict)
