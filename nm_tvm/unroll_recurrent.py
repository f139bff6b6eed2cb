"""Unroll ONNX LSTM / GRU / RNN nodes into plain ONNX nodes over the static sequence length.

TVM's ONNX importer has no recurrent converters, and the accelerator runs GEMMs, DMA views and
elementwise tables, not loops. Once input shapes are static a recurrence is a fixed chain of
steps, so each node is rewritten here, before TVM's import, into operators the accelerator
already runs. The input projection ``X W^T`` (plus both biases, summed once) is not recurrent:
it is one MatMul over every time step and both directions; each step then adds ``h R^T``, applies
the gate activations and updates the state. Weights are rearranged once with numpy (transposed,
biases folded) and stored as initializers. Emitted nodes are named after the source node
(``<node>/step<t>/gates``, ``<node>/reverse/step<t>/...`` in a bidirectional one), so reports name
layers as the source model does.

Forms that cannot be unrolled into those operators (sequence lengths that vary per batch entry,
an activation without a supported equivalent, weights computed at run time) raise
:class:`UnrollError` naming the node, its operator and the attribute; the frontend raises it
as its ``ModelLoadError`` (this module stays below the frontend: pure ONNX and numpy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

RECURRENT_OPS = ("LSTM", "GRU", "RNN")


@dataclass(frozen=True)
class _Cell:
    """What differs between the three recurrent operators."""
    gates: int  # gate blocks in W / R / B
    activations: tuple[str, ...]  # the default activation per role (f, g, h)
    attributes: frozenset  # attributes the unroll understands
    inputs: tuple[str, ...]  # ONNX input names by position (for messages)


_COMMON_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                 "hidden_size", "layout", "output_sequence"}  # output_sequence: opset 1 only
_CELLS = {
    "LSTM": _Cell(4, ("Sigmoid", "Tanh", "Tanh"), frozenset(_COMMON_ATTRS | {"input_forget"}),
                  ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")),
    "GRU": _Cell(3, ("Sigmoid", "Tanh"), frozenset(_COMMON_ATTRS | {"linear_before_reset"}),
                 ("X", "W", "R", "B", "sequence_lens", "initial_h")),
    "RNN": _Cell(1, ("Tanh",), frozenset(_COMMON_ATTRS),
                 ("X", "W", "R", "B", "sequence_lens", "initial_h")),
}

# Activation names (ONNX spells them in CamelCase; ONNX Runtime matches them in any case) ->
# (takes alpha, takes beta, default alpha, default beta). Defaults are those of the ONNX
# operator of the same name, which ONNX Runtime applies when the lists run short; Affine and
# ScaledTanh have none it agrees with (it takes 0), so their values must be given.
_ACTIVATIONS = {
    "sigmoid": (False, False, 0.0, 0.0), "tanh": (False, False, 0.0, 0.0),
    "relu": (False, False, 0.0, 0.0), "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0), "leakyrelu": (True, False, 0.01, 0.0),
    "elu": (True, False, 1.0, 0.0), "hardsigmoid": (True, True, 0.2, 0.5),
    "affine": (True, True, None, None), "scaledtanh": (True, True, None, None),
}
_NO_EQUIVALENT = {"thresholdedrelu": "ThresholdedRelu (a step at alpha) has no supported "
                                     "continuous equivalent"}


class UnrollError(ValueError):
    """A recurrent node in a form the unroll cannot express (the message names the node)."""


def _node_name(node) -> str:
    """The node's name, or (unnamed) its first output that is not omitted."""
    return node.name or next((o for o in node.output if o), node.op_type)


def _error(node, what: str) -> UnrollError:
    return UnrollError(f"{node.op_type} node '{_node_name(node)}': {what}")


@dataclass(frozen=True)
class _Activation:
    name: str  # lower case key of _ACTIVATIONS
    alpha: float
    beta: float


class _Emitter:
    """Appends nodes and initializers, with names unique in the graph."""

    def __init__(self, tensors: set, node_names: set, opset: int):
        self.tensors, self.node_names = tensors, node_names  # names taken, two namespaces
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []

    @staticmethod
    def _unique(name: str, taken: set) -> str:
        candidate, k = name, 1
        while candidate in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate)
        return candidate

    def fresh(self, name: str) -> str:
        """A tensor name not yet in the graph."""
        return self._unique(name, self.tensors)

    def const(self, name: str, value) -> str:
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list, name: str, output: str | None = None,
           **attrs) -> str:
        """One node named ``name``; returns its output (``output`` when given: a node output
        of the source model)."""
        out = output or self.fresh(name)
        self.nodes.append(helper.make_node(op_type, inputs, [out],
                                           name=self._unique(name, self.node_names), **attrs))
        return out

    def slice(self, x: str, starts, ends, axes, name: str) -> str:
        if self.opset < 10:  # bounds became inputs in opset 10
            return self.op("Slice", [x], name, starts=list(starts), ends=list(ends),
                           axes=list(axes))
        bounds = [self.const(f"{name}/{what}", np.array(v, np.int64))
                  for what, v in (("starts", starts), ("ends", ends), ("axes", axes))]
        return self.op("Slice", [x, *bounds], name)

    def clip(self, x: str, bound: float, name: str) -> str:
        if self.opset < 11:  # min / max became inputs in opset 11
            return self.op("Clip", [x], name, min=-bound, max=bound)
        return self.op("Clip", [x, self.const(f"{name}/min", np.float32(-bound)),
                                self.const(f"{name}/max", np.float32(bound))], name)

    def reshape(self, x: str, shape, name: str, output: str | None = None) -> str:
        return self.op("Reshape", [x, self.const(f"{name}/shape", np.array(shape, np.int64))],
                       name, output)

    def concat(self, parts: list, axis: int, name: str, output: str | None = None) -> str:
        if len(parts) == 1:
            return parts[0] if output is None else self.op("Identity", parts, name, output)
        return self.op("Concat", parts, name, output, axis=axis)

    def activation(self, act: _Activation, x: str, name: str) -> str:
        if act.name == "affine":  # alpha * x + beta
            scaled = self.op("Mul", [x, self.const(f"{name}/alpha", np.float32(act.alpha))],
                             f"{name}/scale")
            return self.op("Add", [scaled, self.const(f"{name}/beta", np.float32(act.beta))],
                           name)
        if act.name == "scaledtanh":  # alpha * tanh(beta * x)
            inner = self.op("Mul", [x, self.const(f"{name}/beta", np.float32(act.beta))],
                            f"{name}/scale_in")
            tanh = self.op("Tanh", [inner], f"{name}/tanh")
            return self.op("Mul", [tanh, self.const(f"{name}/alpha", np.float32(act.alpha))],
                           name)
        op_type = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign",
                   "softplus": "Softplus", "leakyrelu": "LeakyRelu", "elu": "Elu",
                   "hardsigmoid": "HardSigmoid"}[act.name]
        attrs = {"leakyrelu": dict(alpha=act.alpha), "elu": dict(alpha=act.alpha),
                 "hardsigmoid": dict(alpha=act.alpha, beta=act.beta)}.get(act.name, {})
        return self.op(op_type, [x], name, **attrs)


def _constants(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs (the values a rewrite may read)."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute:
            attr = node.attribute[0]
            value = helper.get_attribute_value(attr)
            values[node.output[0]] = (numpy_helper.to_array(value) if attr.name == "value"
                                      else np.asarray(value))
    return values


def _activations(node, attrs: dict, cell: _Cell, directions: int) -> list[list[_Activation]]:
    """The activation of each role (f, g, h) for each direction, alpha / beta consumed in
    order by the activations that take them (ONNX's rule)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in attrs.get("activations", [])]
    per_direction = len(cell.activations)
    if not names:
        names = list(cell.activations) * directions
    if len(names) != per_direction * directions:
        raise _error(node, f"attribute 'activations' lists {len(names)} functions; "
                           f"{per_direction} per direction ({directions}) expected")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    parsed = []
    for name in names:
        key = name.lower()
        if key in _NO_EQUIVALENT:
            raise _error(node, f"attribute 'activations': {_NO_EQUIVALENT[key]}")
        if key not in _ACTIVATIONS:
            raise _error(node, f"attribute 'activations': '{name}' is not supported (supported: "
                               f"{', '.join(sorted(_ACTIVATIONS))})")
        takes_alpha, takes_beta, alpha, beta = _ACTIVATIONS[key]
        if takes_alpha and alphas:
            alpha = float(alphas.pop(0))
        if takes_beta and betas:
            beta = float(betas.pop(0))
        if alpha is None or beta is None:  # no ONNX default to fall back on
            raise _error(node, f"attribute 'activations': {name} needs both activation_alpha "
                               "and activation_beta values (it has no ONNX default)")
        parsed.append(_Activation(key, alpha, beta))
    return [parsed[d * per_direction:(d + 1) * per_direction] for d in range(directions)]


class _Unroller:
    """One recurrent node's rewrite (see the module docstring)."""

    def __init__(self, node, shapes: dict, constants: dict, used: set, emit: _Emitter):
        self.node, self.emit, self.used = node, emit, used
        self.cell = _CELLS[node.op_type]
        self.base = _node_name(node)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        unknown = sorted(set(attrs) - self.cell.attributes)
        if unknown:
            raise _error(node, f"attribute '{unknown[0]}' is not supported")
        self.attrs = attrs
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _error(node, f"attribute 'direction' = '{direction}' is not an ONNX direction")
        self.direction = direction
        self.layout = int(attrs.get("layout", 0))
        if self.layout not in (0, 1):
            raise _error(node, f"attribute 'layout' = {self.layout} (ONNX defines 0 and 1)")
        inputs = list(node.input) + [""] * (len(self.cell.inputs) - len(node.input))
        self.inputs = dict(zip(self.cell.inputs, inputs))
        x_shape = shapes.get(self.inputs["X"])
        if x_shape is None or len(x_shape) != 3:
            raise _error(node, f"input X ('{self.inputs['X']}') needs a static 3-D shape to be "
                               "unrolled")
        self.seq, self.batch = (x_shape[0], x_shape[1]) if self.layout == 0 else \
            (x_shape[1], x_shape[0])
        self.constants = constants
        self.weights = {k: self._constant(k) for k in ("W", "R", "B", "P")}
        w, r = self.weights["W"], self.weights["R"]
        if w is None or r is None:
            raise _error(node, "inputs W and R must be present")
        self.dirs = 2 if direction == "bidirectional" else 1
        self.hidden = int(attrs.get("hidden_size", r.shape[-1]))
        gh = self.cell.gates * self.hidden
        if (w.shape != (self.dirs, gh, x_shape[2])
                or r.shape != (self.dirs, gh, self.hidden)):
            raise _error(node, f"W {w.shape} / R {r.shape} do not match direction "
                               f"'{direction}', hidden_size {self.hidden} and X {x_shape}")
        self._check_sequence_lens()
        self.acts = _activations(node, attrs, self.cell, self.dirs)
        self.clip_bound = float(attrs["clip"]) if "clip" in attrs else None

    def _constant(self, role: str):
        """The value of a weight input (W, R, B, P), or None when the input is absent."""
        name = self.inputs.get(role, "")
        if not name:
            return None
        if name not in self.constants:
            raise _error(self.node, f"input {role} ('{name}') must be a constant (an "
                                    "initializer): the weights are rearranged before import")
        return np.asarray(self.constants[name], np.float32)

    def _check_sequence_lens(self) -> None:
        name = self.inputs["sequence_lens"]
        if not name:
            return
        lens = self.constants.get(name)
        why = "varying lengths need masking, which the unrolled steps do not do"
        if lens is None:
            raise _error(self.node, f"input sequence_lens ('{name}') is computed at run time; "
                                    "only a constant equal to the sequence length for every "
                                    f"batch entry is supported ({why})")
        lens = np.asarray(lens).reshape(-1)
        if lens.size != self.batch or np.any(lens != self.seq):
            raise _error(self.node, f"input sequence_lens = {lens.tolist()} differs from the "
                                    f"sequence length {self.seq} for some batch entry ({why})")

    # ---------------------------------------------------------------- shapes and names
    def _name(self, d: int, t: int | None, what: str) -> str:
        parts = [self.base]
        if self.dirs == 2:
            parts.append(("forward", "reverse")[d])
        if t is not None:
            parts.append(f"step{t}")
        return "/".join(parts + [what])

    def _state_shape(self):
        """A per-direction state keeps a length-1 axis where the outputs' direction axis is:
        (1, batch, hidden) for layout 0, (batch, 1, hidden) for layout 1."""
        return (1, self.batch, self.hidden) if self.layout == 0 else (self.batch, 1, self.hidden)

    def _initial_state(self, role: str, d: int) -> str | None:
        """Direction d's initial state (state shape), or None when it is absent or zero."""
        name = self.inputs.get(role, "")
        if not name:
            return None
        if name in self.constants:
            value = np.asarray(self.constants[name], np.float32)
            part = np.take(value, [d], axis=self.layout)
            if not part.any():
                return None
            return self.emit.const(self._name(d, None, role), part)
        if self.dirs == 1:
            return name
        return self.emit.slice(name, [d], [d + 1], [self.layout], self._name(d, None, role))

    def _gate_columns(self, d: int, first: int, count: int) -> tuple[int, int]:
        """Columns of gates first .. first+count-1 of direction d in the input projection."""
        start = (d * self.cell.gates + first) * self.hidden
        return start, start + count * self.hidden

    # ---------------------------------------------------------------- the rewrite
    def rewrite(self) -> None:
        w = self.weights["W"]
        gh = self.cell.gates * self.hidden
        b = self.weights["B"]
        b = np.zeros((self.dirs, 2 * gh), np.float32) if b is None else b
        w_bias, r_bias = b[:, :gh], b[:, gh:]
        self.recurrent_bias = np.zeros((self.dirs, gh), np.float32)
        if self.node.op_type == "GRU" and self.attrs.get("linear_before_reset", 0):
            # R_bh stays inside r * (h R_h^T + R_bh); the other recurrent biases fold
            self.recurrent_bias[:, 2 * self.hidden:] = r_bias[:, 2 * self.hidden:]
            r_bias = r_bias.copy()
            r_bias[:, 2 * self.hidden:] = 0.0
        # one projection of every step and both directions: X (.., input) @ (input, dirs*gh)
        projection = self.emit.op(
            "MatMul", [self.inputs["X"], self.emit.const(
                f"{self.base}/W_T", np.concatenate([w[d].T for d in range(self.dirs)], axis=1))],
            f"{self.base}/input_projection")
        bias = (w_bias + r_bias).reshape(-1)
        if bias.any():
            projection = self.emit.op("Add", [projection, self.emit.const(
                f"{self.base}/bias", bias)], f"{self.base}/input_projection/bias")
        self.projection = projection
        outputs = [o if o in self.used else "" for o in self.node.output]
        outputs += [""] * (3 - len(outputs))
        ys, y_hs, y_cs = [], [], []
        for d in range(self.dirs):
            reverse = self.direction == "reverse" or d == 1
            hs, h_last, c_last = self._direction(d, reverse)
            ys.append(hs)
            y_hs.append(h_last)
            y_cs.append(c_last)
        if outputs[0]:
            self._sequence_output(ys, outputs[0])
        if outputs[1]:
            self.emit.concat(y_hs, self.layout, f"{self.base}/Y_h", outputs[1])
        if outputs[2]:
            self.emit.concat(y_cs, self.layout, f"{self.base}/Y_c", outputs[2])

    def _sequence_output(self, per_direction: list, output: str) -> None:
        """Y: (seq, dirs, batch, hidden), or (batch, seq, dirs, hidden) for layout 1."""
        shape = ((self.seq, 1, self.batch, self.hidden) if self.layout == 0
                 else (self.batch, self.seq, 1, self.hidden))
        parts = []
        for d, hs in enumerate(per_direction):
            joined = self.emit.concat(hs, self.layout, self._name(d, None, "Y"))
            name = self._name(d, None, "Y/direction_axis")
            parts.append(self.emit.reshape(joined, shape, name,
                                           output if self.dirs == 1 else None))
        if self.dirs == 2:
            self.emit.op("Concat", parts, f"{self.base}/Y", output, axis=self.layout + 1)

    def _direction(self, d: int, reverse: bool):
        """Every step of direction d; returns (h of each time step in time order, last h,
        last c)."""
        h = self._initial_state("initial_h", d)
        c = self._initial_state("initial_c", d) if self.node.op_type == "LSTM" else None
        step = {"LSTM": self._lstm_step, "GRU": self._gru_step, "RNN": self._rnn_step}[
            self.node.op_type]
        order = range(self.seq - 1, -1, -1) if reverse else range(self.seq)
        hs = {}
        for t in order:
            h, c = step(d, t, h, c)
            hs[t] = h
        return [hs[t] for t in range(self.seq)], h, c

    def _step_input(self, d: int, t: int, first: int, count: int, what: str) -> str:
        """Time step t of gates first .. first+count-1 of the input projection (state shape)."""
        lo, hi = self._gate_columns(d, first, count)
        return self.emit.slice(self.projection, [t, lo], [t + 1, hi], [self.layout, 2],
                               self._name(d, t, what))

    def _recurrent(self, d: int, t: int, h: str, first: int, count: int, what: str,
                   residual: str | None = None, bias: bool = False) -> str:
        """``h R^T`` for gates first .. first+count-1 (+ their recurrent bias, + residual)."""
        cols = slice(first * self.hidden, (first + count) * self.hidden)
        r_t = self.weights["R"][d][cols].T
        name = self._name(d, t, what)  # the GEMM's: the layer is named after it
        out = self.emit.op("MatMul", [h, self.emit.const(f"{name}/R_T", r_t)], name)
        if bias and self.recurrent_bias[d][cols].any():
            out = self.emit.op("Add", [out, self.emit.const(
                f"{name}/R_bias", self.recurrent_bias[d][cols])], f"{name}/bias")
        if residual is not None:
            out = self.emit.op("Add", [out, residual], f"{name}/add_input")
        return out

    def _gates(self, pre: str, first: int, count: int, d: int, t: int, what: str) -> str:
        """Gates first .. first+count-1 of a pre-activation holding consecutive gates."""
        return self.emit.slice(pre, [first * self.hidden], [(first + count) * self.hidden], [2],
                               self._name(d, t, what))

    def _clip_block(self, pre: str, d: int, t: int, what: str) -> str:
        """``clip`` applied to a block of gates before they are sliced apart: one Clip per
        step, and the slices keep it a table of its own (see :meth:`_activate`)."""
        if self.clip_bound is None:
            return pre
        return self.emit.clip(pre, self.clip_bound, self._name(d, t, f"{what}/clip"))

    def _activate(self, act: _Activation, x: str, d: int, t: int, what: str,
                  clipped: bool = False) -> str:
        """``act(clip(x))``. A Clip feeding the activation directly would be fused with it into
        one PWL table (passes/linearize.py fuses elementwise chains of one tensor) whose kinks
        at +-clip the table fitter does not bound; the activation therefore reads the clipped
        values through a (batch, hidden) view, which ends the chain: the Clip stays an exact
        table and the activation a smooth one."""
        if self.clip_bound is None or clipped:
            return self.emit.activation(act, x, self._name(d, t, what))
        bounded = self.emit.clip(x, self.clip_bound, self._name(d, t, f"{what}/clip"))
        view = self.emit.reshape(bounded, (self.batch, self.hidden),
                                 self._name(d, t, f"{what}/clip_view"))
        out = self.emit.activation(act, view, self._name(d, t, f"{what}/view"))
        return self.emit.reshape(out, self._state_shape(), self._name(d, t, what))

    def _peephole(self, x: str, c: str | None, k: int, d: int, t: int, what: str) -> str:
        """x + P_k * c (P's blocks are i, o, f), when the peephole and the state are nonzero."""
        p = self.weights["P"]
        if p is None or c is None or not p[d][k * self.hidden:(k + 1) * self.hidden].any():
            return x
        name = self._name(d, t, f"{what}/peephole")
        weight = self.emit.const(f"{name}/P", p[d][k * self.hidden:(k + 1) * self.hidden])
        return self.emit.op("Add", [x, self.emit.op("Mul", [c, weight], f"{name}/mul")], name)

    def _lstm_step(self, d: int, t: int, h: str | None, c: str | None):
        f_act, g_act, h_act = self.acts[d]
        emit = self.emit
        pre = self._step_input(d, t, 0, 4, "input")
        if h is not None:
            pre = self._recurrent(d, t, h, 0, 4, "gates", residual=pre)
        p = self.weights["P"]
        # peepholes add to i, f, o after the slicing, so clip follows them per gate
        block = p is None or not p[d].any()
        if block:
            pre = self._clip_block(pre, d, t, "gates")

        def gate(k, what, state, act):  # W's gate order i, o, f, c; P's i, o, f
            x = self._peephole(self._gates(pre, k, 1, d, t, f"{what}_pre"), state, k, d, t,
                               f"{what}_pre")
            return self._activate(act, x, d, t, what, clipped=block)

        i = gate(0, "i", c, f_act)
        if self.attrs.get("input_forget", 0):  # coupled: f = 1 - i
            f = emit.op("Sub", [emit.const(self._name(d, t, "one"), np.float32(1.0)), i],
                        self._name(d, t, "f"))
        else:
            f = gate(2, "f", c, f_act)
        g = gate(3, "g", None, g_act)
        c_new = emit.op("Mul", [i, g], self._name(d, t, "i_g"))
        if c is not None:
            c_new = emit.op("Add", [emit.op("Mul", [f, c], self._name(d, t, "f_c")), c_new],
                            self._name(d, t, "c"))
        # h(c) right after c: the partitioner fuses the two into one layer (an add with a
        # table epilogue) and names layers by the order of their last binding
        h_c = emit.activation(h_act, c_new, self._name(d, t, "h_c"))
        o = gate(1, "o", c_new, f_act)
        return emit.op("Mul", [o, h_c], self._name(d, t, "h")), c_new

    def _gru_step(self, d: int, t: int, h: str | None, _c):
        f_act, g_act = self.acts[d]
        emit = self.emit
        before_reset = bool(self.attrs.get("linear_before_reset", 0))
        zr = self._step_input(d, t, 0, 2, "zr_input")
        x_h = self._step_input(d, t, 2, 1, "h_input")
        hr = None  # h R^T + [0, 0, R_bh] (linear_before_reset)
        if h is not None and before_reset:  # one GEMM of all three gates
            hr = self._recurrent(d, t, h, 0, 3, "recurrent", bias=True)
            zr = emit.op("Add", [self._gates(hr, 0, 2, d, t, "zr_recurrent"), zr],
                         self._name(d, t, "zr"))
        elif h is not None:
            zr = self._recurrent(d, t, h, 0, 2, "zr", residual=zr)
        # the clip right after its add: the partitioner fuses them and names layers by the
        # order of their last binding
        zr = self._clip_block(zr, d, t, "zr")
        hr_h = None if hr is None else self._gates(hr, 2, 1, d, t, "h_recurrent")
        z = self._activate(f_act, self._gates(zr, 0, 1, d, t, "z_pre"), d, t, "z", clipped=True)
        r = self._activate(f_act, self._gates(zr, 1, 1, d, t, "r_pre"), d, t, "r", clipped=True)
        if before_reset:
            if hr_h is None and self.recurrent_bias[d][2 * self.hidden:].any():  # h = 0
                hr_h = emit.const(self._name(d, t, "R_bh"),
                                  self.recurrent_bias[d][2 * self.hidden:])
            if hr_h is not None:
                x_h = emit.op("Add", [x_h, emit.op("Mul", [r, hr_h], self._name(d, t, "r_hR"))],
                              self._name(d, t, "h_pre"))
        elif h is not None:
            reset = emit.op("Mul", [r, h], self._name(d, t, "r_h"))
            x_h = self._recurrent(d, t, reset, 2, 1, "h_pre", residual=x_h)
        candidate = self._activate(g_act, x_h, d, t, "candidate")
        # (1 - z) * candidate + z * h = candidate + z * (h - candidate)
        if h is None:
            keep = emit.op("Mul", [z, candidate], self._name(d, t, "z_candidate"))
            return emit.op("Sub", [candidate, keep], self._name(d, t, "h")), None
        delta = emit.op("Sub", [h, candidate], self._name(d, t, "h_minus_candidate"))
        return emit.op("Add", [candidate, emit.op("Mul", [z, delta], self._name(d, t, "z_delta"))],
                       self._name(d, t, "h")), None

    def _rnn_step(self, d: int, t: int, h: str | None, _c):
        pre = self._step_input(d, t, 0, 1, "input")
        if h is not None:
            pre = self._recurrent(d, t, h, 0, 1, "gates", residual=pre)
        return self._activate(self.acts[d][0], pre, d, t, "h"), None


def unroll_recurrent(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with every LSTM / GRU / RNN node replaced by its unrolled steps (the model
    itself when it has none). Input shapes must be static (``with_static_inputs``)."""
    graph = proto.graph
    if not any(n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx") for n in graph.node):
        return proto
    from nm_tvm.onnx_fold import _static_shapes

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    shapes = _static_shapes(proto)
    constants = _constants(graph)
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    tensors = ({i.name for i in graph.initializer} | {i.name for i in graph.input}
               | {o for n in graph.node for o in n.output})
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    del out.graph.node[:]
    emit = _Emitter(tensors, {n.name for n in graph.node}, opset)
    for node in graph.node:
        if node.op_type not in RECURRENT_OPS or node.domain not in ("", "ai.onnx"):
            emit.nodes.append(node)
            continue
        if opset < 7:
            raise _error(node, f"opset {opset}: unrolling needs opset 7 or later (numpy-style "
                               "broadcasting of the emitted Add / Mul)")
        _Unroller(node, shapes, constants, used, emit).rewrite()
    out.graph.node.extend(emit.nodes)
    # The recurrent nodes' own weights are folded into the new initializers: drop those no
    # other node reads (and their graph-input entries, which old models list).
    needed = {x for n in out.graph.node for x in n.input} | {o.name for o in out.graph.output}
    replaced = {x for n in graph.node if n.op_type in RECURRENT_OPS for x in n.input}
    dropped = {i.name for i in graph.initializer if i.name in replaced - needed}
    kept = [i for i in out.graph.initializer if i.name not in dropped] + emit.initializers
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    inputs = [i for i in out.graph.input if i.name not in dropped]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    return out
