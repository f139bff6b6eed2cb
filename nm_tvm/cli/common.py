"""What every nm-tvmc command shares: exit codes, errors, consoles and progress, argument
types, loading a model and the pass context of the command-line options, loading artifacts
(compiling under those options is ``compiling.py``)."""
from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PROG = "nm-tvmc"


class CliError(Exception):
    """A one-line error for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- consoles
def consoles():
    from rich.console import Console

    out = Console(soft_wrap=True)
    if not out.is_terminal:  # files and pipes: wide tables, no wrapping
        out = Console(soft_wrap=True, width=180)
    return out, Console(stderr=True)


@contextlib.contextmanager
def spinner(err_console, text: str):
    """A spinner with elapsed time on stderr for a long single step (quiet when not a TTY)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task(text, total=None)
        yield lambda desc: progress.update(task, description=desc)


def progress_bar(err_console, text: str, total: int):
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


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive, finite number")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) instead of the usage block."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- model loading
def load_model_arg(spec: str):
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


def pass_context(args, extra_instruments=()):
    import tvm

    instruments = list(extra_instruments)
    if getattr(args, "print_ir_after", None):
        args.ir_printer = print_ir_after(args.print_ir_after)
        instruments.append(args.ir_printer)
    config = dict(args.pass_config or [])
    disabled = [p for item in (args.disabled_pass or []) for p in item]
    if disabled:  # TVM skips unknown names silently: a typo would disable nothing
        import difflib

        from nm_tvm.pipeline import known_pass_names
        from nm_tvm.target.hardware import load_preset

        known = known_pass_names(load_preset("fp32-16x16"))
        for name in disabled:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=3)
                nm = sorted(n for n in known if n.startswith("nm."))
                raise CliError(f"--disabled-pass: no pass is named '{name}'"
                               + (f"; did you mean {', '.join(close)}?" if close else "")
                               + f" (nm passes: {', '.join(nm)})")
    try:
        return tvm.transform.PassContext(config=config, disabled_pass=disabled,
                                         instruments=instruments)
    except Exception as err:  # unknown config keys are rejected by TVM
        raise CliError(f"bad --pass-config: {str(err).splitlines()[-1]}") from None


def print_ir_after(patterns: list[str]):
    import tvm

    @tvm.instrument.pass_instrument
    class PrintIRAfter:
        """Print the module after every pass whose name matches a pattern (fnmatch); remembers
        the passes that ran so that a pattern matching none can be reported."""

        def __init__(self):
            self.ran: list[str] = []
            self.matched: set[str] = set()

        def run_after_pass(self, mod, info):
            self.ran.append(info.name)
            hits = [p for p in patterns if fnmatch.fnmatchcase(info.name, p)]
            if hits:
                self.matched.update(hits)
                print(f"# IR after {info.name}")
                print(mod.script())

        def check(self) -> None:
            unmatched = [p for p in patterns if p not in self.matched]
            if unmatched:
                nm_passes = sorted({n for n in self.ran if n.startswith("nm.")})
                raise CliError(f"--print-ir-after {','.join(unmatched)} matched no pass that "
                               f"ran; the nm passes are {', '.join(nm_passes)} (TVM's have "
                               "their own names)")

    return PrintIRAfter()


def progress_instrument(update):
    import tvm

    @tvm.instrument.pass_instrument
    class Progress:
        def run_before_pass(self, _mod, info):
            if info.name.startswith("nm."):
                update(f"compiling: {info.name}")

    return Progress()


def host_note(compiled) -> str:
    if not compiled.host_ops:
        return "host ops: none (GEMM-only)"
    ops = sorted({op.split(":", 1)[1] for op in compiled.host_ops})
    return f"host ops ({len(compiled.host_ops)}, --allow-host-fallback): {', '.join(ops)}"


def load_artifact(path: str):
    from nm_tvm import artifact

    try:
        return artifact.load(path)
    except artifact.ArtifactError as err:
        raise CliError(str(err)) from None


def run_model(compiled, inputs: dict, err_console):
    from nm_tvm.runtime import InputError

    with spinner(err_console, "running on the simulator"):
        try:
            return compiled.run(inputs)
        except InputError as err:
            raise CliError(f"bad inputs: {err}") from None
