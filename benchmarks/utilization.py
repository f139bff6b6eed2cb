"""PE utilization of the cycle model: a 1024^3 GEMM on both presets, ResNet-50 and BERT-base.

Prints MACs / (cycles * DIM^2) for one inference of each case, the stall cycles by cause, and for
BERT-base (seq 128) the share of cycles spent in layers that implement linearized nonlinear
operators (``compiled.stats.linearized_cycle_share``). Random weights (models/zoo.py).
Usage: python benchmarks/utilization.py [--quick] [--target nm/...] [--json out.json]
(``--quick``: the GEMM only; ResNet-50 and BERT-base compile in about a minute each).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import nm_tvm
from nm_tvm.models import bert_base, gemm_model, resnet50
from nm_tvm.report import STALL_LABELS


def run_case(name: str, proto, inputs: dict, target: str, strict: bool = True) -> dict:
    t0 = time.perf_counter()
    compiled = nm_tvm.compile(proto, target=target, strict=strict)
    t1 = time.perf_counter()
    compiled.run(inputs)
    t2 = time.perf_counter()
    s = compiled.stats.summary()
    return {"case": name, "target": target, "cycles": s["cycles"], "macs": s["macs"],
            "pe_utilization": s["pe_utilization"],
            **{f"stall_{c}": s[f"stall_{c}"] for c in STALL_LABELS},
            "linearized_cycle_share": s["linearized_cycle_share"],
            "latency_ms": s["latency_ms"], "energy_uj": s["energy_uj"],
            "host_ops": list(compiled.host_ops), "compile_s": t1 - t0, "simulate_s": t2 - t1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=nm_tvm.DEFAULT_TARGET,
                        help="target for ResNet-50 and BERT-base (the GEMM runs on both presets)")
    parser.add_argument("--quick", action="store_true", help="only the 1024^3 GEMM")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    console = Console(width=max(140, Console().width))
    rows = []
    x = {"input": rng.standard_normal((1024, 1024)).astype(np.float32)}
    for target in ("nm/fp32-16x16", "nm/bf16-32x32"):
        rows.append(run_case("GEMM 1024^3", gemm_model(1024, 1024, 1024), x, target))
        console.print(f"GEMM 1024^3 on {target}: PE utilization {rows[-1]['pe_utilization']:.1%}")
    if not args.quick:
        img = {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
        rows.append(run_case("ResNet-50 1x3x224x224", resnet50(), img, args.target))
        console.print(f"ResNet-50: PE utilization {rows[-1]['pe_utilization']:.1%}")
        emb = {"embeddings": rng.standard_normal((1, 128, 768)).astype(np.float32)}
        rows.append(run_case("BERT-base seq 128", bert_base(seq=128), emb, args.target))
        console.print(f"BERT-base: PE utilization {rows[-1]['pe_utilization']:.1%}, linearized "
                      f"operators {rows[-1]['linearized_cycle_share']:.1%} of cycles")

    table = Table(title="PE utilization (one inference, cycle model of docs/ISA.md)")
    stall_cols = [f"stall: {label}" for label in STALL_LABELS.values()]
    for col in ("case", "target", "cycles", "MACs", "PE utilization", *stall_cols,
                "linearized share", "host ops", "compile s", "sim s"):
        table.add_column(col, justify="left" if col in ("case", "target", "host ops") else "right")
    for r in rows:
        table.add_row(r["case"], r["target"], f"{r['cycles']:,}", f"{r['macs']:,}",
                      f"{r['pe_utilization']:.1%}",
                      *[f"{r[f'stall_{c}']:,}" for c in STALL_LABELS],
                      f"{r['linearized_cycle_share']:.1%}",
                      ", ".join(r["host_ops"]) or "none", f"{r['compile_s']:.1f}",
                      f"{r['simulate_s']:.1f}")
    console.print(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
