"""Profiling reports: CSV / JSON / plots of one inference, summary figures, energy source."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import nm_tvm
from nm_tvm import profile_report
from nm_tvm.models import small_cnn


@pytest.fixture(scope="module")
def stats():
    compiled = nm_tvm.compile(small_cnn())
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    compiled.run({"input": x})
    return compiled.stats


def test_summary_power_and_throughput(stats):
    s = stats.summary()
    assert s["inferences_per_s"] == pytest.approx(stats.hw.clock_mhz * 1e6 / s["cycles"])
    assert s["inferences_per_j"] == pytest.approx(1e6 / s["energy_uj"])
    assert s["average_power_mw"] == pytest.approx(s["energy_uj"] * 1e-3 * s["inferences_per_s"])
    assert s["stall_dma"] + s["stall_dep"] + s["stall_full"] > 0


def test_csv_json_plots(stats, tmp_path):
    profile_report.write_csv(stats, tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    rows = list(csv.DictReader(lines))  # plain CSV: no comment line before the header
    assert {r["target"] for r in rows} == {stats.hw.name}
    assert rows[-1]["layer"] == "TOTAL" and int(rows[-1]["cycles"]) == stats.cycles
    assert sum(int(r["cycles"]) for r in rows[:-1]) == stats.cycles
    profile_report.write_json(stats, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["energy_source"] == stats.hw.energy_source
    assert len(data["layers"]) == len(stats.layers)
    paths = profile_report.write_plots(stats, tmp_path / "plots")
    assert [p.name for p in paths] == ["cycles.png", "energy.png", "roofline.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_short_layer_names_keep_the_layer_number_and_the_end():
    from nm_tvm.profile_report import _short

    name = "encoder.layer.11.attention.output.LayerNorm/3"
    short = _short(name)
    assert short == "encoder.layer.11…LayerNorm/3" and len(short) == 28
    assert _short("conv1") == "conv1"
    assert _short("x" * 40) == "…" + "x" * 27  # no number: the end
