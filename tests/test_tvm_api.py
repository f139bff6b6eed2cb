"""The TVM Python API path: registered pipeline, tags, passes in a user's Sequential."""
import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax
from tvm.script import relax as R
from tvm.target import Target

import nm_tvm
from nm_tvm.passes import Canonicalize
from nm_tvm.target.backend import (LowerToAccelerator, NotGemmOnlyError, PartitionForAccelerator,
                                   VerifyGemmOnly, host_ops)
from nm_tvm.target import simulator
from nm_tvm.target.hardware import load_preset


@tvm.script.ir_module
class TwoLayer:
    @R.function
    def main(x: R.Tensor((8, 32), "float32"), w1: R.Tensor((32, 48), "float32"),
             w2: R.Tensor((48, 16), "float32")) -> R.Tensor((8, 16), "float32"):
        with R.dataflow():
            h = R.nn.relu(R.matmul(x, w1))
            y = R.matmul(h, w2)
            R.output(y)
        return y


def _inputs(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in ((8, 32), (32, 48), (48, 16))]


def test_tvm_compile_with_nm_pipeline_matches_nm_compile(rng):
    x, w1, w2 = _inputs(rng)
    exe = tvm.compile(TwoLayer, target=Target("nm/fp32-16x16"), relax_pipeline="nm")
    simulator.load()
    vm = relax.VirtualMachine(exe, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in (x, w1, w2)]).numpy()
    expected = np.maximum(x @ w1, 0) @ w2
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    compiled = nm_tvm.compile(TwoLayer, target="nm/fp32-16x16")
    same = compiled.run({"x": x, "w1": w1, "w2": w2})[0]
    np.testing.assert_array_equal(out, same)
    assert compiled.stats.macs == 8 * 32 * 48 + 8 * 48 * 16


def test_passes_compose_in_a_user_sequential():
    hw = load_preset("fp32-16x16")
    seq = tvm.transform.Sequential([Canonicalize(), PartitionForAccelerator(),
                                    LowerToAccelerator(hw), VerifyGemmOnly(strict=True)])
    mod = seq(TwoLayer)
    assert host_ops(mod) == []
    assert "nm_accel.run" in mod.script()


def _cumsum_model():
    """CumSum has no accelerator mapping (yet): the strict/host-fallback probe."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("CumSum", ["m", "axis"], ["y"], name="the_cumsum")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.ones(32, np.float32)),
         helper.make_tensor("axis", TensorProto.INT64, [], [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_strict_mode_names_the_unsupported_op():
    with pytest.raises(NotGemmOnlyError, match="cumsum"):
        nm_tvm.compile(_cumsum_model())


def test_non_strict_runs_leftover_on_host_and_lists_it(rng):
    compiled = nm_tvm.compile(_cumsum_model(), strict=False)
    assert any("cumsum" in op for op in compiled.host_ops)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    out = compiled.run({"x": x})[0]
    np.testing.assert_allclose(out, np.cumsum(x @ np.ones((8, 4)), axis=1), rtol=1e-5)
    assert compiled.stats.macs == 2 * 8 * 4

