"""Model inputs for run / validate / profile: .npz / .npy files, images and text through a
pretrained model's preprocessing, or filled (zeros / ones / random)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import CliError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def fill_inputs(compiled, mode: str, seed: int = 0) -> dict:
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


def read_inputs(args, compiled, preprocess: str | None) -> dict:
    """Inputs from --inputs (.npz / .npy / image) or --text, else --fill-mode."""
    if getattr(args, "text", None) is not None:
        return preprocess_inputs(preprocess, "text", args.text, compiled.input_shapes)
    if not getattr(args, "inputs", None):
        return fill_inputs(compiled, getattr(args, "fill_mode", "random") or "random")
    return load_input_file(args.inputs, compiled.input_names, preprocess, compiled.input_shapes)


def load_input_file(spec, input_names: list[str], preprocess: str | None,
                    shapes: dict) -> dict:
    """One input dict from an .npz / .npy file or an image (through the model's preprocessing)."""
    path = Path(spec)
    if not path.is_file():
        raise CliError(f"input file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return preprocess_inputs(preprocess, "image", path, shapes)
    if suffix not in (".npz", ".npy"):
        raise CliError(f"cannot read inputs from '{path}': expected .npz, .npy or an image "
                       f"({', '.join(IMAGE_SUFFIXES)}); text goes in --text")
    try:
        if suffix == ".npy":
            if len(input_names) != 1:
                raise CliError(f"a .npy file gives one input; the model has "
                               f"{input_names}: use an .npz")
            return {input_names[0]: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise CliError(f"'{path}' is not an .npz archive")
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read inputs from '{path}' ({err}); expected .npz, .npy or an "
                       f"image ({', '.join(IMAGE_SUFFIXES)})") from None


def calibration_samples(specs: list[str], input_names: list[str], preprocess: str | None,
                        shapes: dict) -> list[dict]:
    """--calibrate FILE...: one sample per .npz / .npy / image, one per line of a .txt (text
    models: each line a sentence through the model's preprocessing)."""
    samples = []
    for spec in specs:
        path = Path(spec)
        if path.suffix.lower() == ".txt":
            if not path.is_file():
                raise CliError(f"calibration file '{path}' does not exist")
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
            lines = [ln for ln in lines if ln]
            if not lines:
                raise CliError(f"calibration file '{path}' has no non-empty line")
            samples += [preprocess_inputs(preprocess, "text", ln, shapes) for ln in lines]
        else:
            samples.append(load_input_file(path, input_names, preprocess, shapes))
    return samples


def preprocess_inputs(name: str | None, kind: str, value, shapes: dict) -> dict:
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
        want = shapes.get(key)
        if want is not None and tuple(arr.shape) != tuple(want):
            inputs[key] = pretrained.fit_shape(arr, want)
    return inputs
