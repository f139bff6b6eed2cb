"""Calibration: run the model on sample inputs and fit every PWL table to the range its
input really takes (NeuralMatrix fits tables where the data falls, not on a guessed range)."""
from __future__ import annotations

import dataclasses

import numpy as np

from nm_tvm.host_kernels import exact_functions
from nm_tvm.passes import LinearizeConfig

MAX_SAMPLES = 200_000  # values kept per table for weighting the fit
MARGIN = 0.1  # calibrated ranges widen by this share of their width (unseen inputs)


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """Observed range plus a margin, never crossing zero from a one-signed range (functions
    like rsqrt or log are undefined on the other side)."""
    if hi - lo < 1e-6 * max(1.0, abs(lo), abs(hi)):  # a constant input: any small range
        pad = 1e-3 * max(1.0, abs(lo))
        new_lo, new_hi = lo - pad, hi + pad
    else:
        width = hi - lo
        new_lo, new_hi = lo - MARGIN * width, hi + MARGIN * width
    if lo >= 0:  # (a constant 0 counts as non-negative: a variance, a square)
        new_lo = max(new_lo, lo / 2)
    elif hi <= 0:
        new_hi = min(new_hi, hi / 2)
    return new_lo, new_hi


def probe_table_inputs(model, samples: list[dict], target=None,
                       input_shapes: dict | None = None, config: LinearizeConfig | None = None):
    """(probe build, {table id: every value its input took on ``samples``}).

    The probe build returns each fitted table's input as an extra output and evaluates the
    fitted functions exactly on the host, so what it observes does not depend on any table."""
    from nm_tvm.runtime import compile as nm_compile

    probe = nm_compile(model, target=target, input_shapes=input_shapes, linearize=config,
                       strict=False, probe=True)
    ids, first = probe.record.probes.ids, probe.record.probes.n_outputs
    seen: dict[str, list] = {inst: [] for inst in ids}
    with exact_functions(probe.record.exact_functions):
        for sample in samples:
            outputs = probe.run(sample)
            for inst, value in zip(ids, outputs[first:]):
                seen[inst].append(np.asarray(value, np.float32).ravel())
    return probe, {inst: np.concatenate(parts) for inst, parts in seen.items()}


def calibrate(model, samples: list[dict], target=None, input_shapes: dict | None = None,
              config: LinearizeConfig | None = None, seed: int = 0) -> LinearizeConfig:
    """A LinearizeConfig whose ranges (and sample weights) come from ``samples``.

    The model is compiled once with every fitted table's input exposed as an extra output and
    the fitted functions evaluated exactly on the host (so no range depends on another table's
    error); each sample runs; each table's observed [min, max] becomes its range. Exact
    (piecewise-linear) tables need no calibration.
    """
    if not samples:
        raise ValueError("calibrate() needs at least one sample input dict")
    config = config or LinearizeConfig()
    _, seen = probe_table_inputs(model, samples, target, input_shapes, config)
    rng = np.random.default_rng(seed)
    ranges, kept = dict(config.ranges), dict(config.samples)
    for inst, values in seen.items():
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        ranges[inst] = _widen(float(values.min()), float(values.max()))
        if values.size > MAX_SAMPLES:
            values = rng.choice(values, MAX_SAMPLES, replace=False)
        kept[inst] = values
    return dataclasses.replace(config, ranges=ranges, samples=kept)
