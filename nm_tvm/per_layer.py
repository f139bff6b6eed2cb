"""Per-layer comparison with ONNX Runtime: find the first accelerator layer that diverges.

How layers are matched to ONNX tensors:

1. The compiled model runs once with a Relax VM instrument that copies the output argument of
   every ``nm_accel.run`` call (the layer id is in the program header).
2. ONNX Runtime runs the same inputs with every float intermediate tensor made a graph output.
3. Layers imported from ONNX know their source nodes (``source_nodes``, nm_tvm.provenance).
   The last layer of a node (a fused conv+BN+ReLU, the final step of a decomposed LayerNorm)
   is compared with the first output of its last source node; the earlier steps of a
   decomposed node have no ONNX counterpart and are not compared.
4. Other layers (Relax models, or a node output of another size) are matched by value, in
   execution order: a layer's candidates are the ONNX tensors with the same element count
   (layouts agree: the flow keeps ONNX's NCHW). It matches the earliest candidate, after the
   previous match in topological order, whose normwise relative error is within ``rtol``;
   failing that, any candidate within ``rtol``. A layer with no candidate within ``rtol``
   *diverges*; it is reported with its nearest candidate.

Limits of value matching: a layer whose output has no ONNX counterpart is reported as
"no ONNX tensor" and does not count as divergence -- a mismatch that a later layer recovers
from is taken to be such a value, so a real error that later layers hide is missed; equal-shape
tensors with equal values (e.g. a ReLU that changes nothing) can match one step early. Host
ops are not compared, but their effect shows in the next accelerator layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import shape_inference

from nm_tvm.extern_funcs import RUN_FUNC


@dataclass
class LayerMatch:
    layer_id: int
    layer: str
    kind: str
    shape: tuple
    onnx_tensor: str | None  # matched (or nearest) ONNX tensor, None when none has the shape
    onnx_op: str | None
    max_rel_err: float | None
    ok: bool | None  # None: nothing to compare with


def capture_layer_outputs(compiled, inputs: dict) -> tuple[list, dict[int, np.ndarray]]:
    """Run once; return (outputs, {layer_id: output copy}) via a VM instrument."""
    from nm_tvm.target.isa import Program

    vm = compiled._machine()  # noqa: SLF001 (the VM is the only place the tensors exist)
    captured: dict[int, np.ndarray] = {}

    def instrument(_func, symbol, before_run, _ret, *args):
        if not before_run and symbol == RUN_FUNC:
            layer_id = Program.header_field(args[0].numpy(), "layer_id")
            captured[layer_id] = args[-1].numpy().copy()
        return 0

    vm.set_instrument(instrument)
    try:
        outputs = compiled.run(inputs)
    finally:
        vm.set_instrument(lambda *_a: 0)
    return outputs, captured


def onnx_intermediates(proto: onnx.ModelProto, inputs: dict) -> tuple[list, dict]:
    """Every float tensor ORT computes, in topological order: ([(name, op)], {name: value})."""
    from nm_tvm.reference import onnx_runtime_outputs

    inferred = shape_inference.infer_shapes(proto)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    graph_outputs = {o.name for o in proto.graph.output}
    order, extra = [], []
    for node in proto.graph.node:
        for out in node.output:
            if not out:
                continue
            order.append((out, node.op_type))
            if out not in graph_outputs and types.get(out) == onnx.TensorProto.FLOAT:
                extra.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    model.graph.output.extend(extra)
    names = [o.name for o in model.graph.output]
    values = dict(zip(names, onnx_runtime_outputs(model, inputs)))
    return [(n, op) for n, op in order if n in values], values


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def match_layers(compiled, proto: onnx.ModelProto, inputs: dict, rtol: float,
                 progress=None) -> list[LayerMatch]:
    """Compare every accelerator layer's output with its ONNX counterpart (module docstring)."""
    _outputs, captured = capture_layer_outputs(compiled, inputs)
    order, values = onnx_intermediates(proto, inputs)
    position = {name: i for i, (name, _op) in enumerate(order)}
    op_of = dict(order)
    by_id = {layer["id"]: layer for layer in compiled.layers}
    named = _named_counterparts(compiled.layers, proto)
    results, last = [], -1
    for layer_id in sorted(captured):
        sim = captured[layer_id]
        meta = by_id.get(layer_id, {"name": f"layer{layer_id}", "kind": "?"})
        if layer_id in named:
            tensor = named[layer_id]
            if tensor is None:  # an inner step of a decomposed node
                results.append(LayerMatch(layer_id, meta["name"], meta["kind"], tuple(sim.shape),
                                          None, None, None, None))
                continue
            if tensor in values and values[tensor].size == sim.size:
                err = _rel_err(sim.reshape(-1), values[tensor].reshape(-1))
                last = max(last, position[tensor])
                results.append(LayerMatch(layer_id, meta["name"], meta["kind"], tuple(sim.shape),
                                          tensor, op_of[tensor], err, err <= rtol))
                if progress is not None:
                    progress()
                continue
        cands = [(name, _rel_err(sim.reshape(-1), values[name].reshape(-1)))
                 for name, _op in order if values[name].size == sim.size]
        good = [(n, e) for n, e in cands if e <= rtol]
        later = [(n, e) for n, e in good if position[n] > last]
        if later or good:
            name, err = (later or good)[0]
            last = max(last, position[name])
            ok = True
        elif cands:
            after = [(n, e) for n, e in cands if position[n] > last] or cands
            name, err = min(after[:3], key=lambda c: c[1])  # nearest of the next few
            ok = False
        else:
            name, err, ok = None, None, None
        results.append(LayerMatch(layer_id, meta["name"], meta["kind"], tuple(sim.shape), name,
                                  op_of.get(name) if name else None, err, ok))
        if progress is not None:
            progress()
    # A mismatch followed by a later match was a value with no ONNX counterpart (the inside of
    # a decomposed LayerNorm / softmax has same-shape neighbours): not a divergence.
    recovered = False
    for m in reversed(results):
        if m.ok:
            recovered = True
        elif m.ok is False and recovered:
            m.ok, m.onnx_tensor, m.onnx_op, m.max_rel_err = None, None, None, None
    return results


def _named_counterparts(layers: list[dict], proto: onnx.ModelProto) -> dict:
    """layer id -> the ONNX tensor its output should equal (None: an inner step with no
    counterpart), for layers whose source nodes are known."""
    output_of = {(n.name or n.output[0]): n.output[0] for n in proto.graph.node if n.output}
    last_layer_of = {}
    for layer in layers:
        if layer.get("source_nodes"):
            last_layer_of[layer["source_nodes"][-1]] = layer["id"]
    out = {}
    for layer in layers:
        nodes = layer.get("source_nodes")
        if nodes and nodes[-1] in output_of:
            final = last_layer_of[nodes[-1]] == layer["id"]
            out[layer["id"]] = output_of[nodes[-1]] if final else None
    return out


def first_divergence(matches: list[LayerMatch]) -> LayerMatch | None:
    return next((m for m in matches if m.ok is False), None)
