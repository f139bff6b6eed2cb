"""What linearization approximated, and how much error it may cause.

* :func:`table_rows` -- one row per PWL table of a compiled model: function key, segments,
  fitted range, fitted max / mean error (the table's own error on its range);
* :func:`measured_rows` -- the same tables' error measured in the model, on real inputs;
* :func:`plot_tables` -- a PNG per table: the function, its PWL and the error;
* :func:`op_error_bound` -- the bound an ONNX operator's output must meet given its tables'
  independent limits (``nm_tvm.pwl_limits``: from each function's curvature, range and
  segment count; used by the per-operator tests and the conformance runner).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nm_tvm.pwl import PWLTable

FP32_SLACK = 1e-5  # relative to max |output|: fp32 arithmetic around the tables


def fitted(tables: list[dict]) -> list[dict]:
    return [t for t in tables if not t["exact"]]


def table_rows(tables: list[dict]) -> list[dict]:
    return [{"table": t["id"], "function": t["key"], "segments": t["segments"],
             "exact": t["exact"], "range": f"[{t['lo']:.4g}, {t['hi']:.4g}]" if not t["exact"]
             else "(-inf, inf)", "fitted_max_err": t["max_err"],
             "fitted_mean_abs_err": t["mean_abs_err"], "limit": t.get("limit", 0.0)}
            for t in tables]


def measured_rows(model, samples: list[dict], target=None, input_shapes: dict | None = None,
                  config=None) -> list[dict]:
    """Each fitted table's error measured in the model: the inputs it really receives on
    ``samples`` (the calibration probe build, exact functions on the host) pushed through the
    table and through the exact function. ``config`` must be the LinearizeConfig the model was
    (or will be) compiled with, so the tables are the same."""
    from nm_tvm.runtime import probe_table_inputs

    probe, seen = probe_table_inputs(model, samples, target, input_shapes, config)
    exact = probe.record.exact_functions
    by_id = {t["id"]: t for t in probe.pwl_tables}
    rows = []
    for inst, x in seen.items():
        table = PWLTable.from_array(np.asarray(by_id[inst]["table"], np.float32))
        with np.errstate(all="ignore"):
            err = np.abs(table(x).astype(np.float64) - exact[inst](x.astype(np.float64)))
        err = err[np.isfinite(err)]
        inside = (x >= by_id[inst]["lo"]) & (x <= by_id[inst]["hi"])
        rows.append({"table": inst, "function": by_id[inst]["key"], "inputs": int(x.size),
                     "share_in_range": float(inside.mean()) if x.size else 1.0,
                     "fitted_max_err": by_id[inst]["max_err"],
                     "measured_max_err": float(err.max()) if err.size else 0.0,
                     "measured_mean_abs_err": float(err.mean()) if err.size else 0.0})
    return rows


def plot_tables(tables: list[dict], out_dir) -> list[Path]:
    """One PNG per fitted table: f and its PWL (top), PWL - f (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in fitted(tables):
        x, f = (np.asarray(v) for v in t["grid"])
        pwl = PWLTable.from_array(np.asarray(t["table"], np.float32))
        xs = np.linspace(x[0], x[-1], 2001)
        fs = np.interp(xs, x, f)
        ys = pwl(xs.astype(np.float32))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        top.plot(x, f, label=t["key"])
        top.plot(xs, ys, "--", label=f"PWL, {t['segments']} segments")
        top.plot(pwl.breakpoints[1:], pwl(pwl.breakpoints[1:]), ".", ms=3)
        top.legend()
        top.set_title(f"{t['id']}: max err {t['max_err']:.2e}, mean |err| {t['mean_abs_err']:.2e}")
        bottom.plot(xs, ys - fs)
        bottom.set_ylabel("PWL - f")
        bottom.set_xlabel("x")
        path = out_dir / f"{t['id'].replace('#', '_').replace('+', '-')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _eps(tables: list[dict], key: str | None = None) -> float:
    """Sum of the tables' independent limits (nm_tvm.pwl_limits), not of their own fitted
    errors: a worse table cannot widen its own tolerance."""
    return sum(t["limit"] for t in fitted(tables) if key is None or t["key"] == key)


# Keys of the tables that approximate 1 / sqrt(v + eps): the normalization's own, and the fused
# Sqrt -> Reciprocal of its decomposed ("_expanded") form.
RSQRT_KEYS = ("rsqrt", "sqrt+reciprocal")


def op_error_bound(op_type: str, tables: list[dict], inputs: list[np.ndarray],
                   expected: np.ndarray, attrs: dict | None = None, output: int = 0) -> float:
    """Max |simulated - exact| allowed for one ONNX operator, from its tables' limits.

    Unary functions: the table error (times max |x| where the chain ends in ``x * T(x)``:
    HardSwish, Mish, Softsign = x * recip(1 + |x|), GELU's erf decomposition). Softmax over L elements: ``(L + 1) * e_exp +
    e_recip`` (the sum of L approximated exponentials feeds the reciprocal; all values <= 1
    because max-subtraction makes the largest exponent 0). LogSoftmax: ``L * e_exp + e_log``.
    ReduceLogSumExp = ``m + log(s)``, ``s`` the sum of the L exponentials of ``x - m``:
    ``|s_hat - s| <= L * e_exp`` and ``s >= 1`` (the max's own term), where log's slope is at
    most 1, so ``L * e_exp + e_log`` (L: the elements of one reduction).
    LayerNormalization: ``max|x - mean| * max|gamma| * e_rsqrt`` for Y (``output`` 0), none
    for Mean (1), ``e_rsqrt`` for InvStdDev (2); ``e_rsqrt`` is the largest limit of the
    tables of ``RSQRT_KEYS`` (each output element passes one); InstanceNormalization the same
    over the spatial axes (it is decomposed as a layer norm of each channel). Division by a
    tensor: ``max|a| * e_recip``; LpNormalization ``x * T(norm)`` likewise ``max|x| * e``.
    CausalConvWithState's SiLU: the sigmoid table's error times the largest |y| of its fitted
    range. Plus fp32 slack ``1e-5 * max |expected|``.
    """
    attrs = attrs or {}
    slack = FP32_SLACK * float(np.max(np.abs(expected))) + 1e-6 if expected.size else 1e-6
    x = inputs[0] if inputs else np.zeros(1)
    if op_type in ("Softmax", "LogSoftmax"):
        axis = attrs.get("axis", -1)
        length = x.shape[axis] if x.ndim else 1
        if op_type == "Softmax":
            return (length + 1) * _eps(tables, "exp") + _eps(tables, "reciprocal") + slack
        return length * _eps(tables, "exp") + _eps(tables, "log") + slack
    if op_type == "ReduceLogSumExp":
        return (_reduced_length(x, inputs, attrs) * _eps(tables, "exp") + _eps(tables, "log")
                + slack)
    if op_type == "Attention":  # its decomposed (_expanded) form: softmax(Q K^T) V
        return _attention_bound(tables, inputs, attrs, output) + slack
    if op_type in ("LayerNormalization", "RMSNormalization", "InstanceNormalization"):
        axis = 2 if op_type == "InstanceNormalization" else attrs.get("axis", -1) % max(1, x.ndim)
        axes = tuple(range(axis, x.ndim))
        centred = x if op_type == "RMSNormalization" else x - x.mean(axis=axes, keepdims=True)
        d = np.abs(centred).max()
        gamma = np.abs(inputs[1]).max() if len(inputs) > 1 else 1.0
        e_rsqrt = max((t["limit"] for t in fitted(tables) if t["key"] in RSQRT_KEYS),
                      default=0.0)
        return {0: float(d * gamma) * e_rsqrt, 1: 0.0}.get(output, e_rsqrt) + slack
    if op_type == "Div":
        return float(np.abs(x).max()) * _eps(tables, "reciprocal") + slack
    # x * T(...) chains (the product stays an exact multiply): the table error scales by |x|.
    gain = max(1.0, float(np.abs(x).max())) if op_type in (
        "HardSwish", "Mish", "Softsign", "LpNormalization") else 1.0
    if op_type == "CausalConvWithState":
        # its SiLU / swish activation y * sigmoid(y) of the convolution's output y: |y| is
        # bounded by the range the sigmoid table was fitted to (calibrated on these inputs)
        gain = max([1.0] + [max(abs(t["lo"]), abs(t["hi"])) for t in fitted(tables)
                            if t["key"] == "sigmoid"])
    return gain * _eps(tables) + slack


def _reduced_length(x: np.ndarray, inputs: list[np.ndarray], attrs: dict) -> int:
    """Elements of one reduction: over ``axes`` (the attribute, or input 1 from opset 18);
    every element when no axes are given."""
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1:
        axes = np.asarray(inputs[1]).reshape(-1).tolist()
    if not axes:
        return int(x.size)
    return int(np.prod([x.shape[int(a)] for a in axes], dtype=np.int64))


def _attention_bound(tables: list[dict], inputs: list[np.ndarray], attrs: dict,
                     output: int) -> float:
    """Attention's output Y (``output`` 0) and the others (present key / value caches: copies;
    qk_matmul_output: at most softmax-level error). Each row of probabilities p over L keys
    errs by at most ``dp = (L + 1) * e_exp + e_recip`` per element (as Softmax; a softcap c
    adds ``c * e_tanh`` to the exponent, and exp is 1-Lipschitz below 0), so ``Y = p V`` errs
    by ``max|V| * L * dp`` and the other outputs by ``dp``. L is the softmax's length, the top
    of its reciprocal table's range [1, L]."""
    length = max((t["hi"] for t in fitted(tables) if t["key"] == "reciprocal"), default=1.0)
    e_exp = _eps(tables, "exp") + float(attrs.get("softcap", 0.0)) * _eps(tables, "tanh")
    dp = (length + 1) * e_exp + _eps(tables, "reciprocal")
    if output != 0:
        return dp
    values = [np.abs(v[np.isfinite(v)]).max(initial=0.0) for v in
              (inputs[2:3] + inputs[5:6]) if np.size(v)]
    return float(max(values, default=1.0)) * length * dp
