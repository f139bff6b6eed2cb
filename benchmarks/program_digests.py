"""Digest of every accelerator program and constant a zoo model compiles to.

A refactoring of the compiler must leave generated programs byte-identical: this prints (and
with ``--write`` stores in tests/golden/program_digests.json, which tests/test_program_digests.py
checks in `make test`) one sha256 per model over, in layer order, each accelerator call's
program words and constant operands (weights, PWL tables), plus the layer table.

    python benchmarks/program_digests.py                 # print, compare with the golden file
    python benchmarks/program_digests.py --write         # after an intended codegen change
    python benchmarks/program_digests.py --models resnet18,bert_base
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "program_digests.json"
# Zoo models cheap enough for `make test` (compile only, about 10 s together); the others run
# here: python benchmarks/program_digests.py --models all
FAST_MODELS = ("small_cnn", "mlp", "bert_tiny", "vit_tiny", "gpt2_block", "mobilenet_v2")
TARGETS = ("nm/fp32-16x16", "nm/bf16-32x32")


def model_digest(name: str, target: str) -> dict:
    """sha256 over every nm_accel.run call's constant operands, and the layer count."""
    import tvm
    from tvm import relax

    import nm_tvm
    from nm_tvm.models import zoo

    # default table ranges (no calibration): the digests pin the code generator, not the
    # calibration policy or its synthetic samples
    compiled = nm_tvm.compile(zoo.BUILDERS[name](), target=target, calibration=[])
    digest = hashlib.sha256()
    calls = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.name == "relax.call_dps_packed":
            calls.append(expr)

    relax.analysis.post_order_visit(compiled.offloaded_module["main"], visit)
    for call in calls:
        digest.update(str(call.args[0].global_symbol).encode())
        for arg in call.args[1].fields:
            if isinstance(arg, tvm.ir.Constant):
                value = arg.value.numpy()
                digest.update(str(value.dtype).encode() + str(value.shape).encode())
                digest.update(np.ascontiguousarray(value).tobytes())
    digest.update(json.dumps(compiled.layers, sort_keys=True).encode())
    return {"sha256": digest.hexdigest(), "calls": len(calls), "layers": len(compiled.layers)}


def digests(models, targets=TARGETS) -> dict:
    return {f"{m}@{t}": model_digest(m, t) for m in models for t in targets}


def main(argv=None) -> int:
    from nm_tvm.models import zoo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(FAST_MODELS),
                    help="comma-separated zoo names, or 'all'")
    ap.add_argument("--write", action="store_true", help="store the digests as the golden file")
    args = ap.parse_args(argv)
    models = sorted(zoo.BUILDERS) if args.models == "all" else args.models.split(",")
    now = digests(models)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    changed = [k for k, v in now.items() if k in golden and golden[k] != v]
    for key, value in now.items():
        mark = "CHANGED" if key in changed else ("new" if key not in golden else "same")
        print(f"{key:32s} {value['sha256'][:16]}  calls {value['calls']:4d}  {mark}")
    if args.write:
        golden.update(now)
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
