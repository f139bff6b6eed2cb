"""``nm-tvmc targets``: the target presets and their parameters."""
from __future__ import annotations

import json

from .common import EXIT_OK


def cmd_targets(args, console, _err_console) -> int:
    from rich.table import Table

    from nm_tvm.target.hardware import load_preset, preset_names
    from nm_tvm.target.tags import DEFAULT_TARGET, TAG_PREFIX

    presets = [load_preset(n) for n in preset_names()]
    if args.json:
        print(json.dumps({TAG_PREFIX + p.name: p.to_dict() for p in presets}, indent=1))
        return EXIT_OK
    table = Table(title="nm targets (--target nm/<preset>, or a hardware JSON file)")
    for col in ("target", "PE array", "dataflow", "operand / acc", "scratchpad", "accumulator",
                "PWL entries", "DRAM bw / latency", "queue depth / DMAs in flight", "clock"):
        table.add_column(col)
    for p in presets:
        tag = TAG_PREFIX + p.name + (" (default)" if TAG_PREFIX + p.name == DEFAULT_TARGET else "")
        table.add_row(tag, f"{p.dim}x{p.dim}", p.dataflow.replace("_", "-"),
                      f"{p.operand_dtype} / float32", f"{p.scratchpad_kib:g} KiB",
                      f"{p.accumulator_kib:g} KiB", str(p.pwl_entries),
                      f"{p.dram_bw} B/cycle / {p.dram_latency}",
                      f"{p.queue_depth} / {p.dma_in_flight}",
                      f"{p.clock_mhz:g} MHz")
    console.print(table)
    for p in presets:
        console.print(f"[bold]{TAG_PREFIX}{p.name}[/]: {p.description}")
    return EXIT_OK
