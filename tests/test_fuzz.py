"""Short, fixed-seed fuzz run of the simulator (the long run: `make fuzz`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_simulator.py"


def test_fuzz_simulator_short_run(tmp_path):
    summary_path = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "3000", "--seed", "20240", "--hang-s", "60",
         "--crash-dir", str(tmp_path / "crashes"), "--json", str(summary_path)],
        capture_output=True, text=True, timeout=300)
    summary = json.loads(summary_path.read_text())
    assert summary["runs"] == 3000
    assert summary["seeds"] >= 8  # hand-built programs plus codegen programs
    assert summary["crashes"] == 0, summary["crash_details"]
    assert summary["hangs"] == 0, summary["hang_details"]
    assert summary["invariant_violations"] == 0, summary["violation_details"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runs 3000, crashes 0" in proc.stdout


def test_fuzz_harness_counts_and_saves_a_crash(tmp_path):
    """Self-test: a worker killed by SIGSEGV at input 37 is counted, its program saved, and the
    run continues in a new worker to the requested count."""
    import numpy as np

    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "60", "--seed", "3", "--self-test-crash-at", "37",
         "--crash-dir", str(tmp_path / "crashes"), "--json", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300)
    summary = json.loads((tmp_path / "f.json").read_text())
    assert proc.returncode == 1
    assert summary["crashes"] == 1 and summary["crash_details"][0]["input"] == 37
    assert summary["crash_details"][0]["returncode"] == -11
    saved = np.load(summary["crash_details"][0]["program"])
    assert saved.dtype == np.int64 and saved.size > 0
