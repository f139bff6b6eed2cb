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
