"""What compiling a model produces besides the executable: one typed, versioned record.

The passes write their parts into the record their caller hands them. ``Linearize`` writes the
PWL tables and the calibration probes, ``LowerToAccelerator`` the layer table, and
``VerifyGemmOnly`` the operators left on the host. Nothing travels as JSON text in module
attributes, and no pass writes global state. ``CompiledModel`` reads the record whether the
model was just compiled or reloaded from an artifact, which stores it as JSON under
``SCHEMA_VERSION``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypedDict

SCHEMA_VERSION = 1


class RecordError(ValueError):
    """A stored record is not one this nm_tvm reads (another schema, missing fields)."""


class LayerRecord(TypedDict, total=False):
    """One accelerator call (``nm_accel.run``), in program order."""

    id: int  # layer_id in the program header and the simulator's statistics
    name: str  # named as in the source model (ONNX node, Relax variable)
    kind: str  # composite pattern, e.g. "nm.conv2d"
    source_nodes: list  # every source-model node fused into the layer
    node: str  # the source node a decomposed step belongs to (LayerNorm/0..7)
    macs: int  # analytic MACs
    out_shape: list
    instructions: int
    dram_const_bytes: int
    dram_activation_bytes: int


class TableRecord(TypedDict, total=False):
    """One PWL table (``nm.pwl_map``): what it approximates, where, and how well."""

    id: str  # "key#n", stable for the same model and config (calibration finds it again)
    key: str  # '+'-joined nonlinear ops of the fused chain ('exp', 'erf', 'rsqrt', ...)
    segments: int
    exact: bool  # an exactly piecewise-linear chain
    lo: float  # fitted range (fitted tables)
    hi: float
    max_err: float  # fitted, measured on the range
    mean_abs_err: float
    limit: float  # independent limit (nm_tvm.pwl_limits); fitted tables only
    floor: float  # inputs below it do not matter (softmax's exp below -16)
    mean_limit: float | None
    table: list  # (entries, 3) rows: breakpoint, slope, intercept
    grid: list  # [x, f(x)] samples for plots


@dataclass
class ProbeRecord:
    """A probe build returns the input of each fitted table after the model's outputs."""

    ids: list[str]  # table ids, in the order of the extra outputs
    n_outputs: int  # the model's own outputs (flattened) before them


@dataclass
class CompileRecord:
    layers: list[LayerRecord] = field(default_factory=list)
    tables: list[TableRecord] = field(default_factory=list)
    host_ops: list[str] = field(default_factory=list)  # "<function>:<relax op>" left on the host
    probes: ProbeRecord | None = None
    # Where the table ranges came from: "default ranges", "N given samples", "synthetic, ..."
    calibration: str = ""
    # Probe builds only (not stored): table id -> the exact function, evaluated on the host.
    exact_functions: dict[str, Callable] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        probes = None if self.probes is None else {"ids": list(self.probes.ids),
                                                    "n_outputs": self.probes.n_outputs}
        return {"schema": SCHEMA_VERSION, "layers": self.layers, "tables": self.tables,
                "host_ops": self.host_ops, "probes": probes, "calibration": self.calibration}

    @classmethod
    def from_dict(cls, data: dict, source: str = "record") -> "CompileRecord":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise RecordError(f"{source}: compile record schema {found}; this nm_tvm reads "
                              f"schema {SCHEMA_VERSION}")
        missing = [k for k in ("layers", "tables", "host_ops") if not isinstance(data.get(k), list)]
        if missing:
            raise RecordError(f"{source}: compile record lacks {missing}")
        for layer in data["layers"]:
            if not isinstance(layer, dict) or not {"id", "name", "kind", "macs"} <= layer.keys():
                raise RecordError(f"{source}: malformed layer entry {str(layer)[:80]}")
        probes = data.get("probes")
        return cls(layers=data["layers"], tables=data["tables"],
                   host_ops=[str(op) for op in data["host_ops"]],
                   probes=ProbeRecord(**probes) if probes else None,
                   calibration=str(data.get("calibration", "")))
