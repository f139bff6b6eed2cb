"""Statistics of simulator runs: totals, per layer, and energy from the target's table."""
from __future__ import annotations

from dataclasses import dataclass, field

from nm_tvm.target.hardware import HardwareConfig
from nm_tvm.target.isa import STAT_FIELDS, STALL_CAUSES

COUNTERS = [f for f in STAT_FIELDS if f != "layer_id"]
ENGINES = ("load", "compute", "store")
# What an engine waited for (docs/ISA.md, "Stalls"), as reports name it.
STALL_LABELS = {"dma": "DMA", "dep": "dependency", "full": "buffer full", "queue": "full queue"}
assert tuple(STALL_LABELS) == STALL_CAUSES


def stalls(counters: dict) -> dict:
    """Stall cycles by cause summed over the engines (docs/ISA.md, "Stalls"), and the compute
    engine's own stall and idle cycles."""
    out = {f"stall_{c}": sum(counters[f"{q}_stall_{c}"] for q in ENGINES) for c in STALL_CAUSES}
    compute_stall = sum(counters[f"compute_stall_{c}"] for c in STALL_CAUSES)
    out["compute_stall"] = compute_stall
    out["compute_idle"] = max(0, counters["cycles"] - counters["compute_busy"] - compute_stall)
    return out


# Layer kinds that implement nonlinear operators on the accelerator: PWL maps, max (MaxPool,
# ReduceMax, softmax's row max), sums and the vector steps of softmax / normalisation. Residual
# adds are linear and not counted; a multiply of two tensors is counted (mostly norm scaling).
LINEARIZED_KINDS = ("pwl", "max", "sum", "subtract", "multiply", "minimum", "maximum")


def is_linearized(kind: str) -> bool:
    name = kind.split(".", 1)[-1]
    return name.endswith("_pwl") or name.split("_")[0] in LINEARIZED_KINDS


def energy_pj(counters: dict, hw: HardwareConfig) -> dict:
    """Energy by component (pJ) from per-action costs; static energy from cycles and clock."""
    e = hw.energy
    seconds = counters["cycles"] / (hw.clock_mhz * 1e6)
    return {
        "mac": counters["macs"] * e["mac_pj"],
        "scratchpad": counters["sp_read_bytes"] * e["scratchpad_read_pj_per_byte"]
        + counters["sp_write_bytes"] * e["scratchpad_write_pj_per_byte"],
        "accumulator": counters["acc_read_bytes"] * e["accumulator_read_pj_per_byte"]
        + counters["acc_write_bytes"] * e["accumulator_write_pj_per_byte"],
        "dram": (counters["dram_read_bytes"] + counters["dram_write_bytes"]) * e["dram_pj_per_byte"],
        "vector": counters["vec_elements"] * e["vector_op_pj"],
        "pwl": counters["pwl_elements"] * e["pwl_lookup_pj"],
        "static": e["static_power_mw"] * 1e-3 * seconds * 1e12,
    }


@dataclass
class LayerStats:
    id: int
    name: str
    kind: str
    counters: dict
    analytic_macs: int
    source_nodes: list[str] = field(default_factory=list)  # the source-model nodes it runs
    node: str = ""  # the name shared by the layers of one source node (``name`` without /k)


@dataclass
class RunStats:
    """Counters of one inference, summed over all accelerator calls."""

    hw: HardwareConfig
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        out = {k: 0 for k in COUNTERS}
        for layer in self.layers:
            for k in COUNTERS:
                out[k] += layer.counters[k]
        return out

    @property
    def cycles(self) -> int:
        return self.totals["cycles"]

    @property
    def macs(self) -> int:
        return self.totals["macs"]

    @property
    def energy(self) -> dict:
        return energy_pj(self.totals, self.hw)

    @property
    def latency_s(self) -> float:
        return self.cycles / (self.hw.clock_mhz * 1e6)

    def figures(self, c: dict) -> dict:
        """The report columns of one set of counters (a layer, or several summed)."""
        peak = c["cycles"] * self.hw.dim * self.hw.dim
        return {
            "cycles": c["cycles"],
            **{k: v for k, v in stalls(c).items() if k.startswith("stall_")},
            "macs": c["macs"], "pe_utilization": c["macs"] / peak if peak else 0.0,
            "dram_bytes": c["dram_read_bytes"] + c["dram_write_bytes"],
            "sp_bytes": c["sp_read_bytes"] + c["sp_write_bytes"],
            "acc_bytes": c["acc_read_bytes"] + c["acc_write_bytes"],
            "energy_uj": sum(energy_pj(c, self.hw).values()) * 1e-6,
        }

    def per_layer_rows(self) -> list[dict]:
        """SCALE-Sim-style plain rows, one per layer (accelerator call)."""
        return [{"layer": layer.name, "kind": layer.kind,
                 "source_nodes": " + ".join(layer.source_nodes), **self.figures(layer.counters)}
                for layer in self.layers]

    def per_node_rows(self) -> list[dict]:
        """One row per source-model node: the layers a decomposed node became (a LayerNorm's
        mean, subtract, ..., steps) summed, in order of first appearance."""
        groups: dict[str, list[LayerStats]] = {}
        for layer in self.layers:
            groups.setdefault(layer.node or layer.name, []).append(layer)
        rows = []
        for node, layers in groups.items():
            summed = {k: sum(layer.counters[k] for layer in layers) for k in COUNTERS}
            kinds = dict.fromkeys(layer.kind.removeprefix("nm.") for layer in layers)
            rows.append({"node": node, "kind": " ".join(kinds), "layers": len(layers),
                         **self.figures(summed)})
        return rows

    @property
    def linearized_cycle_share(self) -> float:
        """Share of cycles in layers that implement linearized nonlinear operators."""
        total = self.cycles
        part = sum(layer.counters["cycles"] for layer in self.layers if is_linearized(layer.kind))
        return part / total if total else 0.0

    def summary(self) -> dict:
        t = self.totals
        energy = sum(self.energy.values())  # pJ per inference
        latency = self.latency_s
        return {
            "target": self.hw.name, "cycles": t["cycles"], "latency_ms": latency * 1e3,
            "macs": t["macs"],
            "pe_utilization": t["macs"] / (t["cycles"] * self.hw.dim ** 2) if t["cycles"] else 0.0,
            **stalls(t),
            "dram_bytes": t["dram_read_bytes"] + t["dram_write_bytes"],
            "sp_bytes": t["sp_read_bytes"] + t["sp_write_bytes"],
            "acc_bytes": t["acc_read_bytes"] + t["acc_write_bytes"],
            "energy_uj": energy * 1e-6,
            "average_power_mw": energy * 1e-9 / latency if latency else 0.0,
            "inferences_per_s": 1.0 / latency if latency else 0.0,
            "inferences_per_j": 1e12 / energy if energy else 0.0,
            "energy_source": self.hw.energy_source,
            "linearized_cycle_share": self.linearized_cycle_share,
        }
