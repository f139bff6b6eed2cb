"""The ``nm-tvmc`` argument parser and entry point: dispatch, exit codes, one-line errors."""
from __future__ import annotations

import argparse
import sys

from .cmd_compile import cmd_compile
from .cmd_run import cmd_profile, cmd_run
from .cmd_targets import cmd_targets
from .cmd_validate import cmd_validate
from .common import (EXIT_FAIL, EXIT_USAGE, PROG, ArgumentParser, CliError, consoles, csv_list,
                     positive_float, positive_int,
                     parse_input_shapes, parse_pass_config)

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
  nm-tvmc profile model.onnx --json report.json --plots plots/
  nm-tvmc profile zoo:bert_tiny --by-node --csv nodes.csv""",
    "targets": """examples:
  nm-tvmc targets
  nm-tvmc targets --json""",
}


def _add_compile_options(p, with_output: bool) -> None:
    from nm_tvm.target.tags import DEFAULT_TARGET

    p.add_argument("model", help="ONNX file, zoo:NAME (random-weight builder) or "
                                 "pretrained:NAME (installed real model)")
    p.add_argument("--model-format", choices=["onnx"],
                   help="the model's format (tvmc's flag; ONNX is the one frontend; default: "
                        "from the file, zoo: / pretrained: build ONNX)")
    p.add_argument("--target", default=DEFAULT_TARGET,
                   help="nm/<preset> (see `nm-tvmc targets`) or a hardware JSON file "
                        "(default: %(default)s)")
    p.add_argument("--input-shapes", type=parse_input_shapes, metavar="SHAPES",
                   help='static input shapes, e.g. "input:[1,3,224,224] mask:[1,128]"')
    p.add_argument("--pass-config", type=parse_pass_config, action="append", metavar="K=V",
                   help="a TVM PassContext config entry (repeatable)")
    p.add_argument("--disabled-pass", type=csv_list, action="append", metavar="PASS[,PASS]",
                   help="passes to skip, by name (e.g. nm.FoldScaleShift)")
    p.add_argument("--print-ir-after", type=csv_list, metavar="PASS[,PASS]",
                   help="print the module after passes with these names (fnmatch patterns, "
                        "e.g. 'nm.*')")
    p.add_argument("--calibrate", nargs="+", metavar="FILE",
                   help="fit the PWL tables to these inputs: .npz / .npy files, images, or a "
                        ".txt of sentences (one per line) for text models; 'auto' calibrates "
                        "on synthetic inputs, 'none' keeps the default ranges (default: "
                        "synthetic, widening the default ranges, for models with integer "
                        "inputs or approximated operators; else the default ranges)")
    p.add_argument("--allow-host-fallback", action="store_true",
                   help="run operators the accelerator does not support on the host CPU and "
                        "list them (default: strict, such operators are a compile error)")
    if with_output:
        p.add_argument("-o", "--output", default="module.tar",
                       help="artifact file to write (default: %(default)s)")
        p.add_argument("--dump-code", type=csv_list, action="append", metavar="FORMATS",
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
    parser = ArgumentParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Compile ONNX models for the nm GEMM accelerator, run them on "
                                 "its simulator and check them against ONNX Runtime.",
                     epilog="examples:\n  nm-tvmc targets\n  nm-tvmc compile model.onnx -o "
                            "model.tar\n  nm-tvmc run model.tar --print-top 5\n  nm-tvmc "
                            "validate model.onnx --per-layer\n\nexit codes: 0 success, 1 failure "
                            "(compile error, over tolerance), 2 bad usage or input file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_EPILOGS[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        # also after the command (errors say "rerun with --debug"); SUPPRESS keeps the
        # top-level value when it is not given here
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        return p

    p = add("compile", "compile a model into an artifact file (one .tar)")
    _add_compile_options(p, with_output=True)
    p.set_defaults(func=cmd_compile)

    p = add("run", "run a compiled artifact on the simulator")
    p.add_argument("artifact", help="file written by `nm-tvmc compile`")
    _add_input_options(p)
    p.add_argument("-o", "--output", "--outputs", dest="output",
                   help="write outputs to this .npz (--outputs as in tvmc)")
    p.add_argument("--print-top", type=positive_int, metavar="N", help="print the top N of each output")
    p.add_argument("--profile", action="store_true", help="print the per-layer report")
    p.add_argument("--print-time", action="store_true",
                   help="print host wall time per run (mean / median / max / min / std over "
                        "--repeat measurements of --number runs each, as tvmc) and the "
                        "simulated time at the target's clock")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                   help="measurements for --print-time (default 1)")
    p.add_argument("--number", type=positive_int, default=1, metavar="N",
                   help="runs per measurement for --print-time (default 1)")
    p.set_defaults(func=cmd_run)

    p = add("validate", "compile, run on the simulator and in ONNX Runtime, compare")
    _add_compile_options(p, with_output=False)
    _add_input_options(p)
    p.add_argument("--rtol", type=positive_float,
                   help="rounding part of the tolerance, relative to max |ORT output| (default "
                        "1e-5 for fp32 targets, 5e-2 for bf16); the fitted PWL tables' "
                        "propagated bound is added to it")
    p.add_argument("--per-layer", action="store_true",
                   help="compare every accelerator layer with ONNX Runtime; report the first "
                        "that diverges")
    p.set_defaults(func=cmd_validate)

    p = add("profile", "print the per-layer report (cycles, MACs, utilization, energy)")
    _add_compile_options(p, with_output=False)
    p.set_defaults(func=cmd_profile)
    p.add_argument("--csv", help="also write the per-layer rows (and a total row) to this CSV")
    p.add_argument("--by-node", action="store_true",
                   help="one row per source-model node (a decomposed LayerNorm or softmax "
                        "summed over its layers) in the table and the CSV")
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
    """Exceptions that mean bad input (exit 2), failures that are expected (exit 1), and the
    failure that --allow-host-fallback avoids."""
    from nm_tvm.frontend import ModelLoadError
    from nm_tvm.target.backend import NotGemmOnlyError
    from nm_tvm.target.codegen import CodegenError
    from nm_tvm.target.hardware import HardwareConfigError

    return (ModelLoadError, HardwareConfigError), (NotGemmOnlyError, CodegenError), NotGemmOnlyError


def _interrupted(err: BaseException) -> bool:
    """A KeyboardInterrupt, possibly re-raised by TVM's FFI as another exception type."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, KeyboardInterrupt) or "KeyboardInterrupt" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    console, err_console = consoles()
    try:
        try:
            return args.func(args, console, err_console)
        except (CliError, KeyboardInterrupt):
            raise
        except Exception as err:  # classified here: `targets` and --help never import TVM
            usage_errors, failures, host_would_run = _user_errors()
            if isinstance(err, usage_errors):
                raise CliError(str(err).strip().splitlines()[0]) from err
            if not isinstance(err, failures):
                raise
            message = str(err).strip().splitlines()[0]
            if isinstance(err, host_would_run) and getattr(err, "host_fallback_helps", True):
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
        if _interrupted(err):  # Ctrl-C inside a TVM pass arrives wrapped by the FFI
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"{PROG} {args.command}: internal error: {type(err).__name__}: {first} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAIL

