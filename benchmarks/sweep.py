"""Design-space sweep: PE array size, scratchpad / accumulator size, dataflow, PWL segments,
instruction-queue depth.

Each design point compiles and runs one model on the simulator (in parallel worker processes)
and records cycles, latency, energy per inference, PE utilization, accuracy against ONNX Runtime
(max relative error) and an area proxy (PEs + SRAM bytes / 64: one PE counted like 64 bytes of
SRAM; say so wherever it is used). Writes a CSV and a Pareto plot of latency vs energy (colour =
area proxy; ringed: Pareto-optimal in latency, energy, area proxy and error together). Hardware variants come from
``HardwareConfig.with_overrides``; PWL segment counts from ``LinearizeConfig(segments=...)``.

Usage: python benchmarks/sweep.py [--model bert_tiny|small_cnn] [--out-dir DIR] [--jobs N]
       [--pe 8,16,32] [--sp-kib 64,256] [--acc-kib 32,128] [--dataflow ws,os] [--segments 16,64]
       [--queue-depth 8]
The default grid (bert_tiny, seq 16) has 24 points and takes about a minute or two on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

DATAFLOWS = {"ws": "weight_stationary", "os": "output_stationary"}
PE_BYTES_EQUIV = 64  # area proxy: one PE counted like 64 bytes of SRAM


def _model(name: str):
    from nm_tvm.models import bert_tiny, small_cnn

    rng = np.random.default_rng(0)
    if name == "bert_tiny":
        return bert_tiny(seq=16), {"embeddings": rng.standard_normal((1, 16, 128)).astype(np.float32)}
    if name == "small_cnn":
        return small_cnn(), {"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    raise SystemExit(f"unknown model {name}")


_REFERENCE = {}


def _reference(name: str, proto, inputs):
    if name not in _REFERENCE:
        import onnxruntime as ort

        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        _REFERENCE[name] = sess.run(None, inputs)
    return _REFERENCE[name]


def evaluate(point: dict) -> dict:
    import nm_tvm
    from nm_tvm.passes import LinearizeConfig
    from nm_tvm.report import STALL_LABELS
    from nm_tvm.target.hardware import load_preset

    proto, inputs = _model(point["model"])
    hw = load_preset(point["base"]).with_overrides(**{
        "pe_array.rows": point["pe"], "pe_array.cols": point["pe"],
        "pe_array.dataflow": DATAFLOWS[point["dataflow"]],
        "memories.scratchpad_kib": point["sp_kib"],
        "memories.accumulator_kib": point["acc_kib"],
        "memories.pwl_table_entries": max(256, point["segments"] + 8),
        "control.queue_depth": point["queue_depth"],
    })
    row = dict(point)
    t0 = time.perf_counter()
    try:
        compiled = nm_tvm.compile(proto, target=hw,
                                  linearize=LinearizeConfig(segments=point["segments"]))
        out = compiled.run(inputs)
    except Exception as err:  # a design point that cannot hold the model is a result too
        row.update(ok=False, error=f"{type(err).__name__}: {str(err)[:200]}")
        return row
    ref = _reference(point["model"], proto, inputs)
    err = max(float(np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-30))
              for o, r in zip(out, ref))
    s = compiled.stats.summary()
    sram = (hw.scratchpad_kib + hw.accumulator_kib) * 1024
    row.update(ok=True, error="", cycles=s["cycles"], latency_us=s["latency_ms"] * 1e3,
               energy_uj=s["energy_uj"], pe_utilization=s["pe_utilization"],
               **{f"stall_{c}": s[f"stall_{c}"] for c in STALL_LABELS},
               linearized_cycle_share=s["linearized_cycle_share"], rel_err=err,
               area_proxy=hw.dim * hw.dim + sram / PE_BYTES_EQUIV, wall_s=time.perf_counter() - t0)
    return row


def pareto(rows: list[dict]) -> list[dict]:
    """Points no other point beats on latency, energy, area proxy and error together."""
    ok = [r for r in rows if r["ok"]]
    keys = ("latency_us", "energy_uj", "area_proxy", "rel_err")
    front = []
    for r in ok:
        dominated = any(all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys)
                        for o in ok)
        if not dominated:
            front.append(r)
    return front


def plot(rows: list[dict], front: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["ok"]]
    fig, ax = plt.subplots(figsize=(8, 6))
    sc = ax.scatter([r["latency_us"] for r in ok], [r["energy_uj"] for r in ok],
                    c=[r["area_proxy"] for r in ok], cmap="viridis",
                    marker="o", s=40, alpha=0.8)
    for r in ok:
        if r["dataflow"] == "os":
            ax.scatter(r["latency_us"], r["energy_uj"], marker="x", c="k", s=12)
    ax.scatter([r["latency_us"] for r in front], [r["energy_uj"] for r in front],
               facecolors="none", edgecolors="r", s=140, label="Pareto (latency, energy, area, error)")
    for r in front:
        ax.annotate(f"{r['pe']}x{r['pe']} {r['dataflow']} sp{r['sp_kib']:g} acc{r['acc_kib']:g} "
                    f"s{r['segments']}", (r["latency_us"], r["energy_uj"]), fontsize=6)
    fig.colorbar(sc, label=f"area proxy (PEs + SRAM bytes / {PE_BYTES_EQUIV})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency per inference (us)")
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_title(title + " (x = output-stationary)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(v) for v in s.split(",")]
    floats = lambda s: [float(v) for v in s.split(",")]
    parser.add_argument("--model", default="bert_tiny", choices=["bert_tiny", "small_cnn"])
    parser.add_argument("--base", default="fp32-16x16", help="preset the overrides start from")
    parser.add_argument("--pe", type=ints, default=[8, 16, 32])
    parser.add_argument("--sp-kib", type=floats, default=[64, 256])
    parser.add_argument("--acc-kib", type=floats, default=[64])
    parser.add_argument("--dataflow", type=lambda s: s.split(","), default=["ws", "os"])
    parser.add_argument("--segments", type=ints, default=[16, 64])
    parser.add_argument("--queue-depth", type=ints, default=[8])
    parser.add_argument("--jobs", type=int, default=max(1, mp.cpu_count()))
    parser.add_argument("--out-dir", default="benchmarks/results/sweep")
    args = parser.parse_args()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    points = [dict(model=args.model, base=args.base, pe=pe, sp_kib=sp, acc_kib=acc,
                   dataflow=df, segments=seg, queue_depth=qd)
              for pe, sp, acc, df, seg, qd in itertools.product(
                  args.pe, args.sp_kib, args.acc_kib, args.dataflow, args.segments,
                  args.queue_depth)]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    rows = []
    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"sweep {args.model} ({args.jobs} processes)", total=len(points))
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for row in pool.imap_unordered(evaluate, points):
                rows.append(row)
                progress.advance(task)
    rows.sort(key=lambda r: (r["pe"], r["sp_kib"], r["acc_kib"], r["dataflow"], r["segments"],
                             r["queue_depth"]))
    front = pareto(rows)
    for r in rows:
        r["pareto"] = r in front
    fields = sorted({k for r in rows for k in r}, key=lambda k: (
        list(points[0]) + ["ok", "cycles", "latency_us", "energy_uj", "pe_utilization",
                           "rel_err", "area_proxy", "pareto"]).index(k)
        if k in list(points[0]) + ["ok", "cycles", "latency_us", "energy_uj", "pe_utilization",
                                   "rel_err", "area_proxy", "pareto"] else 99)
    csv_path = out / f"sweep_{args.model}.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    png = out / f"pareto_{args.model}.png"
    plot(rows, front, png, f"{args.model} design space ({len(rows)} points)")

    table = Table(title=f"Pareto front ({len(front)} of {len(rows)} points; "
                        f"{sum(not r['ok'] for r in rows)} failed)")
    for col in ("PE", "dataflow", "sp KiB", "acc KiB", "segments", "cycles", "latency us",
                "energy uJ", "PE util", "rel err", "area proxy"):
        table.add_column(col, justify="right")
    for r in sorted(front, key=lambda r: r["latency_us"]):
        table.add_row(f"{r['pe']}x{r['pe']}", r["dataflow"], f"{r['sp_kib']:g}",
                      f"{r['acc_kib']:g}", str(r["segments"]), f"{r['cycles']:,}",
                      f"{r['latency_us']:.1f}", f"{r['energy_uj']:.2f}",
                      f"{r['pe_utilization']:.1%}", f"{r['rel_err']:.2e}", f"{r['area_proxy']:,.0f}")
    console.print(table)
    for r in rows:
        if not r["ok"]:
            console.print(f"[yellow]failed[/] {r['pe']}x{r['pe']} {r['dataflow']} sp {r['sp_kib']}"
                          f" acc {r['acc_kib']} seg {r['segments']}: {r['error']}")
    console.print(f"{len(rows)} points in {time.perf_counter() - t0:.0f} s; wrote {csv_path}, {png}")


if __name__ == "__main__":
    main()
