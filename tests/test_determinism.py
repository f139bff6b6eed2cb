"""Outputs, cycle counts and every statistic are identical across repeated runs and
recompilations (the simulator has no hidden state between calls)."""
from __future__ import annotations

import numpy as np
import pytest

import nm_tvm
from nm_tvm import frontend
from nm_tvm.models import mlp, small_cnn


def _layer_counters(compiled):
    return [(layer.id, layer.name, dict(layer.counters)) for layer in compiled.stats.layers]


@pytest.mark.parametrize("target", ["nm/fp32-16x16", "nm/bf16-32x32"])
def test_repeated_runs_are_bit_identical(target):
    model = small_cnn(seed=3)
    inputs = frontend.random_inputs(frontend.import_model(model), seed=5)
    compiled = nm_tvm.compile(model, target=target)
    first = compiled.run(inputs)
    first_stats = _layer_counters(compiled)
    assert compiled.stats.cycles > 0
    other = {k: np.ones_like(v) for k, v in inputs.items()}
    for _ in range(3):
        compiled.run(other)  # a different input in between must not leak into the next run
        again = compiled.run(inputs)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        assert _layer_counters(compiled) == first_stats


def test_recompilation_gives_identical_programs_and_results():
    model = mlp(seed=2)
    inputs = frontend.random_inputs(frontend.import_model(model), seed=1)
    a, b = nm_tvm.compile(model), nm_tvm.compile(model)
    assert a.layers == b.layers
    out_a, out_b = a.run(inputs), b.run(inputs)
    for x, y in zip(out_a, out_b):
        np.testing.assert_array_equal(x, y)
    assert _layer_counters(a) == _layer_counters(b)
    assert a.stats.summary() == b.stats.summary()


def test_nan_inputs_are_deterministic_too():
    model = mlp(seed=2)
    imported = frontend.import_model(model)
    inputs = frontend.random_inputs(imported, seed=1)
    name = imported.input_names[0]
    inputs[name][0, :3] = [np.nan, np.inf, -np.inf]
    compiled = nm_tvm.compile(model)
    first = compiled.run(inputs)[0]
    second = compiled.run(inputs)[0]
    np.testing.assert_array_equal(first, second)  # NaN positions equal too
