"""PWL breakpoint placement: max error of uniform segments vs nm_tvm's placement.

For GELU, exp, sigmoid, tanh, rsqrt and reciprocal at 8/16/32/64 segments on their default
linearization ranges, prints the max absolute error over the range (measured on the fp32
table, as the accelerator evaluates it) with uniform breakpoints and with the curvature-driven,
error-equalised placement plus vertical correction (``nm_tvm.pwl.fit``), their ratio, and the
independent limit the table is held to (``nm_tvm.pwl_limits``: from the curvature integral).
Usage: python benchmarks/pwl_placement.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
from rich.console import Console
from rich.table import Table

from nm_tvm.pwl import fit
from nm_tvm.pwl_limits import limit

_erf = np.vectorize(math.erf, otypes=[np.float64])
FUNCTIONS = {  # name: (f, range) -- the ranges Linearize uses without calibration
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), (-8.0, 8.0)),
    "exp": (np.exp, (-16.0, 0.0)),  # softmax's exponent after max-subtraction
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-8.0, 8.0)),
    "tanh": (np.tanh, (-8.0, 8.0)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (2.0 ** -6, 64.0)),  # layer-norm variance
    "reciprocal": (lambda x: 1 / x, (1.0, 128.0)),  # softmax row sum, L = 128
}
SEGMENTS = (8, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    table = Table(title="PWL max |error| on the fitted range: uniform vs nm_tvm placement")
    for col in ("function", "range", "segments", "uniform", "nm_tvm", "uniform / nm_tvm",
                "limit", "nm_tvm / limit"):
        table.add_column(col, justify="right")
    rows, worse = [], []
    for name, (f, (lo, hi)) in FUNCTIONS.items():
        for n in SEGMENTS:
            uni = fit(f, lo, hi, n, uniform=True).max_err
            ours = fit(f, lo, hi, n).max_err
            bound = limit(f, lo, hi, n).max_err
            rows.append({"function": name, "range": [lo, hi], "segments": n,
                         "uniform_max_err": uni, "nm_tvm_max_err": ours, "limit": bound})
            if not ours < uni:
                worse.append((name, n))
            table.add_row(name, f"[{lo:g}, {hi:g}]", str(n), f"{uni:.3e}", f"{ours:.3e}",
                          f"{uni / ours:.1f}x", f"{bound:.3e}", f"{ours / bound:.2f}")
    Console(width=max(100, Console().width)).print(table)
    print("nm_tvm placement lower at every point" if not worse
          else f"NOT lower for: {worse}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
