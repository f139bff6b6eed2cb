"""``nm-tvmc validate``: simulator vs ONNX Runtime, per output and (--per-layer) per layer."""
from __future__ import annotations

from .common import EXIT_FAIL, EXIT_OK, CliError, host_note, progress_bar, run_model
from .compiling import compile_model
from .inputs import read_inputs


def cmd_validate(args, console, err_console) -> int:
    from rich.table import Table

    from nm_tvm.validate import compare, default_rtol, judge, onnx_runtime_outputs

    compiled, proto, preprocess, name = compile_model(args, err_console, args.model)
    inputs = read_inputs(args, compiled, preprocess)
    rtol = args.rtol if args.rtol is not None else default_rtol(compiled.hw.operand_dtype)
    sim = run_model(compiled, inputs, err_console)
    try:
        ref = onnx_runtime_outputs(proto, inputs)
    except Exception as err:
        raise CliError(f"ONNX Runtime failed: {str(err).splitlines()[0]}", EXIT_FAIL) from None
    comparisons = [compare(out_name, sim[i], ref[i])
                   for i, out_name in enumerate(compiled.output_names)]
    outside = judge(compiled, inputs, comparisons, ref, rtol)
    table = Table(title=f"{name} on {compiled.hw.name}: simulator vs ONNX Runtime (pass if max "
                        f"abs err <= {rtol:g} * max|ORT| + the PWL tables' propagated bound)")
    for col in ("output", "shape", "max abs err", "max rel err", "tolerance", "cosine",
                "argmax (sim / ORT)", "result"):
        table.add_column(col)
    ok = True
    for i, c in enumerate(comparisons):
        ok &= c.passed
        table.add_row(c.name, "x".join(map(str, sim[i].shape)), f"{c.max_abs_err:.3e}",
                      f"{c.max_rel_err:.3e}", f"{c.tolerance:.3e}", f"{c.cosine:.8f}",
                      f"{int(sim[i].argmax())} / {int(ref[i].argmax())}",
                      "[green]PASS[/]" if c.passed else "[red]FAIL[/]")
    console.print(table)
    console.print(f"{len(compiled.layers)} accelerator layers, {compiled.stats.cycles:,} cycles; "
                  f"{host_note(compiled)}")
    console.print(f"PWL table ranges: {compiled.calibration}")
    for t in outside:  # loudly: the bound does not cover inputs outside a table's range
        err_console.print(
            f"[yellow]warning:[/] PWL table {t['id']} was fitted on [{t['lo']:.4g}, "
            f"{t['hi']:.4g}] but {t['outside']} of {t['of']} inputs fell outside (seen "
            f"[{t['seen_min']:.4g}, {t['seen_max']:.4g}]): calibrate on real inputs "
            "(--calibrate FILE)")
    if args.per_layer:
        ok &= _per_layer(args, console, err_console, compiled, proto, inputs, rtol)
    console.print("[green]PASS[/]" if ok else "[red]FAIL[/]")
    return EXIT_OK if ok else EXIT_FAIL


def _per_layer(args, console, err_console, compiled, proto, inputs, rtol) -> bool:
    from rich.table import Table

    from nm_tvm.per_layer import first_divergence, match_layers

    progress, advance = progress_bar(err_console, "comparing layers", len(compiled.layers))
    with progress:
        matches = match_layers(compiled, proto, inputs, rtol, progress=advance)
    table = Table(title="Per layer: accelerator output vs the matching ONNX tensor "
                        "(its source node's output, else matched by shape and value; "
                        "see nm_tvm/per_layer.py)")
    for col in ("layer", "shape", "ONNX tensor (op)", "max rel err", "result"):
        table.add_column(col)
    for m in matches:
        result = ("[green]ok[/]" if m.ok else "[red]DIVERGES[/]" if m.ok is False
                  else "[dim]no ONNX tensor[/]")
        table.add_row(m.layer, "x".join(map(str, m.shape)),
                      f"{m.onnx_tensor} ({m.onnx_op})" if m.onnx_tensor else "-",
                      f"{m.max_rel_err:.3e}" if m.max_rel_err is not None else "-", result)
    console.print(table)
    first = first_divergence(matches)
    if first is None:
        console.print("no layer diverges")
        return True
    console.print(f"first divergent layer: {first.layer} ({first.kind}), nearest ONNX tensor "
                  f"'{first.onnx_tensor}' ({first.onnx_op}), max rel err {first.max_rel_err:.3e}")
    return False
