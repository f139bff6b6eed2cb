"""Unit tests against mutation survivors of passes/ (benchmarks/mutation.py,
`make mutation MUTATE=passes/`).

Each pass runs on a small Relax function built here; the rewritten function is built for the
host (llvm, nm.pwl_map by its numpy kernel) and compared with a numpy reference of the
original operator, and the ops it leaves are checked. Expected values are numpy references
or closed forms, never values copied from the code under test."""
from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

import nm_tvm  # noqa: F401  (registers the host nm.pwl_map kernel)
from nm_tvm.passes import scalar_function as sf
from nm_tvm.passes.canonicalize import DivideByConstantAsMultiply, SelectPReluAsRelu
from nm_tvm.passes.decompose_rms_norm import DecomposeRMSNorm
from nm_tvm.passes.fold_scale_shift import FoldScaleShift, _channel_vector
from nm_tvm.passes.linearize import Linearize, LinearizeConfig, LinearizeError
from nm_tvm.passes.padded_avg_pool import PaddedAvgPoolAsConv, _valid_counts
from nm_tvm.passes.pairwise_variadic import PairwiseVariadicOps
from nm_tvm.passes.simplify_batch_norm import SimplifyBatchNorm
from nm_tvm.pwl import PL
from nm_tvm.record import CompileRecord

F32 = np.float32


def module(body, *shapes):
    """main(x0, x1, ...) = body(bb, *params) in one dataflow block."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def run(mod, *inputs):
    vm = relax.VirtualMachine(relax.build(mod, target="llvm"), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.asarray(a, F32)) for a in inputs])
    return out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out]


def ops(mod) -> list[str]:
    names = []
    relax.analysis.post_order_visit(mod["main"], lambda e: names.append(e.op.name) if isinstance(
        e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return names


def const(v):
    return relax.const(np.asarray(v, F32))


# ------------------------------------------------------------------------------ padded avg pool
def test_valid_counts_closed_form():
    # size 5, pad 1, kernel 3, stride 2 -> windows [-1, 1], [1, 3], [3, 5]: 2, 3, 2 real taps
    assert _valid_counts(5, 1, 3, 2, 1, 3).tolist() == [2, 3, 2]
    # dilation 2, kernel 2, no pad, stride 1 over 4 -> taps (0, 2), (1, 3), (2, 4), (3, 5)
    assert _valid_counts(4, 0, 2, 1, 2, 4).tolist() == [2, 2, 1, 1]


def avg_pool_ref(x, k, s, pad, dil, include_pad):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    ones = np.pad(np.ones_like(x, np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    oh = (xp.shape[2] - dil[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (xp.shape[3] - dil[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for y in range(oh):
        for xx in range(ow):
            win = (slice(None), slice(None),
                   slice(y * s[0], y * s[0] + dil[0] * (k[0] - 1) + 1, dil[0]),
                   slice(xx * s[1], xx * s[1] + dil[1] * (k[1] - 1) + 1, dil[1]))
            total = xp[win].sum(axis=(2, 3))
            out[:, :, y, xx] = total / (k[0] * k[1] if include_pad else ones[win].sum(axis=(2, 3)))
    return out


@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("k,s,pad,dil", [((3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
                                          ((3, 2), (2, 1), (2, 0, 1, 1), (1, 2))])
def test_padded_avg_pool_as_conv(include_pad, k, s, pad, dil):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(F32)
    mod = module(lambda bb, a: relax.op.nn.avg_pool2d(a, k, s, pad, dil,
                                                      count_include_pad=include_pad), x.shape)
    out = PaddedAvgPoolAsConv()(mod)
    assert "relax.nn.avg_pool2d" not in ops(out) and "relax.nn.conv2d" in ops(out)
    assert ("relax.multiply" in ops(out)) == (not include_pad)
    np.testing.assert_allclose(run(out, x), avg_pool_ref(x, k, s, pad, dil, include_pad),
                               rtol=1e-5, atol=1e-6)


def test_avg_pool_left_alone_without_padding_or_in_nhwc():
    for kw in ({"padding": (0, 0, 0, 0)}, {"padding": (1, 1, 1, 1), "layout": "NHWC"},
               {"padding": (1, 1, 1, 1), "ceil_mode": True}):
        mod = module(lambda bb, a: relax.op.nn.avg_pool2d(a, (2, 2), (1, 1), **kw), (1, 4, 5, 5))
        assert "relax.nn.conv2d" not in ops(PaddedAvgPoolAsConv()(mod))


# ------------------------------------------------------------------------------ batch norm
@pytest.mark.parametrize("shape,axis", [((2, 3, 4, 5), 1), ((4, 3), -1)])
def test_simplify_batch_norm_against_numpy(shape, axis):
    rng = np.random.default_rng(1)
    c = shape[axis]
    g, b, m = (rng.standard_normal(c).astype(F32) for _ in range(3))
    v = rng.uniform(0.5, 2, c).astype(F32)
    x = rng.standard_normal(shape).astype(F32)
    mod = module(lambda bb, a: bb.emit(relax.op.nn.batch_norm(
        a, const(g), const(b), const(m), const(v), axis=axis, epsilon=0.01, training=False))[0], shape)
    out = SimplifyBatchNorm()(mod)
    assert "relax.nn.batch_norm" not in ops(out)
    bshape = [1] * len(shape)
    bshape[axis % len(shape)] = c
    r = lambda t: t.reshape(bshape).astype(np.float64)
    ref = (x - r(m)) / np.sqrt(r(v) + 0.01) * r(g) + r(b)
    np.testing.assert_allclose(run(out, x), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ variadic ops
@pytest.mark.parametrize("op,ref", [("max", np.maximum), ("min", np.minimum), ("sum", np.add),
                                     ("mean", None)])
def test_pairwise_variadic(op, ref):
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal(s).astype(F32) for s in ((2, 3), (3,), (2, 3)))

    def body(bb, x, y, z):
        yb = bb.emit(relax.op.broadcast_to(y, (2, 3)))
        st = bb.emit(relax.op.stack([x, yb, z], axis=0))
        return getattr(relax.op, op)(st, axis=[0])

    out = PairwiseVariadicOps()(module(body, a.shape, b.shape, c.shape))
    assert "relax.stack" not in ops(out)
    expect = (a + b + c) / 3 if ref is None else ref(ref(a, b), c)
    np.testing.assert_allclose(run(out, a, b, c), expect, rtol=1e-6)


def test_pairwise_variadic_single_input_and_other_reductions():
    a = np.arange(6, dtype=F32).reshape(2, 3)
    out = PairwiseVariadicOps()(module(lambda bb, x: relax.op.mean(
        bb.emit(relax.op.stack([x], axis=0)), axis=[0]), a.shape))
    assert "relax.stack" not in ops(out)
    np.testing.assert_array_equal(run(out, a), a)
    for kw in ({"axis": [0], "keepdims": True}, {"axis": None}):
        out = PairwiseVariadicOps()(module(lambda bb, x, y: relax.op.max(
            bb.emit(relax.op.stack([x, y], axis=0)), **kw), a.shape, a.shape))
        assert "relax.stack" in ops(out)
    out = PairwiseVariadicOps()(module(lambda bb, x, y: relax.op.max(
        bb.emit(relax.op.stack([x, y], axis=1)), axis=[0]), a.shape, a.shape))
    assert "relax.stack" in ops(out)


# ------------------------------------------------------------------------------ RMS norm
def test_decompose_rms_norm_against_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8)).astype(F32)
    g = rng.standard_normal(8).astype(F32)
    out = DecomposeRMSNorm()(module(lambda bb, a: relax.op.nn.rms_norm(a, const(g), axes=[-1],
                                                                        epsilon=0.25), x.shape))
    assert "relax.nn.rms_norm" not in ops(out) and "relax.rsqrt" in ops(out)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 0.25) * g
    np.testing.assert_allclose(run(out, x), ref, rtol=1e-5)


# ------------------------------------------------------------------------------ canonicalize
def test_divide_by_constant_as_multiply():
    x = np.random.default_rng(4).standard_normal((2, 3)).astype(F32)
    c = np.array([2.0, -4.0, 0.5], F32)
    out = DivideByConstantAsMultiply()(module(lambda bb, a: relax.op.divide(a, const(c)), x.shape))
    assert ops(out) == ["relax.multiply"]
    np.testing.assert_allclose(run(out, x), x / c, rtol=1e-7)
    for bad in (np.full(3, 4.0, F32), np.array([1.0, 0.0, 2.0], F32),
                np.array([1.0, np.inf, 2.0], F32)):
        out = DivideByConstantAsMultiply()(module(lambda bb, a: relax.op.divide(a, const(bad)),
                                                  x.shape))
        assert ops(out) == ["relax.divide"]


def test_select_prelu_as_relu():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)).astype(F32)
    s = rng.uniform(0.1, 0.9, (3, 4)).astype(F32)

    def body(bb, a, zero=0.0):
        neg = bb.emit(relax.op.less(a, const(zero)))
        return relax.op.where(neg, bb.emit(relax.op.multiply(a, const(s))), a)

    out = SelectPReluAsRelu()(module(body, x.shape))
    assert "relax.where" not in ops(out) and "relax.nn.relu" in ops(out)
    np.testing.assert_allclose(run(out, x), np.where(x < 0, x * s, x), rtol=1e-6, atol=1e-7)
    out = SelectPReluAsRelu()(module(lambda bb, a: body(bb, a, zero=1.0), x.shape))
    assert "relax.where" in ops(out)


# ------------------------------------------------------------------------------ fold scale/shift
def test_channel_vector():
    assert _channel_vector(np.arange(3.0).reshape(1, 3, 1, 1), 4, 1, 3).tolist() == [0, 1, 2]
    assert _channel_vector(np.array(2.0), 4, 1, 3).tolist() == [2, 2, 2]
    assert _channel_vector(np.arange(3.0), 2, -1, 3).dtype == F32
    assert _channel_vector(np.ones((1, 3, 2, 1)), 4, 1, 3) is None      # varies along H
    assert _channel_vector(np.ones((2, 1, 1, 1, 1)), 4, 1, 3) is None   # rank too high
    assert _channel_vector(np.ones(2), 2, -1, 3) is None                # wrong length


def test_fold_scale_shift_conv_chain():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 5, 5)).astype(F32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(F32)
    b, s, t, d, e = (rng.uniform(0.5, 2, (1, 3, 1, 1)).astype(F32) for _ in range(5))

    def body(bb, a):
        y = bb.emit(relax.op.nn.conv2d(a, const(w)))
        y = bb.emit(relax.op.add(y, const(b)))
        y = bb.emit(relax.op.multiply(y, const(s)))
        y = bb.emit(relax.op.subtract(y, const(t)))
        y = bb.emit(relax.op.divide(y, const(d)))
        return relax.op.add(y, const(e))

    mod = module(body, x.shape)
    out = FoldScaleShift()(mod)
    assert sorted(ops(out)) == ["relax.add", "relax.nn.conv2d"]
    np.testing.assert_allclose(run(out, x), run(mod, x), rtol=1e-5, atol=1e-5)


def test_fold_scale_shift_matmul_and_refusals():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 5)).astype(F32)
    w = rng.standard_normal((5, 3)).astype(F32)
    s = rng.uniform(0.5, 2, 3).astype(F32)
    mod = module(lambda bb, a: relax.op.multiply(bb.emit(relax.op.matmul(a, const(w))),
                                                 const(s)), x.shape)
    out = FoldScaleShift()(mod)
    assert ops(out) == ["relax.matmul"]
    np.testing.assert_allclose(run(out, x), (x @ w) * s, rtol=1e-5)
    # not per channel, or the GEMM result used twice: left alone
    full = rng.standard_normal((4, 3)).astype(F32)
    mod = module(lambda bb, a: relax.op.multiply(bb.emit(relax.op.matmul(a, const(w))),
                                                 const(full)), x.shape)
    assert ops(FoldScaleShift()(mod)) == ["relax.matmul", "relax.multiply"]

    def shared(bb, a):
        y = bb.emit(relax.op.matmul(a, const(w)))
        return relax.op.add(bb.emit(relax.op.multiply(y, const(s))), y)

    mod = module(shared, x.shape)
    out = FoldScaleShift()(mod)
    assert sorted(ops(out)) == ["relax.add", "relax.matmul", "relax.multiply"]
    np.testing.assert_allclose(run(out, x), (x @ w) * s + x @ w, rtol=1e-5)


# ------------------------------------------------------------------------------ scalar functions
def at(pl, grid):
    """A PL function's values on ``grid`` (through its exact table, in fp32)."""
    return pl.table()(np.asarray(grid, F32))


def test_scalar_constant_and_kinds():
    assert sf.scalar_constant(const([2.5, 2.5])) == 2.5
    assert sf.scalar_constant(const([1.0, 2.0])) is None
    assert sf.scalar_constant(relax.const(np.array([3, 3], np.int32))) is None
    assert sf.scalar_constant(relax.const(np.zeros(0, F32))) is None
    assert sf.scalar_constant(relax.Var("v", relax.TensorType((1,), "float32"))) is None


@pytest.mark.parametrize("name,fn", [
    ("nn.relu", lambda v: np.maximum(v, 0)), ("abs", np.abs), ("negative", np.negative),
])
def test_evaluate_pl_matches_pointwise(name, fn):
    grid = np.linspace(-3, 3, 61)
    x = relax.Var("x", relax.TensorType((4,), "float32"))
    call = eval(f"relax.op.{name}")(x)
    pl = sf.evaluate_pl(call, [PL.identity()])
    np.testing.assert_allclose(at(pl, grid), fn(grid))
    np.testing.assert_allclose(sf.evaluate(call, [grid]), fn(grid))


@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_evaluate_leaky_relu_and_clip(alpha):
    grid = np.linspace(-3, 3, 61)
    x = relax.Var("x", relax.TensorType((4,), "float32"))
    call = relax.op.nn.leakyrelu(x, alpha)
    ref = np.where(grid >= 0, grid, alpha * grid)
    np.testing.assert_allclose(at(sf.evaluate_pl(call, [PL.identity()]), grid), ref, rtol=1e-6)
    np.testing.assert_allclose(sf.evaluate(call, [grid]), ref)
    clip = relax.op.clip(x, -1.5, 2.0)
    np.testing.assert_allclose(at(sf.evaluate_pl(clip, [PL.identity()]), grid), np.clip(grid, -1.5, 2))
    np.testing.assert_allclose(sf.evaluate(clip, [grid]), np.clip(grid, -1.5, 2))


@pytest.mark.parametrize("op,ref", [
    ("add", lambda a, b: a + b), ("subtract", lambda a, b: a - b),
    ("maximum", np.maximum), ("minimum", np.minimum),
])
def test_evaluate_pl_binary(op, ref):
    grid = np.linspace(-3, 3, 61)
    x = relax.Var("x", relax.TensorType((4,), "float32"))
    call = getattr(relax.op, op)(x, x)
    ident = PL.identity()
    for a, b, ra, rb in ((ident, 0.5, grid, 0.5), (-1.0, ident, -1.0, grid),
                         (ident, ident.scale(2.0), grid, 2 * grid)):
        np.testing.assert_allclose(at(sf.evaluate_pl(call, [a, b]), grid), ref(ra, rb), rtol=1e-6)
    mul = relax.op.multiply(x, x)
    np.testing.assert_allclose(at(sf.evaluate_pl(mul, [ident, 3.0]), grid), 3 * grid, rtol=1e-6)
    np.testing.assert_allclose(at(sf.evaluate_pl(mul, [3.0, ident]), grid), 3 * grid, rtol=1e-6)
    assert sf.evaluate_pl(mul, [ident, ident]) is None
    div = relax.op.divide(x, x)
    np.testing.assert_allclose(at(sf.evaluate_pl(div, [ident, 4.0]), grid), grid / 4, rtol=1e-6)
    assert sf.evaluate_pl(div, [4.0, ident]) is None
    assert sf.evaluate_pl(relax.op.exp(x), [ident]) is None


def test_unary_table_closed_forms():
    import math
    g = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    np.testing.assert_allclose(sf.UNARY["relax.erf"](g), [math.erf(v) for v in g], rtol=1e-12)
    erf = np.array([math.erf(v / math.sqrt(2)) for v in g])
    np.testing.assert_allclose(sf.UNARY["relax.sigmoid"](g), 1 / (1 + np.exp(-g)), rtol=1e-12)
    np.testing.assert_allclose(sf.UNARY["relax.nn.gelu"](g), 0.5 * g * (1 + erf), rtol=1e-12)
    c = np.sqrt(2 / np.pi)
    np.testing.assert_allclose(sf.UNARY["relax.nn.gelu_tanh"](g),
                               0.5 * g * (1 + np.tanh(c * (g + 0.044715 * g ** 3))), rtol=1e-12)
    np.testing.assert_allclose(sf.UNARY["relax.nn.silu"](g), g / (1 + np.exp(-g)), rtol=1e-12)
    np.testing.assert_allclose(sf.UNARY["relax.nn.softplus"](g), np.log1p(np.exp(g)), rtol=1e-12)
    np.testing.assert_allclose(sf.UNARY["relax.rsqrt"](np.array([4.0, 0.25])), [0.5, 2.0])


# ------------------------------------------------------------------------------ linearize
def linearized(body, *shapes, config=None):
    record = CompileRecord()
    mod = module(body, *shapes)
    return mod, Linearize(config or LinearizeConfig(), record=record)(mod), record


def test_linearize_softmax_and_log_softmax_on_any_axis():
    x = np.random.default_rng(8).standard_normal((3, 5, 4)).astype(F32) * 3
    for log, axis in ((False, -1), (True, -1), (False, 1)):
        op = relax.op.nn.log_softmax if log else relax.op.nn.softmax
        _, out, rec = linearized(lambda bb, a: op(a, axis=axis), x.shape)
        assert not {"relax.nn.softmax", "relax.nn.log_softmax", "relax.exp"} & set(ops(out))
        z = x - x.max(axis=axis, keepdims=True)
        ref = z - np.log(np.exp(z).sum(axis, keepdims=True)) if log else \
            np.exp(z) / np.exp(z).sum(axis, keepdims=True)
        np.testing.assert_allclose(run(out, x), ref, atol=2e-3)
        keys = [t["key"] for t in rec.tables]
        assert keys == ["exp", "log" if log else "reciprocal"]
        assert rec.tables[0]["lo"] == -16.0 and rec.tables[0]["hi"] == 0.0
        assert rec.tables[1]["lo"] == 1.0 and rec.tables[1]["hi"] == x.shape[axis]
        assert [t["id"] for t in rec.tables] == [keys[0] + "#0", keys[1] + "#1"]


def test_linearize_layer_norm():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 16)).astype(F32)
    g, b = rng.standard_normal(16).astype(F32), rng.standard_normal(16).astype(F32)
    _, out, rec = linearized(lambda bb, a: relax.op.nn.layer_norm(a, const(g), const(b), [-1],
                                                                  epsilon=1e-5), x.shape)
    assert "relax.nn.layer_norm" not in ops(out)
    mu = x.mean(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(run(out, x), ref, atol=5e-3)
    from nm_tvm.pwl import OUTER_SEGMENTS
    assert [t["key"] for t in rec.tables] == ["rsqrt"]
    assert rec.tables[0]["segments"] == 128 + OUTER_SEGMENTS  # rsqrt's default + asymptotes
    assert (rec.tables[0]["lo"], rec.tables[0]["hi"]) == (2.0 ** -6, 64.0)


def test_linearize_divide_power_prelu_reductions():
    rng = np.random.default_rng(10)
    x = rng.uniform(0.5, 4, (2, 3, 4)).astype(F32)
    y = rng.standard_normal((2, 3, 4)).astype(F32)
    _, out, rec = linearized(lambda bb, a, b: relax.op.divide(b, a), x.shape, y.shape)
    assert "relax.divide" not in ops(out) and rec.tables[0]["key"] == "reciprocal"
    # the table's absolute error on 1/x, times |y|
    err = rec.tables[0]["max_err"]
    assert 0 < err < 0.1
    assert np.all(np.abs(run(out, x, y) - y / x) <= np.abs(y) * err * 1.01 + 1e-6)
    for p in (2.0, 3.0, 4.0):
        _, out, rec = linearized(lambda bb, a: relax.op.power(a, const(p)), y.shape)
        assert "relax.power" not in ops(out) and rec.tables == []
        np.testing.assert_allclose(run(out, y), y.astype(np.float64) ** p, rtol=1e-5)
    alpha = np.array([0.1, 0.2, 0.3], F32)
    _, out, _ = linearized(lambda bb, a: relax.op.nn.prelu(a, const(alpha), axis=1), y.shape)
    assert "relax.nn.prelu" not in ops(out)
    np.testing.assert_allclose(run(out, y), np.where(y >= 0, y, alpha[:, None] * y), rtol=1e-6)
    for name, ref in (("max", np.max), ("mean", np.mean), ("sum", np.sum)):
        _, out, _ = linearized(lambda bb, a: getattr(relax.op, name)(a, axis=[0], keepdims=True),
                               y.shape)
        assert "relax.permute_dims" in ops(out)
        np.testing.assert_allclose(run(out, y), ref(y, axis=0, keepdims=True), rtol=1e-5)
        _, out, _ = linearized(lambda bb, a: getattr(relax.op, name)(a, axis=[-1]), y.shape)
        assert "relax.permute_dims" not in ops(out)


def test_linearize_fuses_a_scalar_chain_into_one_table():
    x = np.linspace(-4, 4, 64, dtype=F32).reshape(4, 16)

    def body(bb, a):
        e = bb.emit(relax.op.exp(bb.emit(relax.op.multiply(a, const(0.5)))))
        return relax.op.add(bb.emit(relax.op.tanh(e)), const(1.0))

    _, out, rec = linearized(body, x.shape)
    assert ops(out).count("relax.call_dps_packed") == 1
    assert not {"relax.exp", "relax.tanh"} & set(ops(out))
    assert [t["key"] for t in rec.tables] == ["exp+tanh"]
    np.testing.assert_allclose(run(out, x), np.tanh(np.exp(x / 2)) + 1, atol=1e-2)
    # a piecewise-linear chain gets an exact table
    _, out, rec = linearized(lambda bb, a: relax.op.clip(bb.emit(relax.op.multiply(
        a, const(2.0))), -1.0, 3.0), x.shape)
    assert rec.tables[0]["exact"] and rec.tables[0]["key"] == "pl"
    np.testing.assert_allclose(run(out, x), np.clip(2 * x, -1, 3), rtol=1e-6)


def test_linearize_config_and_errors():
    cfg = LinearizeConfig()
    assert cfg.segments_for("gelu") == 64 and cfg.segments_for("rsqrt") == 128
    from nm_tvm.pwl import OUTER_SEGMENTS
    cfg = LinearizeConfig(max_table_entries=40)
    assert cfg.segments_for("rsqrt") == 40 - OUTER_SEGMENTS
    x_shape = (2, 8)
    cfg = LinearizeConfig(ranges={"reciprocal": (-1.0, 1.0)})
    with pytest.raises(LinearizeError, match=r"cannot linearize reciprocal#0"):
        linearized(lambda bb, a, b: relax.op.divide(b, a), x_shape, x_shape, config=cfg)
    _, out, rec = linearized(lambda bb, a: relax.op.nn.softmax(a), x_shape,
                             config=LinearizeConfig(disabled={"softmax"}))
    assert "relax.nn.softmax" in ops(out) and rec.tables == []


def test_batch_norm_in_training_mode_left_alone():
    c = const(np.ones(3))
    mod = module(lambda bb, a: bb.emit(relax.op.nn.batch_norm(a, c, c, c, c, axis=1,
                                                              training=True))[0], (2, 3, 4))
    assert "relax.nn.batch_norm" in ops(SimplifyBatchNorm()(mod))


def test_linearize_probe_exposes_table_inputs():
    from nm_tvm.host_kernels import exact_functions
    x = np.random.default_rng(11).standard_normal((3, 6)).astype(F32)
    record = CompileRecord()
    out = Linearize(probe=True, record=record)(module(lambda bb, a: relax.op.nn.softmax(a),
                                                      x.shape))
    assert list(record.probes.ids) == ["exp#0", "reciprocal#1"] and record.probes.n_outputs == 1
    assert sorted(record.exact_functions) == ["exp#0", "reciprocal#1"]
    with exact_functions(record.exact_functions):
        y, shifted, total = run(out, x)
    z = x - x.max(-1, keepdims=True)
    np.testing.assert_allclose(shifted, z, rtol=1e-6)
    np.testing.assert_allclose(total, np.exp(z).sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(y, np.exp(z) / np.exp(z).sum(-1, keepdims=True), rtol=1e-5)


def test_expose_probes_by_identity_and_by_unique_name():
    from nm_tvm.passes.calibration_probes import _leaves, expose_probes
    x = np.linspace(-1, 1, 6, dtype=F32).reshape(2, 3)

    ty = relax.TensorType((2, 3), "float32")
    a = relax.Var("x0", ty)
    e, d1, d2 = relax.DataflowVar("e", ty), relax.DataflowVar("dup", ty), relax.DataflowVar("dup", ty)
    gv = relax.Var("gv", ty)
    block = relax.DataflowBlock([relax.VarBinding(e, relax.op.exp(a)),
                                 relax.VarBinding(d1, relax.op.negative(e)),
                                 relax.VarBinding(d2, relax.op.negative(d1)),
                                 relax.VarBinding(gv, relax.op.add(d2, e))])
    mod = relax.transform.Normalize()(tvm.IRModule(
        {"main": relax.Function([a], relax.SeqExpr([block], gv), ty)}))
    main = mod["main"]
    assert [b.var.name for b in main.body.blocks[0].bindings].count("dup") == 2
    probes = [("p#0", main.params[0]), ("p#1", relax.Var("e", ty)), ("p#2", relax.Var("dup", ty)),
              ("p#3", relax.Var("nowhere", ty))]
    out, rec = expose_probes(mod, probes)
    assert list(rec.ids) == ["p#0", "p#1"] and rec.n_outputs == 1
    y, px, pe = run(out, x)
    np.testing.assert_allclose(y, 2 * np.exp(x), rtol=1e-6)
    np.testing.assert_array_equal(px, x)
    np.testing.assert_allclose(pe, np.exp(x), rtol=1e-6)
    t = relax.TensorType((1,), "float32")
    assert _leaves(t) == 1
    assert _leaves(relax.TupleType([t, relax.TupleType([t, t, t]), relax.TupleType([])])) == 4


def test_expose_probes_counts_tuple_outputs():
    from nm_tvm.passes.calibration_probes import expose_probes
    x = np.arange(6, dtype=F32).reshape(2, 3)

    bb = relax.BlockBuilder()
    a = relax.Var("x0", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [a]):
        with bb.dataflow():
            e = bb.emit(relax.op.exp(a), name_hint="e")
            n = bb.emit(relax.op.negative(a), name_hint="n")
            out = bb.emit_output(relax.Tuple([e, n]))
        bb.emit_func_output(out)
    mod = relax.transform.Normalize()(bb.get())
    out, rec = expose_probes(mod, [("q#0", relax.Var("n", relax.TensorType(x.shape, "float32")))])
    assert list(rec.ids) == ["q#0"] and rec.n_outputs == 2
    vm = relax.VirtualMachine(relax.build(out, target="llvm"), tvm.cpu())
    flat = []
    walk = lambda v: flat.append(v.numpy()) if hasattr(v, "numpy") else [walk(f) for f in v]
    walk(vm["main"](tvm.runtime.tensor(x)))
    assert len(flat) == 3  # the model's two outputs, then the probe
    np.testing.assert_allclose(flat[0], np.exp(x), rtol=1e-6)
    np.testing.assert_array_equal(flat[1], -x)
    np.testing.assert_array_equal(flat[2], -x)


def test_table_registry_uses_ranges_samples_and_floor():
    from nm_tvm.passes.pwl_tables import PLOT_POINTS, TableRegistry
    from nm_tvm.pwl import fit
    samples = np.random.default_rng(13).uniform(-3.0, -2.5, 500)
    cfg = LinearizeConfig(segments=16, ranges={"exp#0": (-4.0, 0.0), "exp": (-9.0, 1.0)},
                          samples={"exp#0": samples})
    reg = TableRegistry(cfg)
    t0 = reg.fitted("exp", np.exp, (-8.0, 8.0))
    np.testing.assert_array_equal(t0.to_array(), fit(np.exp, -4.0, 0.0, 16, samples=samples,
                                                     name="exp").to_array())
    assert not np.array_equal(t0.to_array(), fit(np.exp, -4.0, 0.0, 16, name="exp").to_array())
    t1 = reg.fitted("exp", np.exp, (-8.0, 8.0), floor=-2.0)  # key range, cut at the floor
    np.testing.assert_array_equal(t1.to_array(), fit(np.exp, -2.0, 1.0, 16).to_array())
    rec = reg.records
    assert [r["id"] for r in rec] == ["exp#0", "exp#1"]
    assert (rec[1]["lo"], rec[1]["hi"]) == (-2.0, 1.0)
    grid, values = rec[1]["grid"]
    assert len(grid) == PLOT_POINTS and grid[0] == -2.0 and grid[-1] == 1.0
    np.testing.assert_allclose(values, np.exp(grid))
    assert rec[0]["limit"] >= rec[0]["max_err"] > 0
    assert sorted(reg.functions) == ["exp#0", "exp#1"]
    with pytest.raises(ValueError, match="exact table for pl needs 3 segments; the target's "
                                         "PWL memory holds 2 per table"):
        TableRegistry(LinearizeConfig(max_table_entries=2)).exact(
            "pl", PL.identity().maximum(PL.constant(0.0)).scale(-1).maximum(
                PL.constant(-1.0)).scale(-1))


def test_function_keys_and_default_ranges():
    from nm_tvm.passes.linearize import _function_key
    x = relax.Var("x", relax.TensorType((2,), "float32"))
    c = const(2.0)
    key = lambda *calls: _function_key(list(calls))  # noqa: E731
    assert key(relax.op.exp(x), relax.op.multiply(c, x), relax.op.exp(x)) == "exp"
    assert key(relax.op.tanh(x), relax.op.exp(x), relax.op.subtract(c, x)) == "tanh+exp"
    assert key(relax.op.divide(c, x)) == "reciprocal"
    assert key(relax.op.divide(x, c)) == "pl"
    assert key(relax.op.nn.relu(x), relax.op.abs(x), relax.op.power(x, const(0.5))) == "power"
    assert key(relax.op.log(x), relax.op.divide(c, x)) == "log+reciprocal"
    for body, rng in ((lambda bb, a: relax.op.add(bb.emit(relax.op.log(a)), const(1.0)),
                       (2.0 ** -10, 64.0)),
                      (lambda bb, a: relax.op.add(bb.emit(relax.op.exp(a)), const(1.0)),
                       (-8.0, 8.0))):
        _, _, rec = linearized(body, (2, 4))
        assert (rec.tables[0]["lo"], rec.tables[0]["hi"]) == rng


def test_fused_table_keeps_the_binding_name():
    def body(bb, a, b):
        act = bb.emit(relax.op.tanh(bb.emit(relax.op.exp(a))), name_hint="act")
        return relax.op.multiply(act, b)

    _, out, _ = linearized(body, (2, 4), (2, 4))
    names = [bd.var.name for blk in out["main"].body.blocks for bd in blk.bindings
             if isinstance(bd.value, relax.Call) and bd.value.op.name == "relax.call_dps_packed"]
    assert names == ["act"]


def test_fold_divide_without_bias_leaves_no_bias_add():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 5)).astype(F32)
    w = rng.standard_normal((5, 3)).astype(F32)
    s = rng.uniform(0.5, 2, 3).astype(F32)
    out = FoldScaleShift()(module(lambda bb, a: relax.op.divide(
        bb.emit(relax.op.matmul(a, const(w))), const(s)), x.shape))
    assert ops(out) == ["relax.matmul"]
    np.testing.assert_allclose(run(out, x), (x @ w) / s, rtol=1e-5)


def test_elementwise_kind_documented_values():
    x = relax.Var("x", relax.TensorType((2,), "float32"))
    assert sf.elementwise_kind(relax.op.exp(x)) == "unary"
    assert sf.elementwise_kind(relax.op.clip(x, 0.0, 1.0)) == "unary"
    assert sf.elementwise_kind(relax.op.nn.leakyrelu(x, 0.2)) == "unary"
    assert sf.elementwise_kind(relax.op.add(x, x)) == "binary"
    assert sf.elementwise_kind(relax.op.nn.softmax(x)) is None
    assert sf.elementwise_kind(x) is None
