"""Whole models through the flow, checked against ONNX Runtime."""
import numpy as np
import pytest

import nm_tvm
from nm_tvm import frontend
from nm_tvm.models import analytic_macs, mlp, small_cnn
from nm_tvm.target.hardware import load_preset
from nm_tvm.error_bound import rounding_error_bound
from nm_tvm.validate import onnx_runtime_outputs

PRESETS = ["nm/fp32-16x16", "nm/bf16-32x32"]
MODELS = {"mlp": mlp, "cnn": small_cnn}


def _run(model, target, seed=0):
    imported = frontend.import_model(model)
    inputs = frontend.random_inputs(imported, seed)
    compiled = nm_tvm.compile(model, target=target)
    sim = compiled.run(inputs)
    ref = onnx_runtime_outputs(model, inputs)
    return compiled, inputs, sim, ref


@pytest.mark.parametrize("name", MODELS)
def test_fp32_preset_matches_onnxruntime(name):
    model = MODELS[name]()
    compiled, _, sim, ref = _run(model, "nm/fp32-16x16")
    assert compiled.host_ops == []
    for s, r in zip(sim, ref):
        assert s.shape == r.shape
        rel = np.abs(s - r).max() / np.abs(r).max()
        assert rel <= 1e-5, rel
    # Every MAC of the model ran on the accelerator, and no more.
    assert compiled.stats.macs == analytic_macs(model)
    assert compiled.stats.cycles > 0


@pytest.mark.parametrize("name", MODELS)
def test_bf16_preset_within_derived_rounding_bound(name):
    model = MODELS[name]()
    compiled, inputs, sim, ref = _run(model, "nm/bf16-32x32")
    bounds = rounding_error_bound(model, inputs, compiled.hw.operand_dtype)
    for s, r, b in zip(sim, ref, bounds):
        err = np.abs(s - r)
        assert np.all(err <= b), float((err / b).max())
        # bf16 really changed the result, and the bound is informative: a few percent of the
        # output's magnitude, within two orders of magnitude of the observed error.
        assert err.max() > 0
        assert b.max() < 0.1 * np.abs(r).max()
        assert err.max() > 0.01 * b.max()
    assert compiled.stats.macs == analytic_macs(model)


def test_bf16_operands_really_rounded():
    """The same model on an fp32 and a bf16 target differs by about bf16's precision."""
    model = mlp()
    _, _, fp32, ref = _run(model, "nm/fp32-16x16")
    _, _, bf16, _ = _run(model, "nm/bf16-32x32")
    rel_fp32 = np.abs(fp32[0] - ref[0]).max() / np.abs(ref[0]).max()
    rel_bf16 = np.abs(bf16[0] - ref[0]).max() / np.abs(ref[0]).max()
    assert rel_fp32 < 1e-5 < 1e-3 < rel_bf16 < 5e-2


def test_tiny_scratchpad_forces_tiling_and_stays_exact():
    hw = load_preset("fp32-16x16").with_overrides(**{"memories.scratchpad_kib": 4,
                                                     "memories.accumulator_kib": 3})
    assert hw.sp_rows == 64 and hw.acc_rows == 48
    model = small_cnn()
    compiled, _, sim, ref = _run(model, hw)
    big, _, sim_big, _ = _run(model, "nm/fp32-16x16")
    rel = np.abs(sim[0] - ref[0]).max() / np.abs(ref[0]).max()
    assert rel <= 1e-5
    assert compiled.stats.macs == analytic_macs(model)
    # Smaller memories: more, smaller tiles -> more instructions and more DRAM traffic.
    assert compiled.stats.totals["n_gemm"] > big.stats.totals["n_gemm"]
    assert compiled.stats.totals["dram_read_bytes"] > big.stats.totals["dram_read_bytes"]


def test_stats_per_layer_add_up():
    compiled, _, _, _ = _run(small_cnn(), "nm/fp32-16x16")
    rows = compiled.stats.per_layer_rows()
    assert len(rows) == len(compiled.layers)
    assert sum(r["cycles"] for r in rows) == compiled.stats.cycles
    assert sum(r["macs"] for r in rows) == compiled.stats.macs
    for layer in compiled.stats.layers:
        assert layer.counters["macs"] == layer.analytic_macs
    assert compiled.stats.summary()["energy_uj"] > 0


def test_run_rejects_bad_inputs():
    compiled = nm_tvm.compile(mlp())
    good = np.zeros((4, 64), np.float32)
    with pytest.raises(nm_tvm.InputError, match="unknown input"):
        compiled.run({"input": good, "other": good})
    with pytest.raises(nm_tvm.InputError, match="missing input 'input'"):
        compiled.run({})
    with pytest.raises(nm_tvm.InputError, match="shape"):
        compiled.run({"input": np.zeros((4, 63), np.float32)})
    with pytest.raises(nm_tvm.InputError, match="dtype"):
        compiled.run({"input": good.astype(np.float64)})


def test_validate_reports_every_output_and_the_bound():
    report = nm_tvm.validate(small_cnn(), target="nm/bf16-32x32", with_bound=True)
    assert report.target == "bf16-32x32"
    (out,) = report.outputs
    assert out.name == "logits"
    assert 0 < out.max_rel_err < 0.05 and out.cosine > 0.999
    assert out.within_bound is True and out.bound > out.max_abs_err
    assert report.stats.macs == analytic_macs(small_cnn())
