"""ONNX operator conformance: every ONNX backend node test case on the simulator.

    python benchmarks/conformance.py                      # all ~1,900 cases, fp32 preset
    python benchmarks/conformance.py --modules relu,gemm  # only these case modules (fast)
    python benchmarks/conformance.py --target nm/fp32-16x16 --json benchmarks/results/conformance.json

Prints passed / failed / unsupported per operator and writes a JSON with every case, its
status and its reason (see nm_tvm/conformance.py for the rules; nm_tvm/support.py is the table
of claimed operators). Exit status 1 if any case failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nm_tvm import conformance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nm/fp32-16x16")
    ap.add_argument("--modules", default=None,
                    help="comma-separated case modules of onnx.backend.test.case.node (default: all)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "conformance.json"))
    ap.add_argument("--all-ops", action="store_true",
                    help="list every operator in the table, not only claimed / compiled ones")
    ap.add_argument("--verbose", action="store_true", help="print each compiled case as it runs")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    cases = conformance._quiet_collect(args.modules.split(",") if args.modules else None)
    results = conformance.run_cases(cases, args.target, progress=args.verbose)
    data = conformance.report(results, args.target)
    data["seconds"] = round(time.perf_counter() - start, 1)
    data["modules"] = args.modules or "all"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(data, indent=1))
    s = data["summary"]
    print(conformance.format_table(s, only_claimed=not args.all_ops))
    print(f"\n{s['total']} cases: {s['passed']} passed, {s['failed']} failed, "
          f"{s['unsupported']} unsupported ({data['seconds']} s, target {args.target}); "
          f"JSON: {args.json}")
    for r in results:
        if r.status == "failed":
            print(f"FAILED {r.name}: {r.reason}")
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
