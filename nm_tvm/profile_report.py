"""Profiling reports of one simulated inference: CSV, JSON, a terminal table and PNG plots.

Rows come from :meth:`nm_tvm.report.RunStats.per_layer_rows` (one per accelerator layer, in run
order) plus a total row; every output states the energy table's source. Plots (matplotlib, Agg):
per-layer cycle breakdown (compute busy, stalls by cause, idle), per-layer energy breakdown by
component, and a roofline of the layers against the target's peak compute (2 * DIM^2 FLOP per
cycle) and DRAM bandwidth (bytes per cycle).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from nm_tvm.report import STALL_LABELS, RunStats, energy_pj, stalls


def rows_with_total(stats: RunStats, by_node: bool = False) -> list[dict]:
    """Per-layer (or, ``by_node``, per source node) rows and a TOTAL row."""
    rows = stats.per_node_rows() if by_node else stats.per_layer_rows()
    name = "node" if by_node else "layer"
    total = {k: "" for k in rows[0]} if rows else {}
    total.update({name: "TOTAL", **stats.figures(stats.totals)})
    return rows + [total]


def write_csv(stats: RunStats, path: str | Path, by_node: bool = False) -> None:
    """A plain CSV (header row, then one row per layer or node and a TOTAL row) that
    csv.DictReader and numpy read as is; the target is a column, the energy table's source is
    in the JSON report."""
    rows = [{**row, "target": stats.hw.name} for row in rows_with_total(stats, by_node)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def to_json(stats: RunStats) -> dict:
    layers = []
    for layer, row in zip(stats.layers, stats.per_layer_rows()):
        layers.append({**row, "id": layer.id, "source_nodes": layer.source_nodes,
                       "counters": layer.counters,
                       "energy_pj": energy_pj(layer.counters, stats.hw)})
    return {"target": stats.hw.summary(), "energy_source": stats.hw.energy_source,
            "energy_table": stats.hw.energy, "summary": stats.summary(),
            "energy_pj": stats.energy, "totals": stats.totals, "layers": layers,
            "nodes": stats.per_node_rows()}


def write_json(stats: RunStats, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(stats), indent=2))


def _fmt(key: str, value) -> str:
    if key == "pe_utilization":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# Short terminal headers for the CSV column names.
_HEADERS = {"pe_utilization": "PE util", "dram_bytes": "DRAM B", "sp_bytes": "SP B",
            "acc_bytes": "ACC B", "energy_uj": "uJ",
            "stall_dma": "stall DMA", "stall_dep": "stall dep", "stall_full": "stall buf",
            "stall_queue": "stall queue"}


def print_table(console, stats: RunStats, title: str = "Per layer (one inference)",
                by_node: bool = False) -> None:
    from rich.table import Table

    rows = rows_with_total(stats, by_node)
    columns = [c for c in rows[0] if c != "source_nodes"]  # in the CSV and JSON: too wide here
    table = Table(title=title)
    cells = [[_fmt(k, row[k]).removeprefix("nm.") if k == "kind" else _fmt(k, row[k])
              for k in columns] for row in rows]
    for j, col in enumerate(columns):
        if col in ("layer", "node", "kind"):  # names keep some width (folded past it)
            width = max(len(r[j]) for r in cells)
            table.add_column(col, min_width=min(width, 14 if col == "kind" else 32),
                             overflow="fold")
        else:
            table.add_column(_HEADERS.get(col, col), justify="right")
    for i, row in enumerate(cells):
        table.add_row(*row, end_section=i == len(rows) - 2)
    console.print(table)
    s = stats.summary()
    console.print(
        f"total: {s['cycles']:,} cycles ({s['latency_ms']:.4f} ms @ {stats.hw.clock_mhz:g} MHz), "
        f"{s['macs']:,} MACs, PE utilization {s['pe_utilization']:.1%}; stalls: "
        + ", ".join(f"{label} {s[f'stall_{c}']:,}" for c, label in STALL_LABELS.items()) +
        f" cycles; energy {s['energy_uj']:.2f} uJ, average power {s['average_power_mw']:.1f} mW, "
        f"{s['inferences_per_s']:,.1f} inferences/s, {s['inferences_per_j']:,.1f} inferences/J; "
        f"linearized operators {s['linearized_cycle_share']:.1%} of cycles")
    console.print(f"[dim]energy table: {s['energy_source']}[/]")
    console.print("[dim]stall columns add each engine's waiting cycles (compute, load and store "
                  "engines run at the same time), so a layer's stalls can sum to more than its "
                  "cycles[/]")


ROOFLINE_LABELS = 8  # the layers with the most cycles are named on the roofline


def _short(name: str, limit: int = 28) -> str:
    """Source-model names differ in their first number (the layer index) and at their end
    (``encoder.layer.11.attention.output.dense``): keep both, elide the middle."""
    if len(name) <= limit:
        return name
    number = re.search(r"\d+", name)
    head = name[:number.end()] if number and number.end() <= limit // 2 + 4 else ""
    return head + "…" + name[-(limit - len(head) - 1):]


def _stacked_bars(path: Path, names: list, parts: dict, width: float, ylabel: str, title: str,
                  note: str) -> Path:
    """One stacked bar per layer (``parts``: label -> value per layer), saved as a PNG."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(width, 5))
    bottom = np.zeros(len(names))
    for label, values in parts.items():
        ax.bar(np.arange(len(names)), values, bottom=bottom, label=label)
        bottom += np.asarray(values, dtype=float)
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.text(0.01, 0.005, note, fontsize=5)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(stats: RunStats, out_dir: str | Path, title: str = "") -> list[Path]:
    """cycles.png, energy.png, roofline.png in out_dir; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hw = stats.hw
    names = [_short(layer.name) for layer in stats.layers]
    width = max(8.0, 0.22 * len(names) + 3)
    note = f"{hw.name}; energy table: {hw.energy_source}"
    paths = []

    # cycles: compute busy + stalls of the compute engine by cause + idle
    parts = {"compute busy": [c.counters["compute_busy"] for c in stats.layers]}
    for cause, label in STALL_LABELS.items():
        parts[f"stall: {label}"] = [c.counters[f"compute_stall_{cause}"] for c in stats.layers]
    parts["compute idle"] = [stalls(c.counters)["compute_idle"] for c in stats.layers]
    paths.append(_stacked_bars(out / "cycles.png", names, parts, width,
                               "cycles (compute engine view)",
                               f"{title} per-layer cycles ({hw.name})", note))

    # energy by component
    per_layer = [energy_pj(layer.counters, hw) for layer in stats.layers]
    parts = {comp: [e[comp] * 1e-6 for e in per_layer] for comp in stats.energy}
    paths.append(_stacked_bars(out / "energy.png", names, parts, width, "energy (uJ)",
                               f"{title} per-layer energy", note))

    # roofline: FLOP/cycle against FLOP per DRAM byte
    peak = 2.0 * hw.dim * hw.dim
    bw = float(hw.dram_bw)
    fig, ax = plt.subplots(figsize=(7, 5))
    pts = [(2 * layer.counters["macs"] / max(1, layer.counters["dram_read_bytes"]
                                            + layer.counters["dram_write_bytes"]),
            2 * layer.counters["macs"] / max(1, layer.counters["cycles"]), layer)
           for layer in stats.layers if layer.counters["macs"] > 0]
    lo = min([p[0] for p in pts] + [peak / bw / 10]) / 2
    hi = max([p[0] for p in pts] + [peak / bw * 10]) * 2
    oi = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.loglog(oi, np.minimum(peak, bw * oi), "k-", label=f"roof: {peak:g} FLOP/cycle, {bw:g} B/cycle")
    if pts:
        sizes = np.array([p[2].counters["cycles"] for p in pts], dtype=float)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                   s=10 + 200 * sizes / sizes.max(), alpha=0.6, label="layers (size ~ cycles)")
        for x, y, layer in sorted(pts, key=lambda p: -p[2].counters["cycles"])[:ROOFLINE_LABELS]:
            ax.annotate(_short(layer.name), (x, y), fontsize=6, xytext=(4, 2),
                        textcoords="offset points")
    ax.set_xlabel("operational intensity (FLOP per DRAM byte)")
    ax.set_ylabel("attained FLOP per cycle")
    ax.set_title(f"{title} roofline ({hw.name})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "roofline.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
