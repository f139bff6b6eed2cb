"""``nm-tvmc compile``: an artifact file, optional code dumps and the offload report."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nm_tvm import support

from .common import EXIT_OK, CliError, host_note, spinner
from .compiling import compile_model


def _programs(offloaded) -> dict[int, np.ndarray]:
    """{layer id: program} from the ``nm_accel.run`` calls of the offloaded module."""
    from tvm import relax

    from nm_tvm.extern_funcs import RUN_FUNC
    from nm_tvm.target.isa import Program

    found = {}
    for _gv, func in offloaded.functions.items():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if (isinstance(call, relax.Call) and getattr(call.op, "name", "") ==
                        "relax.call_dps_packed" and str(call.args[0].global_symbol) ==
                        RUN_FUNC):
                    program = call.args[1].fields[0].value.numpy()
                    found[Program.header_field(program, "layer_id")] = program
    return found


def _rewrite_summary(program: np.ndarray, layer: dict) -> str:
    from nm_tvm.target.isa import Program

    counts: dict[str, int] = {}
    for ins in Program.decode(program).instructions:
        counts[ins.op.name] = counts.get(ins.op.name, 0) + 1
    text = " ".join(f"{op}x{n}" for op, n in sorted(counts.items()))
    if layer.get("im2col"):
        text = "im2col DMA gather; " + text
    return text


def _pattern_text(kind: str) -> str:
    text = kind.removeprefix("nm.")
    for part in ("bias", "residual", "relu"):
        text = text.replace(f"_{part}", f" + {part}")
    return text


def _placement(compiled, proto) -> dict[str, dict[str, int]]:
    """ONNX op type -> {"accelerator" | "host" | "fused / folded": node count}, from the nodes each
    accelerator layer was built from and the nodes named by the host ops (a node rewritten
    before import, like an unrolled LSTM, owns the layers named '<node>/...'). A node in
    neither has no layer of its own: absorbed into a neighbour's (a fused table, a view),
    folded to a constant or removed (Identity)."""
    def owned(name: str, names: set) -> bool:
        return name in names or any(n.startswith(name + "/") for n in names)

    accel = {n for layer in compiled.layers for n in layer.get("source_nodes", [])}
    accel |= {layer.get("node", layer["name"]) for layer in compiled.layers}
    host = {item.split("'")[1] for item in compiled.host_ops if item.count("'") >= 2}
    by_op: dict[str, dict[str, int]] = {}
    for node in proto.graph.node:
        name = node.name or node.output[0]
        place = ("host" if owned(name, host) else "accelerator" if owned(name, accel)
                 else "fused / folded")
        counts = by_op.setdefault(node.op_type, {})
        counts[place] = counts.get(place, 0) + 1
    return dict(sorted(by_op.items(), key=lambda kv: -sum(kv[1].values())))


def _dump_offloads(console, compiled, proto) -> None:
    from rich.table import Table

    programs = _programs(compiled.offloaded_module)
    table = Table(title=f"Accelerator layers ({len(compiled.layers)})")
    for col in ("layer", "source nodes", "pattern (fused ops)", "rewritten as", "MACs",
                "output shape"):
        table.add_column(col, justify="right" if col == "MACs" else "left")
    for layer in compiled.layers:
        program = programs.get(layer["id"])
        rewrite = _rewrite_summary(program, layer) if program is not None else "?"
        table.add_row(layer["name"], " + ".join(layer.get("source_nodes", [])),
                      _pattern_text(layer["kind"]), rewrite, f"{layer['macs']:,}",
                      "x".join(map(str, layer["out_shape"])))
    console.print(table)
    host = Table(title=f"Host ops ({len(compiled.host_ops)})")
    host.add_column("where (ONNX node or Relax binding)")
    host.add_column("op")
    for item in compiled.host_ops:
        where, _, op = item.partition(":")
        host.add_row(where, op)
    console.print(host if compiled.host_ops else "Host ops: none (every compute op offloaded)")
    onnx_table = Table(title="ONNX operators and where they went (from each layer's source "
                             "nodes; the notes are nm_tvm/support.py's)")
    for col in ("ONNX op", "count", "where", "how"):
        onnx_table.add_column(col)
    for op, places in _placement(compiled, proto).items():
        count = sum(places.values())
        where = ", ".join(f"{place} ({n})" if len(places) > 1 else place
                          for place, n in places.items())
        entry = support.SUPPORTED_OPS.get(op)
        how = ("host CPU (TVM llvm)" if set(places) == {"host"} else
               entry.note if entry else "no layer of its own" if set(places) == {"fused / folded"}
               else "")
        onnx_table.add_row(op, str(count), where, how)
    console.print(onnx_table)


def cmd_compile(args, console, err_console) -> int:
    from nm_tvm import artifact

    formats = [f for item in (args.dump_code or []) for f in item]
    bad = set(formats) - {"relax", "asm"}
    if bad:
        raise CliError(f"--dump-code: unknown format(s) {sorted(bad)}; use relax, asm")
    t0 = time.perf_counter()
    compiled, proto, preprocess, name = compile_model(args, err_console, args.model)
    t1 = time.perf_counter()
    with spinner(err_console, f"writing {args.output}"):
        # run --inputs image.png / --text use the preprocessing name
        path = artifact.save(compiled, args.output, name,
                             extra={"preprocess": preprocess} if preprocess else None)
    console.print(f"compiled {name} for {compiled.hw.name} in {t1 - t0:.2f} s: "
                  f"{len(compiled.layers)} accelerator layers, {host_note(compiled)}")
    console.print(f"PWL table ranges: {compiled.calibration}")
    console.print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    out = Path(args.output)
    if "relax" in formats:
        dump = out.with_name(out.name + ".relax")
        dump.write_text(compiled.offloaded_module.script())
        console.print(f"wrote {dump}")
    if "asm" in formats:
        from nm_tvm.target.isa import disassemble

        dump = out.with_name(out.name + ".asm")
        programs = _programs(compiled.offloaded_module)
        dump.write_text("\n\n".join(f"; ==== {layer['name']} ({layer['kind']})\n"
                                    + disassemble(programs[layer["id"]])
                                    for layer in compiled.layers if layer["id"] in programs))
        console.print(f"wrote {dump}")
    if args.dump_offloads:
        _dump_offloads(console, compiled, proto)
    return EXIT_OK
