"""ONNX operator conformance: every ONNX backend node test case on the simulator.

    python benchmarks/conformance.py                      # all ~1,900 cases, fp32 preset
    python benchmarks/conformance.py --modules relu,gemm  # only these case modules (fast)
    python benchmarks/conformance.py --target nm/fp32-16x16 --json benchmarks/results/conformance.json
    python benchmarks/conformance.py --update-ledger      # all cases; also rewrite the ledger

Prints passed / failed / unsupported per operator and writes a JSON with every case, its
status and its reason (see nm_tvm/conformance.py for the rules; nm_tvm/support.py is the table
of claimed operators). Exit status 1 if any case failed.

``--update-ledger`` (``make ledger``) also rewrites tests/conformance_ledger.json, every case's
status from this run, which ``make test`` (tests/test_conformance.py) holds every case to. Run
it after a change that makes cases pass or become unsupported, and commit the ledger with the
change. A failed case is not a status: it keeps its recorded entry (the exit status is 1 and
make test keeps failing on it until it is fixed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nm_tvm import conformance

LEDGER = Path(__file__).resolve().parent.parent / "tests" / "conformance_ledger.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="nm/fp32-16x16")
    ap.add_argument("--modules", default=None,
                    help="comma-separated case modules of onnx.backend.test.case.node (default: all)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "conformance.json"))
    ap.add_argument("--all-ops", action="store_true",
                    help="list every operator in the table, not only claimed / compiled ones")
    ap.add_argument("--verbose", action="store_true", help="print each compiled case as it runs")
    ap.add_argument("--update-ledger", action="store_true",
                    help=f"also rewrite the per-case status ledger ({LEDGER.name}) checked by "
                         "make test (all cases only)")
    ap.add_argument("--ledger", default=str(LEDGER), help="ledger path for --update-ledger")
    args = ap.parse_args(argv)
    if args.update_ledger and args.modules:
        ap.error("--update-ledger runs every case: drop --modules")

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
    if args.update_ledger:
        ledger = Path(args.ledger)
        old = conformance.load_ledger(ledger) if ledger.is_file() else {"cases": {}}
        entries = conformance.ledger_entries(results, old["cases"])
        changed = sorted(n for n, e in entries.items()
                         if old["cases"].get(n, {}).get("status") != e["status"])
        gone = sorted(set(old["cases"]) - {r.name for r in results})
        ledger.write_text(conformance.format_ledger(entries, args.target))
        for name in changed if old["cases"] else ():
            print(f"ledger: {name}: {old['cases'].get(name, {}).get('status', 'new')} -> "
                  f"{entries[name]['status']}")
        for name in gone:
            print(f"ledger: {name}: removed (no longer an ONNX case)")
        for r in results:
            if r.status == "failed":
                print(f"ledger: {r.name}: FAILED, kept at its recorded status "
                      f"({old['cases'].get(r.name, {}).get('status', 'none')}): fix it")
        print(f"ledger: {len(entries)} cases, {len(changed)} status change(s), "
              f"{len(gone)} removed: {ledger}")
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
