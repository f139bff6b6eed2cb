"""Calibration: observe each PWL table's input on sample inputs and fit the table to the range
it really takes (NeuralMatrix fits tables where the data falls, not on a guessed range).

This module only runs an already compiled probe build and turns observations into a
LinearizeConfig; compiling the probe build is the runtime's job (:func:`nm_tvm.runtime.calibrate`),
so the dependency runs one way: runtime -> calibrate."""
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


def observe(probe_model, samples: list[dict]) -> dict:
    """{table id: every value its input took on ``samples``}, from a probe build (a
    CompiledModel compiled with ``probe=True``: each fitted table's input is an extra output,
    and the fitted functions are evaluated exactly on the host, so what it observes does not
    depend on any table)."""
    ids, first = probe_model.record.probes.ids, probe_model.record.probes.n_outputs
    seen: dict[str, list] = {inst: [] for inst in ids}
    with exact_functions(probe_model.record.exact_functions):
        for sample in samples:
            outputs = probe_model.run(sample)
            for inst, value in zip(ids, outputs[first:]):
                seen[inst].append(np.asarray(value, np.float32).ravel())
    return {inst: np.concatenate(parts) for inst, parts in seen.items()}


def calibrated_config(config: LinearizeConfig | None, seen: dict, seed: int = 0,
                      cover: dict | None = None) -> LinearizeConfig:
    """``config`` with each observed table's range (its [min, max] widened by MARGIN, and
    still covering ``cover[id]`` where given) and sample weights (at most MAX_SAMPLES values).
    Exact (piecewise-linear) tables need no calibration; the compile that uses this is
    :func:`nm_tvm.runtime.calibrate`."""
    cover = cover or {}
    config = config or LinearizeConfig()
    rng = np.random.default_rng(seed)
    ranges, kept = dict(config.ranges), dict(config.samples)
    for inst, values in seen.items():
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        lo, hi = _widen(float(values.min()), float(values.max()))
        if inst in cover:  # widen only, and never across zero from a one-signed default
            c_lo, c_hi = cover[inst]  # (N(0, 1) samples feed sqrt negative values)
            lo = c_lo if c_lo > 0 and lo <= 0 else min(lo, c_lo)
            hi = c_hi if c_hi < 0 and hi >= 0 else max(hi, c_hi)
        ranges[inst] = (lo, hi)
        if values.size > MAX_SAMPLES:
            values = rng.choice(values, MAX_SAMPLES, replace=False)
        kept[inst] = values
    return dataclasses.replace(config, ranges=ranges, samples=kept)
