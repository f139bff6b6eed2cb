"""ONNX Resize (and the deprecated Upsample) as one constant matrix per resized axis.

Resize is separable: ONNX's reference resizes one axis after the other, each output index
a fixed weighted sum along that axis. So ``y = x x_d A_d`` (a product along axis d) for
every resized axis d, with ``A_d`` an (out_d, in_d) constant, and the accelerator runs each
product as a GEMM. The matrices are not re-derived from the specification's formulas: each
is ONNX's reference Resize (``onnx.reference``) evaluated on an identity basis with the
node's own attributes, so modes, rounding, cubic coefficients, antialias and exclude_outside
mean what ONNX says by construction. Only the per-axis scale / size / roi (the reference's
own resolution of scales, sizes, axes and keep_aspect_ratio_policy) is worked out here, and
the product of the matrices is checked against the reference on a random tensor before it
is used. tf_crop_and_resize writes extrapolation_value outside the input, which makes the map
affine: ``y = (x x_d A_d ...) + bias``.

Pure numpy / onnx (no TVM): the frontend turns the result into Relax matmuls, and the
nearest index maps below also say which nearest Resizes the backend's DMA view takes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The opset the probe models are built at: it has every attribute (axes, antialias,
# keep_aspect_ratio_policy, half_pixel_symmetric) the reference implements.
PROBE_OPSET = 19
# The reference is separable by construction, so the check only guards the resolution done
# here: float64 sums in another order differ by a few ulps (relative to the largest output).
_CHECK_RTOL = 1e-9


class ResizeFormError(ValueError):
    """A Resize the matrices cannot express; the message names the attribute or input."""


@dataclass(frozen=True)
class SeparableResize:
    """``y = x x_d matrices[d] ... + bias``: one (out_d, in_d) float64 matrix per resized axis
    (identity axes have none); ``bias`` (tf_crop_and_resize's extrapolation_value) has the
    output's shape with 1 on the unresized axes, or is None."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    matrices: dict[int, np.ndarray]
    bias: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The resize in numpy (float64): the check, and a reference for tests."""
        y = np.asarray(x, np.float64)
        for axis, matrix in self.matrices.items():
            y = np.moveaxis(np.tensordot(matrix, y, axes=([1], [axis])), 0, axis)
        return y if self.bias is None else y + self.bias

    def axis_order(self) -> list[int]:
        """The resized axes in the order that needs the fewest multiply-accumulates (a
        downscale first shrinks what the later products read)."""
        def macs(order):
            shape, total = list(self.in_shape), 0
            for axis in order:
                n_out, n_in = self.matrices[axis].shape
                total += math.prod(shape) // n_in * n_in * n_out
                shape[axis] = n_out
            return total
        return list(min(permutations(sorted(self.matrices)), key=macs, default=()))

    def nearest_indices(self) -> dict[int, np.ndarray] | None:
        """The source index of every output index, per resized axis, when every matrix picks
        one input element per output element (nearest); else None."""
        maps = {}
        for axis, matrix in self.matrices.items():
            if (self.bias is not None or not np.isin(matrix, (0.0, 1.0)).all()
                    or not (matrix.sum(axis=1) == 1.0).all()):
                return None
            maps[axis] = np.argmax(matrix, axis=1).astype(np.int64)
        return maps


# ------------------------------------------------------------------ node -> Resize-19 form
def attribute_values(attrs) -> dict:
    """name -> value of attribute protos (strings decoded)."""
    values = {}
    for attr in attrs:
        value = helper.get_attribute_value(attr)
        values[attr.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _attribute(node: onnx.NodeProto, name: str, default=None):
    return attribute_values(node.attribute).get(name, default)


def _legacy_attributes(node: onnx.NodeProto, scales: np.ndarray) -> list[onnx.AttributeProto]:
    """Upsample and Resize-10 as the Resize-19 attributes that compute them. Neither is in
    ONNX's reference (it lacks their rounding); ONNX Runtime reads both with asymmetric
    coordinates and nearest rounding down when upsampling, up when downsampling."""
    where = f"{node.op_type} node '{node.name}'"
    mode = _attribute(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise ResizeFormError(f"{where}: mode '{mode}' (supported: nearest, linear)")
    if node.op_type == "Upsample" and (scales < 1).any():
        raise ResizeFormError(f"{where}: scales {scales.tolist()} below 1 (Upsample only "
                              "enlarges)")
    attrs = [helper.make_attribute("mode", mode),
             helper.make_attribute("coordinate_transformation_mode", "asymmetric")]
    if mode == "nearest":
        if (scales < 1).any() and (scales > 1).any():
            raise ResizeFormError(
                f"{where}: nearest with both up- and downscaled axes (scales "
                f"{scales.tolist()}): opset 10 rounds each axis its own way, which no single "
                "nearest_mode expresses")
        attrs.append(helper.make_attribute("nearest_mode",
                                           "ceil" if (scales < 1).any() else "floor"))
    return attrs


def resize_operands(node: onnx.NodeProto, opset: int, inputs: list):
    """(attributes, roi, scales, sizes) of a Resize / Upsample node in Resize-19 form;
    ``inputs`` holds the node's constant inputs as arrays (None where absent or empty)."""
    inputs = [None if v is None or np.asarray(v).size == 0 else np.asarray(v)
              for v in list(inputs) + [None] * 4]
    if node.op_type == "Upsample" or opset < 11:
        scales = inputs[1] if inputs[1] is not None else _attribute(node, "scales")
        if scales is None:
            raise ResizeFormError(f"{node.op_type} node '{node.name}': no scales")
        scales = np.asarray(scales, np.float32).reshape(-1)
        return _legacy_attributes(node, scales), None, scales, None
    roi, scales, sizes = inputs[1:4]
    return (list(node.attribute), None if roi is None else roi.reshape(-1),
            None if scales is None else scales.astype(np.float32).reshape(-1),
            None if sizes is None else sizes.astype(np.int64).reshape(-1))


# ------------------------------------------------------------------ per-axis resolution
@dataclass(frozen=True)
class _AxisResize:
    scale: float
    size: int
    roi: tuple[float, float] | None
    probe: str  # "scales" | "sizes" | "aspect" (keep_aspect_ratio_policy, see _aspect_probe)
    requested: int | None = None  # the node's sizes entry (keep_aspect_ratio_policy)


def _resolve_axes(where: str, attrs: dict, in_shape, roi, scales, sizes):
    """Per axis the scale, output size and roi the reference uses (its ``_interpolate_nd``:
    scales or sizes on ``axes``, the common scale of keep_aspect_ratio_policy), and the
    constraining axis of that policy. Identity axes (which the reference skips) map to None."""
    rank = len(in_shape)
    axes = attrs.get("axes")
    if axes is None:
        axes = list(range(rank))
    else:
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in axes]
        if sorted(set(axes)) != sorted(axes) or not all(0 <= a < rank for a in axes):
            raise ResizeFormError(f"{where}: axes {list(attrs['axes'])} are not distinct axes "
                                  f"of a rank-{rank} input")
    if (scales is None) == (sizes is None):
        raise ResizeFormError(f"{where}: give exactly one of the inputs 'scales' and 'sizes'")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise ResizeFormError(f"{where}: {'scales' if scales is not None else 'sizes'} has "
                              f"{len(given)} entries for {len(axes)} axes")
    full_roi = None
    if roi is not None:
        if len(roi) != 2 * len(axes):
            raise ResizeFormError(f"{where}: roi has {len(roi)} entries for {len(axes)} axes")
        full_roi = [0.0] * rank + [1.0] * rank
        for i, a in enumerate(axes):
            full_roi[a], full_roi[rank + a] = float(roi[i]), float(roi[len(axes) + i])
    scale = [1.0] * rank
    size = list(in_shape)
    probe = "scales" if scales is not None else "sizes"
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    constraining = None
    if scales is not None:
        for i, a in enumerate(axes):
            scale[a] = float(scales[i])
            size[a] = int(np.float64(scales[i]) * in_shape[a])
    else:
        ratios = {a: int(sizes[i]) / in_shape[a] for i, a in enumerate(axes)}
        if policy == "stretch":
            for a in axes:
                scale[a], size[a] = ratios[a], int(sizes[axes.index(a)])
        elif policy in ("not_larger", "not_smaller"):
            pick = min if policy == "not_larger" else max
            constraining = pick(axes, key=lambda a: ratios[a])
            common = ratios[constraining]
            for a in axes:
                scale[a], size[a] = common, int(common * in_shape[a] + 0.5)
            probe = "aspect"
        else:
            raise ResizeFormError(f"{where}: keep_aspect_ratio_policy '{policy}'")
    if any(s <= 0 for s in size):
        raise ResizeFormError(f"{where}: output shape {tuple(size)} has an empty axis")
    plan = {}
    for a in range(rank):
        axis_roi = None if full_roi is None else (full_roi[a], full_roi[rank + a])
        if (math.isclose(scale[a], 1.0) and size[a] == in_shape[a]
                and (axis_roi is None or (math.isclose(axis_roi[0], 0.0)
                                          and math.isclose(axis_roi[1], 1.0)))):
            plan[a] = None
        else:
            requested = int(sizes[axes.index(a)]) if probe == "aspect" else None
            plan[a] = _AxisResize(scale[a], size[a], axis_roi, probe, requested)
    return plan, tuple(size), constraining, axes


# ------------------------------------------------------------------ the reference, as probes
def _reference(attrs, x: np.ndarray, roi=None, scales=None, sizes=None) -> np.ndarray:
    """ONNX's reference Resize on ``x`` (float64, so the matrix entries are not rounded)."""
    from onnx.reference import ReferenceEvaluator

    names, inits = ["x"], []
    for name, value, dtype in (("roi", roi, np.float32), ("scales", scales, np.float32),
                               ("sizes", sizes, np.int64)):
        if value is None:
            names.append("")
        else:
            names.append(name)
            inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Resize", names, ["y"])
    node.attribute.extend(attrs)
    graph = helper.make_graph(
        [node], "resize_probe", [helper.make_tensor_value_info("x", TensorProto.DOUBLE,
                                                               x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PROBE_OPSET)])
    return ReferenceEvaluator(model).run(None, {"x": x.astype(np.float64)})[0]


def _without(attrs, *names):
    return [a for a in attrs if a.name not in names]


def _axis_matrix(attrs, n_in: int, axis: _AxisResize, scale_input, aspect_partner,
                 affine: bool) -> np.ndarray:
    """(out, in) matrix of one axis: the reference on a 2-D input whose rows are the identity
    basis (an unresized axis) and whose columns are the resized axis, given the scale
    (``scale_input``: the node's own float32) or the size that reproduces this axis."""
    roi = None if axis.roi is None else [0.0, axis.roi[0], 1.0, axis.roi[1]]
    plain = _without(attrs, "axes", "keep_aspect_ratio_policy")

    def probe(basis):
        if axis.probe == "scales":
            return _reference(plain, basis, roi, scales=[1.0, scale_input])
        if axis.probe == "sizes" or axis.size / n_in == axis.scale:
            return _reference(plain, basis, roi, sizes=[n_in, axis.size])
        return _aspect_probe(attrs, basis, axis, *aspect_partner)

    response = probe(np.eye(n_in))
    if affine:  # tf_crop_and_resize: extrapolated outputs hold the value, not a weight
        response = response - probe(np.zeros((n_in, n_in)))
    if response.shape != (n_in, axis.size):
        raise ResizeFormError(f"the reference resized an axis of {n_in} to "
                              f"{response.shape[1]}, expected {axis.size}")
    return response.T.copy()


def _aspect_probe(attrs, basis, axis: _AxisResize, n_partner: int, partner_size: int):
    """keep_aspect_ratio_policy with a common scale no single-axis size reproduces: a 3-D
    probe whose middle axis is the constraining axis (same input and requested size, so the
    same common scale), resized first over constant data. Its first output row carries the
    basis times that row's weight sum (1 for nearest and linear; the reference's float32
    cubic weights sum to 1 only within rounding), which a 2-D probe of the partner alone
    computes the same way and which is divided out."""
    n_in = basis.shape[0]
    x = np.broadcast_to(basis[:, None, :], (n_in, n_partner, n_in))
    roi = None if axis.roi is None else [0.0, axis.roi[0], 1.0, axis.roi[1]]
    probe_attrs = _without(attrs, "axes") + [helper.make_attribute("axes", [1, 2])]
    out = _reference(probe_attrs, np.ascontiguousarray(x), roi,
                     sizes=[partner_size, axis.requested])
    weight_sum = _reference(_without(attrs, "axes", "keep_aspect_ratio_policy"),
                            np.ones((1, n_partner)), None if roi is None else [0, 0, 1, 1],
                            sizes=[1, partner_size])[0, 0]
    return out[:, 0, :] / weight_sum


def separable_resize(node: onnx.NodeProto, opset: int, in_shape, inputs: list) -> SeparableResize:
    """The per-axis matrices of a Resize / Upsample node on an input of ``in_shape``;
    ``inputs`` are its constant inputs (roi, scales, sizes as arrays, None where absent)."""
    where = f"{node.op_type} node '{node.name}'"
    in_shape = tuple(int(d) for d in in_shape)
    attrs, roi, scales, sizes = resize_operands(node, opset, inputs)
    named = attribute_values(attrs)
    mode = named.get("coordinate_transformation_mode", "half_pixel")
    if mode == "tf_half_pixel_for_nn":
        raise ResizeFormError(f"{where}: coordinate_transformation_mode 'tf_half_pixel_for_nn' "
                              "is not in ONNX's reference Resize (removed in opset 18)")
    if named.get("antialias") and named.get("mode", "nearest") == "nearest":
        raise ResizeFormError(f"{where}: antialias with mode 'nearest' (ONNX defines "
                              "antialias for linear and cubic)")
    plan, out_shape, constraining, axes = _resolve_axes(where, named, in_shape, roi, scales,
                                                        sizes)
    if "axes" in named:  # the reference takes non-negative axes only
        attrs = _without(attrs, "axes") + [helper.make_attribute("axes", axes)]
    affine = mode == "tf_crop_and_resize"
    partner = None
    if constraining is not None:
        partner = (in_shape[constraining], int(sizes[axes.index(constraining)]))
    matrices = {}
    try:
        for a, axis in plan.items():
            if axis is not None:
                scale_input = None if scales is None else scales[axes.index(a)]
                matrices[a] = _axis_matrix(attrs, in_shape[a], axis, scale_input, partner,
                                           affine)
        # The whole node, on the resized axes only (unresized ones cut to 1: identities).
        small_in = tuple(d if plan[a] is not None else 1 for a, d in enumerate(in_shape))
        small_sizes = None if sizes is None else np.array(
            [out_shape[a] if plan[a] is not None else 1 for a in axes]
            if constraining is None else
            [int(sizes[i]) if plan[a] is not None else 1 for i, a in enumerate(axes)])
        whole = _reference(attrs, np.zeros(small_in), roi, scales, small_sizes)
        bias = whole if affine and whole.any() else None
        x = np.random.default_rng(0).standard_normal(small_in)
        expected = _reference(attrs, x, roi, scales, small_sizes)
    except ResizeFormError as err:
        raise ResizeFormError(f"{where}: {err}") from None
    except Exception as err:  # noqa: BLE001 -- the reference refuses the form: say so
        raise ResizeFormError(f"{where}: ONNX's reference Resize rejects these attributes "
                              f"({type(err).__name__}: {err})") from None
    small = SeparableResize(small_in, expected.shape, matrices, bias)
    got = small.apply(x)
    if got.shape != expected.shape or not np.allclose(
            got, expected, rtol=0, atol=_CHECK_RTOL * max(1.0, np.abs(expected).max())):
        raise ResizeFormError(f"{where}: the per-axis matrices do not reproduce ONNX's "
                              "reference Resize (not separable)")
    if expected.shape != tuple(o if plan[a] is not None else 1
                               for a, o in enumerate(out_shape)):
        raise ResizeFormError(f"{where}: the reference's output shape {expected.shape} "
                              f"differs from the resolved {out_shape}")
    return SeparableResize(in_shape, out_shape, matrices, bias)


# ------------------------------------------------------------------ the DMA view's reading
# Source coordinate of output index o for each coordinate_transformation_mode, as TVM's
# resize2d (topi) reads its attributes (float32, then rounded and clamped to the input): the
# backend's nearest DMA view computes its index maps with these.
_SOURCE_COORD = {
    "half_pixel": lambda o, n_in, n_out: (o + 0.5) * (n_in / n_out) - 0.5,
    "pytorch_half_pixel": lambda o, n_in, n_out: ((o + 0.5) * (n_in / n_out) - 0.5
                                                  if n_out > 1 else 0 * o),
    "align_corners": lambda o, n_in, n_out: (o * ((n_in - 1) / (n_out - 1))
                                             if n_out > 1 else 0 * o),
    "asymmetric": lambda o, n_in, n_out: o * (n_in / n_out),
    "tf_half_pixel_for_nn": lambda o, n_in, n_out: (o + 0.5) * (n_in / n_out),
}
_ROUND = {
    "round": lambda x: np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5)),  # half away
    "round_prefer_floor": lambda x: np.ceil(x - 0.5),
    "round_prefer_ceil": lambda x: np.floor(x + 0.5),
    "floor": lambda x: np.floor(x + 1e-5),
    "ceil": lambda x: np.ceil(x - 1e-5),
}


def nearest_source_index(n_in: int, n_out: int, mode: str, rounding: str) -> np.ndarray | None:
    """The input index each output index of one axis reads under resize2d's nearest
    attributes (None: a mode not handled)."""
    if mode not in _SOURCE_COORD:
        return None
    rounding = rounding or ("round" if mode == "align_corners" else "floor")
    if rounding not in _ROUND:
        return None
    o = np.arange(n_out, dtype=np.float32)
    coord = _SOURCE_COORD[mode](o, np.float32(n_in), np.float32(n_out)).astype(np.float32)
    return np.clip(_ROUND[rounding](coord), 0, n_in - 1).astype(np.int64)


def strided_axis_map(index: np.ndarray) -> tuple[int, int, int] | None:
    """``(up, down, offset)`` with ``index[o] == offset + (o // up) * down`` (one of up, down
    is 1), or None when the map is no such repeat or stride."""
    n_out = len(index)
    runs = np.flatnonzero(np.diff(index)) + 1  # where the source index changes
    up = int(runs[0]) if len(runs) else n_out
    if n_out % up:
        return None
    steps = np.diff(index[::up])
    down = int(steps[0]) if len(steps) else 1
    if down < 1 or (up > 1 and down > 1):
        return None
    offset = int(index[0])
    expect = offset + (np.arange(n_out) // up) * down
    return (up, down, offset) if np.array_equal(index, expect) else None
