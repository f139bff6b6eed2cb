"""Expected output error from the fitted PWL tables: a probabilistic bound per model output.

Same model as :mod:`nm_tvm.error_bound` (Higham & Mary, SIAM J. Sci. Comput. 2019): each fitted
table errs, element by element, by an independent, zero-mean amount bounded by its limit
``e_t`` (:mod:`nm_tvm.pwl_limits`; the fitter centres every segment's error on the samples,
so its sign varies across elements), i.e. with variance at most ``e_t^2 / 3``. To first order
the outputs then move by ``J eps`` with variance ``sum_j J_j^2 e_t^2 / 3``. Rather than form
``J``, the model's probe build (every fitted table replaced by its exact function on the
host, everything else as compiled) runs once unperturbed and ``runs`` times with each table's
output perturbed by ``eps ~ U(-e_t, e_t)``; the sample standard deviation of the output change
estimates that variance and the bound is ``lam`` times it (``lam = 6``, as for rounding).

Exactly piecewise-linear tables (ReLU, Clip, masks) are exact and not perturbed. A table
whose inputs leave its fitted range is outside this model: :func:`out_of_range` reports it.
"""
from __future__ import annotations

import numpy as np

from nm_tvm.host_kernels import exact_functions

DEFAULT_RUNS = 6
DEFAULT_LAMBDA = 6.0


def _perturbed(functions: dict, limits: dict, rng) -> dict:
    def wrap(f, e):
        return lambda x: f(x) + e * rng.uniform(-1.0, 1.0, np.shape(x))
    return {inst: wrap(f, limits[inst]) if inst in limits else f for inst, f in functions.items()}


def pwl_error_bound(compiled, inputs: dict, runs: int = DEFAULT_RUNS,
                    lam: float = DEFAULT_LAMBDA, seed: int = 0) -> list[float]:
    """Per output of ``compiled`` (a CompiledModel), the max over its elements of
    ``lam * std`` of the output change when every fitted table errs within its limit."""
    probe = compiled.probe_build()
    limits = {t["id"]: float(t["limit"]) for t in compiled.pwl_tables
              if not t["exact"] and "limit" in t}
    n_out = probe.record.probes.n_outputs
    functions = probe.record.exact_functions
    with exact_functions(functions):
        base = [np.asarray(o, np.float64) for o in probe.run(inputs)[:n_out]]
    if not limits:
        return [0.0] * n_out
    rng = np.random.default_rng(seed)
    sq = [np.zeros_like(b) for b in base]
    for _ in range(runs):
        with exact_functions(_perturbed(functions, limits, rng)):
            outs = probe.run(inputs)[:n_out]
        for k, o in enumerate(outs):
            sq[k] += (np.asarray(o, np.float64) - base[k]) ** 2
    return [float(lam * np.sqrt(s / runs).max()) if s.size else 0.0 for s in sq]


def out_of_range(compiled, inputs: dict) -> list[dict]:
    """Fitted tables whose inputs on ``inputs`` fall outside their fitted range [lo, hi] (below
    a table's floor does not count: softmax's exp of -1e4 is 0 either way): ``{"id", "lo",
    "hi", "seen_min", "seen_max", "outside", "of"}`` (element counts), worst share first."""
    probe = compiled.probe_build()
    with exact_functions(probe.record.exact_functions):
        outs = probe.run(inputs)
    tables = {t["id"]: t for t in compiled.pwl_tables if not t["exact"]}
    found = []
    for inst, values in zip(probe.record.probes.ids, outs[probe.record.probes.n_outputs:]):
        t = tables.get(inst)
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        if t is None or v.size == 0:
            continue
        below = v < t["lo"] if "floor" not in t else np.zeros(v.shape, bool)
        outside = int(np.count_nonzero(below | (v > t["hi"])))
        if outside:
            found.append({"id": inst, "lo": t["lo"], "hi": t["hi"], "seen_min": float(v.min()),
                          "seen_max": float(v.max()), "outside": outside, "of": int(v.size)})
    return sorted(found, key=lambda r: -r["outside"] / r["of"])
