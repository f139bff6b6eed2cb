"""Compiling a model under the command-line options: target, shapes, pass context, host
fallback and calibration (--calibrate FILE..., auto, none)."""
from __future__ import annotations

from .common import CliError, load_model_arg, pass_context, progress_instrument, spinner
from .inputs import calibration_samples


def _calibration(args, proto, preprocess, shapes):
    """The ``calibration`` argument of nm_tvm.compile for --calibrate (None: the default)."""
    specs = getattr(args, "calibrate", None)
    if not specs:
        return None
    if specs == ["auto"]:
        return "auto"
    if specs == ["none"]:
        return []
    if "auto" in specs or "none" in specs:
        raise CliError("--calibrate takes files, or one of 'auto' / 'none' alone")
    initializers = {i.name for i in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in initializers]
    return calibration_samples(specs, names, preprocess, shapes)


def compile_model(args, err_console, spec: str):
    """Compile ``spec`` under the options of ``args``; returns (compiled, proto, preprocess, name)."""
    import nm_tvm
    from nm_tvm.frontend import ModelLoadError

    nm_tvm.resolve_target(args.target)  # a bad target is reported before the model is read
    proto, default_shapes, preprocess, name = load_model_arg(spec)
    values = None
    if preprocess is not None:  # a pretrained model may fix inputs (silero-vad's sample rate)
        from nm_tvm.models import pretrained

        values = pretrained.load(preprocess).input_values or None
    shapes = dict(default_shapes or {})
    shapes.update(getattr(args, "input_shapes", None) or {})
    calibration = _calibration(args, proto, preprocess, shapes)
    with spinner(err_console, f"compiling {name} for {args.target}") as update:
        with pass_context(args, [progress_instrument(update)]):
            try:
                compiled = nm_tvm.compile(proto, target=args.target,
                                          input_shapes=shapes or None,
                                          strict=not args.allow_host_fallback,
                                          calibration=calibration, input_values=values)
            except ModelLoadError as err:
                raise CliError(_cli_wording(str(err))) from err
    if getattr(args, "ir_printer", None) is not None:
        args.ir_printer.check()
    return compiled, proto, preprocess, name


def _cli_wording(message: str) -> str:
    """The frontend's hint for a dynamic input names the Python argument; give the flag."""
    marker = "give its shape, e.g. input_shapes={'"
    if marker in message:
        head, tail = message.split(marker, 1)
        name = tail.split("'", 1)[0]
        return f"{head}give its shape with --input-shapes \"{name}:[1,...]\""
    return message
