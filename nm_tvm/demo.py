"""``make demo``: compile the bundled small CNN, run it on the simulator, check it against
ONNX Runtime and print the comparison and the accelerator statistics."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import nm_tvm
from nm_tvm import frontend
from nm_tvm.models import analytic_macs, small_cnn
from nm_tvm.profile_report import print_table
from nm_tvm.validate import compare, onnx_runtime_outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default=nm_tvm.DEFAULT_TARGET,
                        help="nm/<preset> or a hardware JSON file (default: %(default)s)")
    args = parser.parse_args(argv)
    console = Console(width=max(180, Console().width))
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)

    t0 = time.perf_counter()
    compiled = nm_tvm.compile(model, target=args.target)
    t1 = time.perf_counter()
    sim = compiled.run({"input": x})
    t2 = time.perf_counter()
    ref = onnx_runtime_outputs(frontend.load_onnx(model), {"input": x})
    result = compare("logits", sim[0], ref[0])
    stats = compiled.stats
    hw = compiled.hw

    console.print(f"[bold]nm_tvm demo[/]: small CNN (conv, BatchNorm, ReLU, residual add, "
                  f"pooling, Gemm) on [bold]{hw.name}[/] ({hw.dim}x{hw.dim} PEs, "
                  f"{hw.operand_dtype} operands, fp32 accumulation)")
    console.print(f"compile {t1 - t0:.2f} s, simulate {t2 - t1:.2f} s; "
                  f"{len(compiled.layers)} accelerator layers, host ops: "
                  f"{compiled.host_ops or 'none (GEMM-only)'}")

    table = Table(title="Simulator vs ONNX Runtime")
    for col in ("output", "max abs err", "max rel err", "cosine", "top-1 (sim / ORT)"):
        table.add_column(col)
    table.add_row(result.name, f"{result.max_abs_err:.3e}", f"{result.max_rel_err:.3e}",
                  f"{result.cosine:.8f}", f"{int(sim[0].argmax())} / {int(ref[0].argmax())}")
    console.print(table)

    summary = stats.summary()
    macs_model = analytic_macs(model)
    totals = Table(title="Accelerator statistics (one inference)")
    totals.add_column("metric")
    totals.add_column("value", justify="right")
    for key, value in (
        ("cycles", f"{summary['cycles']:,}"),
        ("latency at clock", f"{summary['latency_ms']:.4f} ms @ {hw.clock_mhz:g} MHz"),
        ("MACs (simulated)", f"{summary['macs']:,}"),
        ("MACs (analytic, from the ONNX graph)", f"{macs_model:,}"),
        ("PE utilization", f"{summary['pe_utilization']:.1%}"),
        ("DRAM bytes", f"{summary['dram_bytes']:,}"),
        ("energy", f"{summary['energy_uj']:.2f} uJ"),
    ):
        totals.add_row(key, value)
    console.print(totals)
    console.print(f"[dim]energy table: {summary['energy_source']}[/]")

    print_table(console, stats, title="Per layer (named as in the ONNX model)")
    ok = result.max_rel_err <= (1e-5 if hw.operand_dtype == "float32" else 5e-2)
    ok = ok and summary["macs"] == macs_model
    console.print("[green]PASS[/]" if ok else "[red]FAIL[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
