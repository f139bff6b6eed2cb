"""Compile a model for an nm target and run it on the simulator through the Relax VM."""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from nm_tvm import calibrate as _calibration
from nm_tvm import frontend, support
from nm_tvm import synthetic_inputs as synthetic
from nm_tvm.passes import LinearizeConfig
from nm_tvm.pipeline import accelerator_passes
from nm_tvm.target.backend import NotGemmOnlyError
from nm_tvm.record import CompileRecord
from nm_tvm.report import LayerStats, RunStats
from nm_tvm.target import simulator
from nm_tvm.target.hardware import HardwareConfig
from nm_tvm.target.isa import STAT_FIELDS
from nm_tvm.target.tags import resolve_target


class InputError(ValueError):
    """Run-time inputs do not match the compiled model (names the input)."""


class IntegerArithmeticError(NotGemmOnlyError):
    """Integer arithmetic neither the accelerator nor TVM's host lowering takes (integer Pow):
    host fallback does not help."""

    host_fallback_helps = False


class UnsupportedOperatorError(NotGemmOnlyError):
    """Strict mode: the model has ONNX operators the accelerator does not support. The message
    names each op type and its nodes and lists the supported operators (nm_tvm/support.py)."""


class CompiledModel:
    """A model compiled for one target. ``run`` mirrors ``onnxruntime.InferenceSession.run``."""

    def __init__(self, executable, hw: HardwareConfig, imported: frontend.ImportedModel,
                 record: CompileRecord, offloaded: tvm.IRModule | None = None):
        self.executable = executable
        self.hw = hw
        self.input_names = imported.input_names
        self.input_shapes = imported.input_shapes
        self.input_dtypes = imported.input_dtypes
        self.output_names = imported.output_names
        self.fixed_inputs = dict(imported.fixed_inputs)  # fixed at compile time (input_values)
        self.record = record
        self.layers = record.layers
        self.host_ops = record.host_ops
        self.pwl_tables = record.tables
        self.offloaded_module = offloaded  # None when reloaded from an artifact
        self.stats: RunStats | None = None
        self._vm = None
        # what probe_build() recompiles: the source model, its shapes and table config
        self.source = None
        self.linearize: LinearizeConfig | None = None
        self._probe = None

    def _machine(self):
        if self._vm is None:
            simulator.load()  # registers nm_accel.run before the VM resolves it
            self._vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return self._vm

    def _check_inputs(self, inputs: dict) -> list:
        for name, fixed in self.fixed_inputs.items():  # ORT-style calls may still pass them
            if name in inputs and not np.array_equal(np.asarray(inputs[name]), fixed):
                raise InputError(f"input '{name}' was fixed at compile time to {fixed.tolist()} "
                                 f"(input_values); got {np.asarray(inputs[name]).tolist()}: "
                                 "recompile for another value")
        inputs = {k: v for k, v in inputs.items() if k not in self.fixed_inputs}
        unknown = set(inputs) - set(self.input_names)
        if unknown:
            raise InputError(f"unknown input(s) {sorted(unknown)}; model inputs: {self.input_names}")
        args = []
        for name in self.input_names:
            if name not in inputs:
                raise InputError(f"missing input '{name}' (shape {self.input_shapes[name]})")
            value = np.asarray(inputs[name])
            if value.dtype != np.dtype(self.input_dtypes[name]):
                raise InputError(f"input '{name}' has dtype {value.dtype}; expected "
                                 f"{self.input_dtypes[name]}")
            if tuple(value.shape) != tuple(self.input_shapes[name]):
                raise InputError(f"input '{name}' has shape {tuple(value.shape)}; expected "
                                 f"{tuple(self.input_shapes[name])}")
            # np.require keeps 0-d inputs 0-d (np.ascontiguousarray makes them 1-d)
            args.append(tvm.runtime.tensor(np.require(value, requirements="C"), tvm.cpu()))
        return args

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference; outputs in the model's output order; fills ``self.stats``."""
        args = self._check_inputs(inputs)
        vm = self._machine()
        simulator.take_stats()  # drop records of anything run before
        result = vm["main"](*args)
        records = simulator.take_stats()
        self.stats = self._collect(records)
        return _flatten(result)

    def _collect(self, records: list[dict]) -> RunStats:
        stats = RunStats(self.hw)
        by_id = {layer["id"]: layer for layer in self.layers}
        for rec in records:
            meta = by_id.get(rec["layer_id"], {"name": f"layer{rec['layer_id']}", "kind": "?",
                                               "macs": 0})
            counters = {k: int(rec[k]) for k in STAT_FIELDS if k != "layer_id"}
            stats.layers.append(LayerStats(rec["layer_id"], meta["name"], meta["kind"], counters,
                                           meta["macs"], meta.get("source_nodes", []),
                                           meta.get("node", meta["name"])))
        return stats

    def probe_build(self) -> "CompiledModel":
        """The same model, target and tables with every fitted table's input exposed and its
        exact function run on the host (calibration's probe build; cached). Error bounds and
        out-of-range checks run it (nm_tvm.pwl_error_bound)."""
        if self._probe is None:
            if self.source is None:
                raise ValueError("a model reloaded from an artifact has no source model to "
                                 "build a probe from; compile it again")
            self._probe = compile(self.source, target=self.hw, input_shapes=self.input_shapes,
                                  linearize=self.linearize, strict=False, probe=True)
        return self._probe

    @property
    def calibration(self) -> str:
        """Where the PWL table ranges came from: "default ranges", "N given sample(s)" or
        "synthetic, ..." (naming what each input was filled with)."""
        return self.record.calibration

    def placement(self) -> dict[str, list[str]]:
        """What runs where: accelerator layers and (``strict=False`` only) host operators."""
        return {"accelerator": [layer["name"] for layer in self.layers],
                "host": list(self.host_ops)}

    @property
    def analytic_macs(self) -> int:
        return sum(layer["macs"] for layer in self.layers)


def _flatten(result) -> list[np.ndarray]:
    """VM results (a tensor or nested tuples of tensors) as a flat list, in output order."""
    if isinstance(result, tvm.runtime.Tensor):
        return [result.numpy()]
    return [array for item in result for array in _flatten(item)]


def compile(model, target=None, input_shapes: dict | None = None,  # noqa: A001 (API name)
            strict: bool = True, linearize: LinearizeConfig | None = None,
            calibration: list[dict] | str | None = None, probe: bool = False,
            input_values: dict | None = None) -> CompiledModel:
    """Compile an ONNX path / ModelProto / Relax IRModule for an nm target.

    ``target`` is ``"nm/<preset>"``, a hardware JSON path, a ``tvm.target.Target`` or a
    ``HardwareConfig``; the default is ``nm/fp32-16x16``. ``strict`` makes any operator that
    cannot run on the accelerator a compile error. ``linearize`` sets PWL table sizes, ranges
    and which nonlinear functions are left alone; ``calibration`` (sample input dicts) fits
    every table to the range its inputs really take (:func:`nm_tvm.calibrate.calibrate`).
    Without it, a model whose integer inputs index an embedding (token ids) is calibrated on
    synthetic inputs (ids inside its vocabulary: :mod:`nm_tvm.synthetic_inputs`); a model
    with other approximated operators on generic synthetic inputs (N(0, 1) floats, ones) that
    only widen the default ranges; one of exact operators only keeps the default ranges;
    ``"auto"`` synthesizes for any model, ``[]`` never calibrates.
    ``compiled.calibration`` says which happened. ``input_values`` fixes ONNX inputs at compile
    time (a sample rate, a mode flag): they fold into the graph, an If they select becomes its
    branch, and ``run`` no longer needs them (a call passing the same value is accepted).
    """
    tvm_target, hw = resolve_target(target)
    if not isinstance(model, tvm.IRModule):
        model = frontend.load_onnx(model)
    record = CompileRecord()
    imported = None
    try:
        imported = frontend.import_model(model, input_shapes, input_values)
        samples, record.calibration = _calibration_samples(model, imported, calibration, probe)
        def offload(config, rec):
            with tvm_target:
                try:
                    return accelerator_passes(hw, strict, config, probe, rec)(imported.mod)
                except tvm.error.InternalError as err:
                    raise _integer_arithmetic_error(imported.mod, err) from None

        if samples:
            try:
                linearize = calibrate(model, samples, target=hw, input_shapes=input_shapes,
                                      config=linearize, input_values=input_values,
                                      widen_only=_generic_samples(record.calibration))
            except Exception:
                # The probe build runs unsupported ops on the host, where TVM cannot lower
                # some (integer power); a strict compile names them instead: try that first.
                if strict:
                    offload(linearize, CompileRecord())
                raise
        offloaded = offload(linearize, record)
    except (NotGemmOnlyError, frontend.ImporterError) as err:
        # Name the ONNX operators and nodes behind the failure (TVM's importer or
        # VerifyGemmOnly only see Relax ops); the Relax-level message follows. A load error of
        # our own (input types, dynamic shapes, attribute forms) is the cause itself: raised
        # as it is, not behind a list of operators.
        # The graph as imported (folded: an If replaced by its branch) when import succeeded.
        graph = imported.onnx_model if imported is not None and imported.onnx_model else model
        unsupported = (support.unsupported_nodes(graph) if strict and not
                       isinstance(model, tvm.IRModule) else [])
        if unsupported:
            raise UnsupportedOperatorError(
                f"{support.unsupported_message(unsupported)} [compiler: {err}]") from None
        raise
    executable = tvm.compile(offloaded, target=tvm_target, relax_pipeline="default")
    compiled = CompiledModel(executable, hw, imported, record, offloaded)
    compiled.source, compiled.linearize = model, linearize
    return compiled


# Ops on integer / bool tensors the flow handles (casts, indices, masks, data movement).
_INTEGER_OK = ("relax.astype", "relax.take", "relax.where", "relax.reshape", "relax.permute_dims",
               "relax.broadcast_to", "relax.expand_dims", "relax.squeeze", "relax.concat",
               "relax.strided_slice")


def _integer_arithmetic_error(mod, err) -> NotGemmOnlyError:
    """TVM failed inside the passes: name the integer / bool arithmetic (which neither the
    accelerator nor, for some ops, TVM's host lowering supports) or report the failure."""
    from nm_tvm.provenance import source_node

    found = []
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            v = b.value
            if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and \
                    getattr(b.var.ty, "dtype", "float32") not in ("float32", "bool") and \
                    v.op.name not in _INTEGER_OK and not v.op.name.startswith("relax.logical"):
                node = source_node(v) or b.var.name
                found.append(f"{v.op.name} on {b.var.ty.dtype} (node '{node}')")
    cause = " ".join(str(err).split())[:200]
    if found:
        return IntegerArithmeticError(
            f"integer arithmetic is not supported (only casts, indices, masks and data "
            f"movement of integer tensors): {', '.join(found[:5])} [TVM: {cause}]")
    return NotGemmOnlyError(f"TVM failed while compiling the model: {cause}")


def _generic_samples(description: str) -> bool:
    """Synthetic samples without real data in them (no ids drawing real embedding rows) may not
    look like the real inputs: they may widen the default ranges, never narrow them."""
    return description.startswith("synthetic") and "ids in" not in description


def _calibration_samples(model, imported, calibration, probe: bool):
    """(samples to calibrate on, how the ranges were chosen). ``calibration=None`` calibrates
    a model whose integer inputs index an embedding (token ids) on synthetic inputs
    (nm_tvm.synthetic_inputs), and one with approximated operators (nm_tvm.support) on generic
    synthetic inputs that only widen the default ranges: guessed ranges failed real models (the
    zoo ViT's first LayerNorm variance is 7e-4 against a default range from 2^-6: relative error
    0.33; widened 2e-3). A model of exact operators only keeps the default ranges; "auto"
    always synthesizes; [] never calibrates."""
    if probe:
        return None, "probe build"
    if isinstance(calibration, str):
        if calibration != "auto":
            raise ValueError(f"calibration={calibration!r}: give sample input dicts, 'auto' "
                             "or [] (no calibration)")
    elif calibration is not None:
        samples = list(calibration)
        return samples, (f"{len(samples)} given sample(s)" if samples else "default ranges")
    onnx_model = imported.onnx_model
    if onnx_model is None:
        return None, "default ranges"
    wanted = calibration == "auto" or synthetic.indexes_embeddings(
        onnx_model, imported.input_dtypes) or \
        any(support.level(n.op_type) == support.APPROX for n in onnx_model.graph.node)
    if not wanted:
        return None, "default ranges"
    return synthetic.synthetic_inputs(onnx_model, imported.input_shapes, imported.input_dtypes)


def probe_table_inputs(model, samples: list[dict], target=None,
                       input_shapes: dict | None = None, config: LinearizeConfig | None = None,
                       input_values: dict | None = None):
    """(probe build, {table id: every value its input took on ``samples``}): the model compiled
    with every fitted table's input exposed and the fitted functions evaluated exactly."""
    probe = compile(model, target=target, input_shapes=input_shapes, linearize=config,
                    strict=False, probe=True, input_values=input_values)
    return probe, _calibration.observe(probe, samples)


def calibrate(model, samples: list[dict], target=None, input_shapes: dict | None = None,
              config: LinearizeConfig | None = None, seed: int = 0,
              input_values: dict | None = None, widen_only: bool = False) -> LinearizeConfig:
    """A LinearizeConfig whose ranges (and sample weights) come from ``samples``.

    The model is compiled once as a probe build (no range depends on another table's error),
    each sample runs, and each table's observed [min, max] becomes its range
    (:func:`nm_tvm.calibrate.calibrated_config`). ``widen_only`` (synthetic samples, which
    may not look like the real inputs): a range only grows from its default to cover them.
    """
    if not samples:
        raise ValueError("calibrate() needs at least one sample input dict")
    probe, seen = probe_table_inputs(model, samples, target, input_shapes, config, input_values)
    cover = {t["id"]: (t["lo"], t["hi"]) for t in probe.pwl_tables if not t["exact"]} \
        if widen_only else {}
    return _calibration.calibrated_config(config, seen, seed, cover)
