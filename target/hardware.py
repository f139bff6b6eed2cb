"""The accelerator's hardware description: one JSON file drives both compiler and simulator.

Like VTA's ``environment.py`` or Gemmini's generated parameters, every number the codegen tiles
against and the simulator times against comes from here. Presets live in ``presets/*.json``;
a user may pass a JSON file of their own. Loading validates every field and names the bad one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .isa import LIMITS, MachineParams

PRESET_DIR = Path(__file__).parent / "presets"
OPERAND_DTYPES = {"float32": 4, "bfloat16": 2}
DATAFLOWS = ("weight_stationary", "output_stationary")
ENERGY_FIELDS = ("mac_pj", "scratchpad_read_pj_per_byte", "scratchpad_write_pj_per_byte",
                 "accumulator_read_pj_per_byte", "accumulator_write_pj_per_byte",
                 "dram_pj_per_byte", "vector_op_pj", "pwl_lookup_pj", "static_power_mw")


class HardwareConfigError(ValueError):
    """A hardware description is malformed or inconsistent; the message names the field."""


# The simulator's limits for queue depth and DMAs in flight (target/isa_spec.json).
MAX_QUEUE_DEPTH = LIMITS["max_queue_depth"]
# The smallest PWL memory any model with a fitted table can use: the 1-entry negation table of
# subtract / minimum layers plus a one-segment fitted table with its six asymptote entries
# (nm_tvm/pwl.py OUTER_SEGMENTS; pinned by tests/test_hardware.py).
MIN_PWL_ENTRIES = 8
# Every field a hardware description may have ("name" and "description" are free text).
KNOWN_FIELDS = {
    "name": None, "description": None,
    "pe_array": {"rows", "cols", "dataflow"},
    "dtypes": {"operand", "accumulator"},
    "memories": {"scratchpad_kib", "accumulator_kib", "pwl_table_entries", "dram_mib",
                 "dram_bandwidth_bytes_per_cycle", "dram_latency_cycles"},
    "control": {"queue_depth", "dma_in_flight"},
    "clock_mhz": None,
    "energy": {"source", *ENERGY_FIELDS},
}
MAX_DMA_IN_FLIGHT = LIMITS["max_dma_in_flight"]


def _get(obj: dict, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise HardwareConfigError(f"missing field '{path}'")
        cur = cur[part]
    return cur


def _positive(obj: dict, path: str, integer: bool = False) -> float:
    value = _get(obj, path)
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise HardwareConfigError(f"field '{path}' must be {kind} (got {value!r})")
    return value


def _choice(obj: dict, path: str, choices) -> str:
    value = _get(obj, path)
    if value not in choices:
        raise HardwareConfigError(f"field '{path}' must be one of {list(choices)} (got {value!r})")
    return value


@dataclass(frozen=True)
class HardwareConfig:
    """Validated accelerator description (see presets/*.json for the file format)."""

    name: str
    description: str
    dim: int
    dataflow: str
    operand_dtype: str
    scratchpad_kib: float
    accumulator_kib: float
    pwl_entries: int
    dram_mib: float
    dram_bw: int
    dram_latency: int
    queue_depth: int
    dma_in_flight: int
    clock_mhz: float
    energy: dict
    energy_source: str
    source_path: str

    @property
    def operand_bytes(self) -> int:
        return OPERAND_DTYPES[self.operand_dtype]

    @property
    def sp_rows(self) -> int:
        return int(self.scratchpad_kib * 1024) // (self.dim * self.operand_bytes)

    @property
    def acc_rows(self) -> int:
        return int(self.accumulator_kib * 1024) // (self.dim * 4)

    @property
    def dram_bytes(self) -> int:
        return int(self.dram_mib * 1024 * 1024)

    def machine(self) -> MachineParams:
        return MachineParams(dim=self.dim, sp_rows=self.sp_rows, acc_rows=self.acc_rows,
                             pwl_entries=self.pwl_entries, operand_dtype=self.operand_dtype,
                             dram_bytes=self.dram_bytes, dram_bw=self.dram_bw,
                             dram_latency=self.dram_latency, dataflow=self.dataflow,
                             queue_depth=self.queue_depth, dma_in_flight=self.dma_in_flight)

    def summary(self) -> dict:
        return {"name": self.name, "pe_array": f"{self.dim}x{self.dim}", "dataflow": self.dataflow,
                "operand": self.operand_dtype, "accumulator": "float32",
                "scratchpad_kib": self.scratchpad_kib, "accumulator_kib": self.accumulator_kib,
                "pwl_entries": self.pwl_entries, "dram_mib": self.dram_mib,
                "dram_bw_bytes_per_cycle": self.dram_bw, "dram_latency_cycles": self.dram_latency,
                "queue_depth": self.queue_depth, "dma_in_flight": self.dma_in_flight,
                "clock_mhz": self.clock_mhz}

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> "HardwareConfig":
        if not isinstance(raw, dict):
            raise HardwareConfigError(f"{source}: top level must be a JSON object")
        _check_known_fields(raw, source)
        try:
            rows = _positive(raw, "pe_array.rows", integer=True)
            cols = _positive(raw, "pe_array.cols", integer=True)
            if rows != cols:
                raise HardwareConfigError(
                    f"field 'pe_array.cols' ({cols}) must equal 'pe_array.rows' ({rows}): "
                    "only square arrays are modelled")
            accumulator = _choice(raw, "dtypes.accumulator", ("float32",))
            del accumulator  # fp32 is the only accumulator type modelled so far
            cfg = cls(
                name=str(raw.get("name", Path(source).stem)),
                description=str(raw.get("description", "")),
                dim=int(rows),
                dataflow=_choice(raw, "pe_array.dataflow", DATAFLOWS),
                operand_dtype=_choice(raw, "dtypes.operand", tuple(OPERAND_DTYPES)),
                scratchpad_kib=_positive(raw, "memories.scratchpad_kib"),
                accumulator_kib=_positive(raw, "memories.accumulator_kib"),
                pwl_entries=int(_positive(raw, "memories.pwl_table_entries", integer=True)),
                dram_mib=_positive(raw, "memories.dram_mib"),
                dram_bw=int(_positive(raw, "memories.dram_bandwidth_bytes_per_cycle", integer=True)),
                dram_latency=int(_positive(raw, "memories.dram_latency_cycles", integer=True)),
                queue_depth=int(_positive(raw, "control.queue_depth", integer=True)),
                dma_in_flight=int(_positive(raw, "control.dma_in_flight", integer=True)),
                clock_mhz=_positive(raw, "clock_mhz"),
                energy={f: float(_positive(raw, f"energy.{f}")) for f in ENERGY_FIELDS},
                energy_source=str(_get(raw, "energy.source")),
                source_path=source,
            )
        except HardwareConfigError as err:
            raise HardwareConfigError(f"{source}: {err}") from None
        # Consistency: the smallest useful tiling (one A tile and one weight tile, double
        # buffered) must fit, or no program can run.
        if cfg.sp_rows < 4 * cfg.dim:
            raise HardwareConfigError(
                f"{source}: field 'memories.scratchpad_kib' ({cfg.scratchpad_kib}) holds only "
                f"{cfg.sp_rows} rows of {cfg.dim} {cfg.operand_dtype}; at least {4 * cfg.dim} "
                "(double-buffered A and B tiles) are needed")
        if cfg.acc_rows < 3 * cfg.dim:
            raise HardwareConfigError(
                f"{source}: field 'memories.accumulator_kib' ({cfg.accumulator_kib}) holds only "
                f"{cfg.acc_rows} rows; at least {3 * cfg.dim} are needed")
        for field, limit in (("queue_depth", MAX_QUEUE_DEPTH),
                             ("dma_in_flight", MAX_DMA_IN_FLIGHT)):
            if getattr(cfg, field) > limit:
                raise HardwareConfigError(
                    f"{source}: field 'control.{field}' ({getattr(cfg, field)}) must be at most "
                    f"{limit}")
        if cfg.pwl_entries < MIN_PWL_ENTRIES:
            raise HardwareConfigError(
                f"{source}: field 'memories.pwl_table_entries' ({cfg.pwl_entries}) must be at "
                f"least {MIN_PWL_ENTRIES}: the negation table (1) and the smallest fitted table "
                "(one segment and six asymptote entries)")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "HardwareConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise HardwareConfigError(f"hardware description '{path}' does not exist") from None
        except json.JSONDecodeError as err:
            raise HardwareConfigError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(raw, source=str(path))

    def with_overrides(self, **fields) -> "HardwareConfig":
        """A copy with some fields changed (for tests and sweeps), re-validated."""
        raw = self.to_dict()
        for key, value in fields.items():
            cur = raw
            *parents, leaf = key.split(".")
            for part in parents:
                cur = cur[part]
            cur[leaf] = value
        return HardwareConfig.from_dict(raw, source=f"{self.source_path} (overridden)")

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description,
            "pe_array": {"rows": self.dim, "cols": self.dim, "dataflow": self.dataflow},
            "dtypes": {"operand": self.operand_dtype, "accumulator": "float32"},
            "memories": {"scratchpad_kib": self.scratchpad_kib,
                         "accumulator_kib": self.accumulator_kib,
                         "pwl_table_entries": self.pwl_entries, "dram_mib": self.dram_mib,
                         "dram_bandwidth_bytes_per_cycle": self.dram_bw,
                         "dram_latency_cycles": self.dram_latency},
            "control": {"queue_depth": self.queue_depth, "dma_in_flight": self.dma_in_flight},
            "clock_mhz": self.clock_mhz,
            "energy": {"source": self.energy_source, **self.energy},
        }


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _check_known_fields(raw: dict, source: str) -> None:
    """A misspelt field ("colums") is an error naming it, not silently ignored."""
    import difflib

    def unknown(path: str, names) -> None:
        close = difflib.get_close_matches(path.rsplit(".", 1)[-1], list(names), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise HardwareConfigError(f"{source}: unknown field '{path}'{hint}")

    for key, value in raw.items():
        if key not in KNOWN_FIELDS:
            unknown(key, KNOWN_FIELDS)
        children = KNOWN_FIELDS[key]
        if children is not None and isinstance(value, dict):
            for sub in value:
                if sub not in children:
                    unknown(f"{key}.{sub}", children)


def load_preset(name: str) -> HardwareConfig:
    path = PRESET_DIR / f"{name}.json"
    if not path.exists():
        raise HardwareConfigError(
            f"unknown preset '{name}'; available: {', '.join(preset_names())}")
    return HardwareConfig.from_file(path)
