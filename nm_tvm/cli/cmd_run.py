"""``nm-tvmc run`` and ``nm-tvmc profile``: an artifact (or model) on the simulator, its
outputs and the per-layer report."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import EXIT_OK, CliError, host_note, load_artifact, run_model
from .compiling import compile_model
from .inputs import read_inputs


def _print_profile(console, compiled, by_node: bool = False) -> None:
    from nm_tvm.profile_report import print_table

    title = "Per source node (one inference)" if by_node else "Per layer (one inference)"
    print_table(console, compiled.stats, title, by_node)
    console.print(host_note(compiled))


def _print_top(console, compiled, outputs, n: int, preprocess: str | None,
               inputs: dict) -> None:
    labels = None
    if preprocess:
        from nm_tvm.models import pretrained

        labels = pretrained.labels(preprocess)
        text = pretrained.postprocess(preprocess, outputs, inputs)
        if text is not None:
            console.print(f"result: {text}")
    for name, out in zip(compiled.output_names, outputs):
        flat = out.reshape(-1) if out.ndim <= 1 else out.reshape(-1, out.shape[-1])[0]
        top = np.argsort(-flat, kind="stable")[:n]
        items = ", ".join(f"{labels[i] if labels and i < len(labels) else i}: {flat[i]:.5g}"
                          for i in top)
        console.print(f"{name} top-{min(n, flat.size)}: {items}")


def cmd_run(args, console, err_console) -> int:
    compiled = load_artifact(args.artifact)
    preprocess = compiled.manifest.get("preprocess")
    inputs = read_inputs(args, compiled, preprocess)
    t0 = time.perf_counter()
    outputs = run_model(compiled, inputs, err_console)
    elapsed = time.perf_counter() - t0
    console.print(f"ran {compiled.manifest.get('model') or args.artifact} on "
                  f"{compiled.hw.name} in {elapsed:.3f} s: {compiled.stats.cycles:,} cycles")
    extra = {}
    if preprocess:
        from nm_tvm.models import pretrained

        extra = pretrained.task_outputs(preprocess, outputs, inputs)
    if args.output:
        np.savez(args.output, **dict(zip(compiled.output_names, outputs)), **extra)
        console.print(f"wrote {args.output}" + (f" (with {', '.join(extra)})" if extra else ""))
    if args.print_top:
        _print_top(console, compiled, outputs, args.print_top, preprocess, inputs)
    elif extra and not args.output:
        console.print(f"result: {pretrained.postprocess(preprocess, outputs, inputs)}")
    elif not args.output:
        for name, out in zip(compiled.output_names, outputs):
            console.print(f"{name} {out.dtype}{list(out.shape)}: {np.array2string(out.reshape(-1)[:8], precision=5)}"
                          + (" ..." if out.size > 8 else ""))
    if args.print_time:
        _print_time(console, compiled, inputs, args.repeat, args.number, err_console)
    if args.profile:
        _print_profile(console, compiled)
    return EXIT_OK


def _print_time(console, compiled, inputs, repeat: int, number: int, err_console) -> None:
    """tvmc's --print-time: host seconds per run over ``repeat`` measurements of ``number``
    runs; the simulated time is the cycle count at the target's clock (the same every run)."""
    per_run = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            run_model(compiled, inputs, err_console)
        per_run.append((time.perf_counter() - t0) / number * 1e3)
    ms = np.array(per_run)
    console.print(f"host wall time per run (ms), {repeat} x {number}: mean {ms.mean():.3f}  "
                  f"median {np.median(ms):.3f}  max {ms.max():.3f}  min {ms.min():.3f}  "
                  f"std {ms.std():.3f}")
    clock_mhz = compiled.hw.clock_mhz
    console.print(f"simulated time per run: {compiled.stats.cycles / (clock_mhz * 1e3):.3f} ms "
                  f"({compiled.stats.cycles:,} cycles at {clock_mhz:g} MHz)")


def cmd_profile(args, console, err_console) -> int:
    if args.model.endswith(".tar"):
        compiled = load_artifact(args.model)
        preprocess = compiled.manifest.get("preprocess")
    else:
        compiled, _proto, preprocess, _name = compile_model(args, err_console, args.model)
    inputs = read_inputs(args, compiled, preprocess)
    run_model(compiled, inputs, err_console)
    from nm_tvm import profile_report

    if args.csv:
        profile_report.write_csv(compiled.stats, args.csv, args.by_node)
        console.print(f"wrote {args.csv}")
    if args.json:
        profile_report.write_json(compiled.stats, args.json)
        console.print(f"wrote {args.json}")
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise CliError(f"--plots {args.plots}: names a file; give a folder for the PNGs")
    if args.plots:
        paths = profile_report.write_plots(compiled.stats, args.plots,
                                           title=Path(args.model).stem)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")
    _print_profile(console, compiled, args.by_node)
    return EXIT_OK
