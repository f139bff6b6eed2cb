"""``nm-tvmc validate``: simulator vs ONNX Runtime, per output and (--per-layer) per layer."""
from __future__ import annotations

from .common import EXIT_FAIL, EXIT_OK, CliError, host_note, progress_bar, run_model
from .compiling import compile_model
from .inputs import read_inputs


def cmd_validate(args, console, err_console) -> int:
    from rich.table import Table

    from nm_tvm.validate import compare, onnx_runtime_outputs

    compiled, proto, preprocess, name = compile_model(args, err_console, args.model)
    inputs = read_inputs(args, compiled, preprocess)
    rtol = args.rtol if args.rtol is not None else (
        1e-5 if compiled.hw.operand_dtype == "float32" else 5e-2)
    sim = run_model(compiled, inputs, err_console)
    try:
        ref = onnx_runtime_outputs(proto, inputs)
    except Exception as err:
        raise CliError(f"ONNX Runtime failed: {str(err).splitlines()[0]}", EXIT_FAIL) from None
    table = Table(title=f"{name} on {compiled.hw.name}: simulator vs ONNX Runtime "
                        f"(pass if max rel err <= {rtol:g})")
    for col in ("output", "shape", "max abs err", "max rel err", "cosine", "argmax (sim / ORT)",
                "result"):
        table.add_column(col)
    ok = True
    for i, out_name in enumerate(compiled.output_names):
        c = compare(out_name, sim[i], ref[i])
        passed = c.max_rel_err <= rtol
        ok &= passed
        table.add_row(out_name, "x".join(map(str, sim[i].shape)), f"{c.max_abs_err:.3e}",
                      f"{c.max_rel_err:.3e}", f"{c.cosine:.8f}",
                      f"{int(sim[i].argmax())} / {int(ref[i].argmax())}",
                      "[green]PASS[/]" if passed else "[red]FAIL[/]")
    console.print(table)
    console.print(f"{len(compiled.layers)} accelerator layers, {compiled.stats.cycles:,} cycles; "
                  f"{host_note(compiled)}")
    console.print(f"PWL table ranges: {compiled.calibration}")
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
