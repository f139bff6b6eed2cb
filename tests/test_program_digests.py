"""Generated programs are byte-identical to the committed golden digests (zoo models that
compile quickly, both presets): a refactoring must not change what the compiler emits. After an
intended change of the generated code: ``python benchmarks/program_digests.py --write``."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("program_digests",
                                               ROOT / "benchmarks" / "program_digests.py")
program_digests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(program_digests)
GOLDEN = json.loads(program_digests.GOLDEN.read_text())


@pytest.mark.parametrize("target", program_digests.TARGETS)
@pytest.mark.parametrize("model", program_digests.FAST_MODELS)
def test_programs_match_golden_digest(model, target):
    key = f"{model}@{target}"
    assert key in GOLDEN, f"no golden digest for {key}: python benchmarks/program_digests.py --write"
    assert program_digests.model_digest(model, target) == GOLDEN[key], (
        f"{key}: generated programs changed; if intended: "
        "python benchmarks/program_digests.py --write")
