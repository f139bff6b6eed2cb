"""Simulator speed: host wall time of the simulated run vs ONNX Runtime, same run, same host.

Prints, for the bundled small CNN, one 1024x1024x1024 GEMM and BERT-base (seq 128, random
weights, models.zoo.bert_base): ORT wall time, simulator wall time (the compiled TVM executable
calling the C++ simulator), their ratio, and simulated MACs per host second, all measured in
this run. Usage: python benchmarks/sim_speed.py [--repeat N] [--target nm/...] [--no-bert]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

import nm_tvm
from nm_tvm.models import bert_base, gemm_model, small_cnn


def _best_time(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(name: str, proto, inputs: dict, target: str, repeat: int) -> dict:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    t_ort = _best_time(lambda: session.run(None, inputs), repeat)
    compiled = nm_tvm.compile(proto, target=target)
    t_sim = _best_time(lambda: compiled.run(inputs), repeat)
    macs = compiled.stats.macs
    return {"model": name, "ort_s": t_ort, "sim_s": t_sim, "ratio": t_sim / t_ort,
            "macs": macs, "sim_macs_per_s": macs / t_sim, "cycles": compiled.stats.cycles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--target", default=nm_tvm.DEFAULT_TARGET)
    parser.add_argument("--no-bert", action="store_true", help="skip BERT-base (compile ~1 min)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = [
        ("small CNN 1x3x16x16", small_cnn(),
         {"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}),
        ("GEMM 1024^3", gemm_model(1024, 1024, 1024),
         {"input": rng.standard_normal((1024, 1024)).astype(np.float32)}),
    ]
    if not args.no_bert:
        cases.append(("BERT-base seq 128", bert_base(seq=128),
                      {"embeddings": rng.standard_normal((1, 128, 768)).astype(np.float32)}))
    table = Table(title=f"Simulator speed on this host ({args.target}, best of {args.repeat})")
    for col in ("model", "ONNX Runtime", "simulator", "sim / ORT", "simulated MACs",
                "simulated MACs per host s", "simulated cycles"):
        table.add_column(col, justify="right")
    for name, proto, inputs in cases:
        r = measure(name, proto, inputs, args.target, args.repeat)
        table.add_row(r["model"], f"{r['ort_s'] * 1e3:.2f} ms", f"{r['sim_s'] * 1e3:.1f} ms",
                      f"{r['ratio']:.0f}x", f"{r['macs']:,}", f"{r['sim_macs_per_s']:.3g}",
                      f"{r['cycles']:,}")
    Console(width=max(130, Console().width)).print(table)


if __name__ == "__main__":
    main()
