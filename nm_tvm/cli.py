"""``nm-tvmc``: the tvmc-style command line (compile, run, validate, profile, targets).

Conventions follow TVM's former tvmc where they apply (``--input-shapes "x:[1,3,224,224]"``,
``--pass-config k=v``, ``--disabled-pass``, ``--dump-code``, ``-o module.tar``, ``.npz``
inputs/outputs, ``--fill-mode``, ``--print-top``). Exit codes: 0 success, 1 failure (compile
error, validation over tolerance), 2 bad usage or bad input files. Errors are one line on
stderr; ``--debug`` shows the traceback. Results go to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import json
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PROG = "nm-tvmc"


class CliError(Exception):
    """A one-line error for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- consoles
def _consoles():
    from rich.console import Console

    out = Console(soft_wrap=True)
    if not out.is_terminal:  # files and pipes: wide tables, no wrapping
        out = Console(soft_wrap=True, width=160)
    return out, Console(stderr=True)


@contextlib.contextmanager
def _spinner(err_console, text: str):
    """A spinner with elapsed time on stderr for a long single step (quiet when not a TTY)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task(text, total=None)
        yield lambda desc: progress.update(task, description=desc)


def _bar(err_console, text: str, total: int):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=True,
                        disable=not err_console.is_terminal)
    task = progress.add_task(text, total=total)
    return progress, (lambda: progress.advance(task))


# --------------------------------------------------------------------------- argument types
def parse_input_shapes(text: str) -> dict[str, tuple]:
    """tvmc syntax: ``"input:[1,3,224,224] mask:[1,128]"``."""
    shapes = {}
    for item in text.replace(", ", ",").split():
        name, sep, dims = item.rpartition(":")
        try:
            value = ast.literal_eval(dims) if sep else None
        except (ValueError, SyntaxError):
            value = None
        if not name or not isinstance(value, (list, tuple)) or not all(
                isinstance(d, int) and d > 0 for d in value):
            raise argparse.ArgumentTypeError(
                f"bad shape '{item}'; expected NAME:[d0,d1,...] with positive integers")
        shapes[name] = tuple(value)
    return shapes


def parse_pass_config(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"bad pass config '{text}'; expected key=value")
    low = value.lower()
    if low in ("true", "false"):
        return key, low == "true"
    try:
        return key, int(value)
    except ValueError:
        return key, value


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) instead of the usage block."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- model loading
def _load_model_arg(spec: str):
    """An ONNX path, ``zoo:NAME`` (random-weight builder) or ``pretrained:NAME``.

    Returns (ModelProto, default input shapes, preprocessing name or None, display name).
    """
    from nm_tvm import frontend

    if spec.startswith("zoo:"):
        from nm_tvm.models import zoo

        name = spec[4:]
        if name not in zoo.BUILDERS:
            raise CliError(f"unknown zoo model '{name}'; available: {', '.join(zoo.BUILDERS)}")
        return zoo.BUILDERS[name](), None, None, name
    if spec.startswith("pretrained:"):
        from nm_tvm.models import pretrained

        name = spec[len("pretrained:"):]
        try:
            model = pretrained.load(name)
        except pretrained.PretrainedUnavailable as err:
            raise CliError(str(err)) from None
        return model.onnx, model.input_shapes, model.name, name
    try:
        return frontend.load_onnx(spec), None, None, Path(spec).stem
    except frontend.ModelLoadError as err:
        raise CliError(str(err)) from None


def _pass_context(args, extra_instruments=()):
    import tvm

    instruments = list(extra_instruments)
    if getattr(args, "print_ir_after", None):
        instruments.append(_print_ir_after(args.print_ir_after))
    config = dict(args.pass_config or [])
    disabled = [p for item in (args.disabled_pass or []) for p in item]
    try:
        return tvm.transform.PassContext(config=config, disabled_pass=disabled,
                                         instruments=instruments)
    except Exception as err:  # unknown config keys are rejected by TVM
        raise CliError(f"bad --pass-config: {str(err).splitlines()[-1]}") from None


def _print_ir_after(patterns: list[str]):
    import tvm

    @tvm.instrument.pass_instrument
    class PrintIRAfter:
        """Print the module after every pass whose name matches a pattern (fnmatch)."""

        def run_after_pass(self, mod, info):
            if any(fnmatch.fnmatchcase(info.name, p) for p in patterns):
                print(f"# IR after {info.name}")
                print(mod.script())

    return PrintIRAfter()


def _progress_instrument(update):
    import tvm

    @tvm.instrument.pass_instrument
    class Progress:
        def run_before_pass(self, _mod, info):
            if info.name.startswith("nm."):
                update(f"compiling: {info.name}")

    return Progress()


def _compile(args, err_console, spec: str):
    """Compile ``spec`` under the options of ``args``; returns (compiled, proto, preprocess, name)."""
    import nm_tvm

    nm_tvm.resolve_target(args.target)  # a bad target is reported before the model is read
    proto, default_shapes, preprocess, name = _load_model_arg(spec)
    shapes = dict(default_shapes or {})
    shapes.update(getattr(args, "input_shapes", None) or {})
    with _spinner(err_console, f"compiling {name} for {args.target}") as update:
        with _pass_context(args, [_progress_instrument(update)]):
            compiled = nm_tvm.compile(proto, target=args.target, input_shapes=shapes or None,
                                      strict=not args.allow_host_fallback)
    return compiled, proto, preprocess, name


def _host_note(compiled) -> str:
    if not compiled.host_ops:
        return "host ops: none (GEMM-only)"
    ops = sorted({op.split(":", 1)[1] for op in compiled.host_ops})
    return f"host ops ({len(compiled.host_ops)}, --allow-host-fallback): {', '.join(ops)}"


# --------------------------------------------------------------------------- compile
def _programs(offloaded) -> dict[int, np.ndarray]:
    """{layer id: program} from the ``nm_accel.run`` calls of the offloaded module."""
    from tvm import relax

    found = {}
    for _gv, func in offloaded.functions.items():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if (isinstance(call, relax.Call) and getattr(call.op, "name", "") ==
                        "relax.call_dps_packed" and str(call.args[0].global_symbol) ==
                        "nm_accel.run"):
                    program = call.args[1].fields[0].value.numpy()
                    found[int(program[4])] = program
    return found


def _rewrite_summary(program: np.ndarray, layer: dict) -> str:
    from nm_tvm.target.isa import HEADER_WORDS, INSTR_WORDS, REGION_WORDS, Op

    n_regions, n_instr = int(program[2]), int(program[3])
    off = HEADER_WORDS + n_regions * REGION_WORDS
    counts: dict[str, int] = {}
    for i in range(n_instr):
        op = Op(int(program[off + i * INSTR_WORDS])).name
        counts[op] = counts.get(op, 0) + 1
    text = " ".join(f"{op}x{n}" for op, n in sorted(counts.items()))
    if layer.get("im2col"):
        text = "im2col DMA gather; " + text
    return text


_ONNX_FATE = {
    "Conv": "GEMM (im2col by DMA, 1x1 read in place)", "Gemm": "GEMM", "MatMul": "GEMM",
    "BatchNormalization": "folded into the conv/matmul weights and bias (FoldScaleShift)",
    "Relu": "2-segment PWL fused into the producer", "Add": "bias, residual or VEC add",
    "Mul": "VEC multiply / folded scale", "Sub": "folded into bias / VEC add",
    "AveragePool": "GEMM against an averaging vector",
    "GlobalAveragePool": "GEMM against an averaging vector",
    "ReduceMean": "GEMM against an averaging vector",
    "Flatten": "view (no data movement)", "Reshape": "view (no data movement)",
    "Squeeze": "view", "Unsqueeze": "view", "Transpose": "DMA transpose",
    "Identity": "removed", "Constant": "constant (folded)",
}


def _pattern_text(kind: str) -> str:
    text = kind.removeprefix("nm.")
    for part in ("bias", "residual", "relu"):
        text = text.replace(f"_{part}", f" + {part}")
    return text


def _dump_offloads(console, compiled, proto) -> None:
    from rich.table import Table

    programs = _programs(compiled.offloaded_module)
    table = Table(title=f"Accelerator layers ({len(compiled.layers)})")
    for col in ("layer", "pattern (fused ops)", "rewritten as", "MACs", "output shape"):
        table.add_column(col, justify="right" if col == "MACs" else "left")
    for layer in compiled.layers:
        program = programs.get(layer["id"])
        rewrite = _rewrite_summary(program, layer) if program is not None else "?"
        table.add_row(layer["name"], _pattern_text(layer["kind"]), rewrite,
                      f"{layer['macs']:,}", "x".join(map(str, layer["out_shape"])))
    console.print(table)
    host = Table(title=f"Host ops ({len(compiled.host_ops)})")
    host.add_column("binding")
    host.add_column("op")
    for item in compiled.host_ops:
        var, _, op = item.partition(":")
        host.add_row(var, op)
    console.print(host if compiled.host_ops else "Host ops: none (every compute op offloaded)")
    host_names = " ".join(op.lower().replace("_", "") for op in compiled.host_ops)
    census: dict[str, int] = {}
    for node in proto.graph.node:
        census[node.op_type] = census.get(node.op_type, 0) + 1
    onnx_table = Table(title="ONNX operators and where they went")
    for col in ("ONNX op", "count", "where", "how"):
        onnx_table.add_column(col)
    for op, count in sorted(census.items(), key=lambda kv: -kv[1]):
        key = op.lower().replace("normalization", "norm")
        on_host = key in host_names or (op == "Clip" and "clip" in host_names)
        where = "host" if on_host else ("accelerator" if op in _ONNX_FATE else "host?")
        how = "host CPU (TVM llvm)" if on_host else _ONNX_FATE.get(op, "see host ops")
        onnx_table.add_row(op, str(count), where, how)
    console.print(onnx_table)


def cmd_compile(args, console, err_console) -> int:
    from nm_tvm import artifact

    formats = [f for item in (args.dump_code or []) for f in item]
    bad = set(formats) - {"relax", "asm"}
    if bad:
        raise CliError(f"--dump-code: unknown format(s) {sorted(bad)}; use relax, asm")
    t0 = time.perf_counter()
    compiled, proto, preprocess, name = _compile(args, err_console, args.model)
    t1 = time.perf_counter()
    with _spinner(err_console, f"writing {args.output}"):
        compiled_name = name
        path = artifact.save(compiled, args.output, compiled_name)
        if preprocess:  # run --inputs image.png / --text use it
            _set_manifest_field(path, "preprocess", preprocess)
    console.print(f"compiled {name} for {compiled.hw.name} in {t1 - t0:.2f} s: "
                  f"{len(compiled.layers)} accelerator layers, {_host_note(compiled)}")
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


def _set_manifest_field(path: Path, key: str, value) -> None:
    """Rewrite the manifest in place (the tar is small apart from the library)."""
    import io
    import tarfile

    from nm_tvm import artifact

    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile(artifact.MANIFEST).read())
        library = tar.extractfile(artifact.LIBRARY).read()
    manifest[key] = value
    data = json.dumps(manifest, indent=1).encode()
    with tarfile.open(path, "w") as tar:
        for name, blob in ((artifact.MANIFEST, data), (artifact.LIBRARY, library)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


# --------------------------------------------------------------------------- inputs
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _fill(compiled, mode: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in compiled.input_names:
        shape, dtype = compiled.input_shapes[name], compiled.input_dtypes[name]
        if mode == "zeros":
            out[name] = np.zeros(shape, dtype)
        elif mode == "ones":
            out[name] = np.ones(shape, dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out


def _read_inputs(args, compiled, preprocess: str | None) -> dict:
    """Inputs from --inputs (.npz / .npy / image) or --text, else --fill-mode."""
    if getattr(args, "text", None) is not None:
        return _preprocess(preprocess, "text", args.text, compiled)
    if not getattr(args, "inputs", None):
        return _fill(compiled, getattr(args, "fill_mode", "random") or "random")
    path = Path(args.inputs)
    if not path.is_file():
        raise CliError(f"input file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _preprocess(preprocess, "image", path, compiled)
    try:
        if suffix == ".npy":
            if len(compiled.input_names) != 1:
                raise CliError(f"a .npy file gives one input; the model has "
                               f"{compiled.input_names}: use an .npz")
            return {compiled.input_names[0]: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise CliError(f"'{path}' is not an .npz archive")
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read inputs from '{path}' ({err}); expected .npz, .npy or an "
                       f"image ({', '.join(IMAGE_SUFFIXES)})") from None


def _preprocess(name: str | None, kind: str, value, compiled) -> dict:
    if not name:
        raise CliError(f"this model has no known {kind} preprocessing; give --inputs FILE.npz "
                       "(compile a pretrained:NAME model to get one)")
    from nm_tvm.models import pretrained

    try:
        inputs = pretrained.preprocess(name, kind, value)
    except pretrained.PretrainedUnavailable as err:
        raise CliError(str(err)) from None
    except ValueError as err:
        raise CliError(f"{kind} input: {err}") from None
    for key, arr in inputs.items():  # fit to the compiled static shape (pad / crop)
        want = compiled.input_shapes.get(key)
        if want is not None and tuple(arr.shape) != tuple(want):
            inputs[key] = pretrained.fit_shape(arr, want)
    return inputs


# --------------------------------------------------------------------------- run / profile
def _print_profile(console, compiled) -> None:
    from nm_tvm.profile_report import print_table

    print_table(console, compiled.stats)
    console.print(_host_note(compiled))


def _print_top(console, compiled, outputs, n: int, preprocess: str | None) -> None:
    labels = None
    if preprocess:
        from nm_tvm.models import pretrained

        labels = pretrained.labels(preprocess)
        text = pretrained.postprocess(preprocess, outputs)
        if text is not None:
            console.print(f"result: {text}")
    for name, out in zip(compiled.output_names, outputs):
        flat = out.reshape(-1) if out.ndim <= 1 else out.reshape(-1, out.shape[-1])[0]
        top = np.argsort(-flat, kind="stable")[:n]
        items = ", ".join(f"{labels[i] if labels and i < len(labels) else i}: {flat[i]:.5g}"
                          for i in top)
        console.print(f"{name} top-{min(n, flat.size)}: {items}")


def _load_artifact(path: str):
    from nm_tvm import artifact

    try:
        return artifact.load(path)
    except artifact.ArtifactError as err:
        raise CliError(str(err)) from None


def _run_model(compiled, inputs: dict, err_console):
    from nm_tvm.runtime import InputError

    with _spinner(err_console, "running on the simulator"):
        try:
            return compiled.run(inputs)
        except InputError as err:
            raise CliError(f"bad inputs: {err}") from None


def cmd_run(args, console, err_console) -> int:
    compiled = _load_artifact(args.artifact)
    preprocess = compiled.manifest.get("preprocess")
    inputs = _read_inputs(args, compiled, preprocess)
    t0 = time.perf_counter()
    outputs = _run_model(compiled, inputs, err_console)
    elapsed = time.perf_counter() - t0
    console.print(f"ran {compiled.manifest.get('model') or args.artifact} on "
                  f"{compiled.hw.name} in {elapsed:.3f} s: {compiled.stats.cycles:,} cycles")
    if args.output:
        np.savez(args.output, **dict(zip(compiled.output_names, outputs)))
        console.print(f"wrote {args.output}")
    if args.print_top:
        _print_top(console, compiled, outputs, args.print_top, preprocess)
    elif not args.output:
        for name, out in zip(compiled.output_names, outputs):
            console.print(f"{name} {out.dtype}{list(out.shape)}: {np.array2string(out.reshape(-1)[:8], precision=5)}"
                          + (" ..." if out.size > 8 else ""))
    if args.profile:
        _print_profile(console, compiled)
    return EXIT_OK


def cmd_profile(args, console, err_console) -> int:
    if args.model.endswith(".tar"):
        compiled, preprocess = _load_artifact(args.model), None
        preprocess = compiled.manifest.get("preprocess")
    else:
        compiled, _proto, preprocess, _name = _compile(args, err_console, args.model)
    inputs = _read_inputs(args, compiled, preprocess)
    _run_model(compiled, inputs, err_console)
    from nm_tvm import profile_report

    if args.csv:
        profile_report.write_csv(compiled.stats, args.csv)
        console.print(f"wrote {args.csv}")
    if args.json:
        profile_report.write_json(compiled.stats, args.json)
        console.print(f"wrote {args.json}")
    if args.plots:
        paths = profile_report.write_plots(compiled.stats, args.plots,
                                           title=Path(args.model).stem)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")
    _print_profile(console, compiled)
    return EXIT_OK


# --------------------------------------------------------------------------- validate
def cmd_validate(args, console, err_console) -> int:
    from rich.table import Table

    from nm_tvm.validate import compare, onnx_runtime_outputs

    compiled, proto, preprocess, name = _compile(args, err_console, args.model)
    inputs = _read_inputs(args, compiled, preprocess)
    rtol = args.rtol if args.rtol is not None else (
        1e-5 if compiled.hw.operand_dtype == "float32" else 5e-2)
    sim = _run_model(compiled, inputs, err_console)
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
                  f"{_host_note(compiled)}")
    if args.per_layer:
        ok &= _per_layer(args, console, err_console, compiled, proto, inputs, rtol)
    console.print("[green]PASS[/]" if ok else "[red]FAIL[/]")
    return EXIT_OK if ok else EXIT_FAIL


def _per_layer(args, console, err_console, compiled, proto, inputs, rtol) -> bool:
    from rich.table import Table

    from nm_tvm.per_layer import first_divergence, match_layers

    progress, advance = _bar(err_console, "comparing layers", len(compiled.layers))
    with progress:
        matches = match_layers(compiled, proto, inputs, rtol, progress=advance)
    table = Table(title="Per layer: accelerator output vs the matching ONNX tensor "
                        "(matched by shape and value, see nm_tvm/per_layer.py)")
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


# --------------------------------------------------------------------------- targets
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
                "PWL entries", "DRAM bw / latency", "clock"):
        table.add_column(col)
    for p in presets:
        tag = TAG_PREFIX + p.name + (" (default)" if TAG_PREFIX + p.name == DEFAULT_TARGET else "")
        table.add_row(tag, f"{p.dim}x{p.dim}", p.dataflow.replace("_", "-"),
                      f"{p.operand_dtype} / float32", f"{p.scratchpad_kib:g} KiB",
                      f"{p.accumulator_kib:g} KiB", str(p.pwl_entries),
                      f"{p.dram_bw} B/cycle / {p.dram_latency}", f"{p.clock_mhz:g} MHz")
    console.print(table)
    for p in presets:
        console.print(f"[bold]{TAG_PREFIX}{p.name}[/]: {p.description}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser
_EPILOGS = {
    "compile": """examples:
  nm-tvmc compile model.onnx --target nm/fp32-16x16 -o model.tar
  nm-tvmc compile bert.onnx --target nm/bf16-32x32 --input-shapes "hidden:[1,128,768]" \\
      --allow-host-fallback --dump-offloads -o bert.tar
  nm-tvmc compile model.onnx --target my_hw.json --dump-code relax,asm -o model.tar
  nm-tvmc compile model.onnx --print-ir-after nm.LowerToAccelerator
  nm-tvmc compile zoo:resnet18 --allow-host-fallback -o resnet18.tar
  nm-tvmc compile pretrained:pplcnet-orientation --allow-host-fallback -o orient.tar""",
    "run": """examples:
  nm-tvmc run model.tar --fill-mode random --print-top 5
  nm-tvmc run model.tar --inputs in.npz -o out.npz --profile
  nm-tvmc run orient.tar --inputs page.png --print-top 4     (models with known preprocessing)
  nm-tvmc run minilm.tar --text "A man is playing a guitar."
inputs: .npz (one array per input name), .npy (single-input models), PNG/JPEG images and
--text for models compiled from pretrained:NAME; without --inputs, --fill-mode (default random).""",
    "validate": """examples:
  nm-tvmc validate model.onnx --target nm/fp32-16x16
  nm-tvmc validate model.onnx --target nm/bf16-32x32 --rtol 0.05 --per-layer
  nm-tvmc validate bert_tiny.onnx --allow-host-fallback --input-shapes "hidden:[1,16,128]"
exit code 1 when any output (or, with --per-layer, any layer) is over the tolerance.""",
    "profile": """examples:
  nm-tvmc profile model.onnx --target nm/bf16-32x32
  nm-tvmc profile model.tar --inputs in.npz --csv layers.csv
  nm-tvmc profile model.onnx --json report.json --plots plots/""",
    "targets": """examples:
  nm-tvmc targets
  nm-tvmc targets --json""",
}


def _add_compile_options(p, with_output: bool) -> None:
    from nm_tvm.target.tags import DEFAULT_TARGET

    p.add_argument("model", help="ONNX file, zoo:NAME (random-weight builder) or "
                                 "pretrained:NAME (installed real model)")
    p.add_argument("--target", default=DEFAULT_TARGET,
                   help="nm/<preset> (see `nm-tvmc targets`) or a hardware JSON file "
                        "(default: %(default)s)")
    p.add_argument("--input-shapes", type=parse_input_shapes, metavar="SHAPES",
                   help='static input shapes, e.g. "input:[1,3,224,224] mask:[1,128]"')
    p.add_argument("--pass-config", type=parse_pass_config, action="append", metavar="K=V",
                   help="a TVM PassContext config entry (repeatable)")
    p.add_argument("--disabled-pass", type=_csv, action="append", metavar="PASS[,PASS]",
                   help="passes to skip, by name (e.g. nm.FoldScaleShift)")
    p.add_argument("--print-ir-after", type=_csv, metavar="PASS[,PASS]",
                   help="print the module after passes with these names (fnmatch patterns, "
                        "e.g. 'nm.*')")
    p.add_argument("--allow-host-fallback", action="store_true",
                   help="run operators the accelerator does not support on the host CPU and "
                        "list them (default: strict, such operators are a compile error)")
    if with_output:
        p.add_argument("-o", "--output", default="module.tar",
                       help="artifact file to write (default: %(default)s)")
        p.add_argument("--dump-code", type=_csv, action="append", metavar="FORMATS",
                       help="also write OUTPUT.relax (offloaded Relax module) and/or "
                            "OUTPUT.asm (accelerator programs): relax,asm")
        p.add_argument("--dump-offloads", action="store_true",
                       help="print which operator went where and how it was rewritten")


def _add_input_options(p) -> None:
    p.add_argument("--inputs", metavar="FILE",
                   help="inputs: .npz, .npy, or an image for models with known preprocessing")
    p.add_argument("--text", help="text input, for language models with known preprocessing")
    p.add_argument("--fill-mode", choices=("zeros", "ones", "random"), default="random",
                   help="fill inputs when no --inputs is given (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Compile ONNX models for the nm GEMM accelerator, run them on "
                                 "its simulator and check them against ONNX Runtime.",
                     epilog="examples:\n  nm-tvmc targets\n  nm-tvmc compile model.onnx -o "
                            "model.tar\n  nm-tvmc run model.tar --print-top 5\n  nm-tvmc "
                            "validate model.onnx --per-layer\n\nexit codes: 0 success, 1 failure "
                            "(compile error, over tolerance), 2 bad usage or input file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=_EPILOGS[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("compile", "compile a model into an artifact file (one .tar)")
    _add_compile_options(p, with_output=True)
    p.set_defaults(func=cmd_compile)

    p = add("run", "run a compiled artifact on the simulator")
    p.add_argument("artifact", help="file written by `nm-tvmc compile`")
    _add_input_options(p)
    p.add_argument("-o", "--output", help="write outputs to this .npz")
    p.add_argument("--print-top", type=int, metavar="N", help="print the top N of each output")
    p.add_argument("--profile", action="store_true", help="print the per-layer report")
    p.set_defaults(func=cmd_run)

    p = add("validate", "compile, run on the simulator and in ONNX Runtime, compare")
    _add_compile_options(p, with_output=False)
    _add_input_options(p)
    p.add_argument("--rtol", type=float,
                   help="max normwise relative error (default 1e-5 for fp32 targets, 5e-2 for "
                        "bf16)")
    p.add_argument("--per-layer", action="store_true",
                   help="compare every accelerator layer with ONNX Runtime; report the first "
                        "that diverges")
    p.set_defaults(func=cmd_validate)

    p = add("profile", "print the per-layer report (cycles, MACs, utilization, energy)")
    _add_compile_options(p, with_output=False)
    p.set_defaults(func=cmd_profile)
    p.add_argument("--csv", help="also write the per-layer rows (and a total row) to this CSV")
    p.add_argument("--json", help="also write the full report (counters, energy) as JSON")
    p.add_argument("--plots", metavar="DIR",
                   help="write cycles.png, energy.png and roofline.png to this folder")
    _add_input_options(p)

    p = add("targets", "list the target presets and their parameters")
    p.add_argument("--json", action="store_true", help="print the full descriptions as JSON")
    p.set_defaults(func=cmd_targets)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("nm-tvm")
    except Exception:  # noqa: BLE001 (running from a checkout)
        return "unknown"


def _user_errors() -> tuple:
    """Exceptions that mean bad input (exit 2) and failures that are expected (exit 1)."""
    from nm_tvm.frontend import ModelLoadError
    from nm_tvm.passes import NotGemmOnlyError
    from nm_tvm.target.codegen import CodegenError
    from nm_tvm.target.hardware import HardwareConfigError

    return (ModelLoadError, HardwareConfigError), (NotGemmOnlyError, CodegenError)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    console, err_console = _consoles()
    try:
        import nm_tvm  # noqa: F401 (registers targets and the pipeline)

        usage_errors, failures = _user_errors()
        try:
            return args.func(args, console, err_console)
        except usage_errors as err:
            raise CliError(str(err).strip().splitlines()[0]) from err
        except failures as err:
            message = str(err).strip().splitlines()[0]
            if "not supported by the accelerator" in message:
                message += " (or pass --allow-host-fallback)"
            raise CliError(message, EXIT_FAIL) from err
    except CliError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 (an internal error: one line unless --debug)
        if args.debug:
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"{PROG} {args.command}: internal error: {type(err).__name__}: {first} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
