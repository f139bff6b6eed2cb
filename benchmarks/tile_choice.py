"""LOOP_GEMM tile choice: the static estimate alone against the simulator-ranked shortlist.

codegen ranks every fitting tiling by the static estimate (nm_tvm.target.cost_model) and, with
SHORTLIST > 1, lets the simulator's timing pass pick among the first SHORTLIST (target/codegen/
gemm.py; the default, 1, is the static choice alone). Here each zoo model is compiled with the
static choice and with RANKED candidates ranked, and every layer program is timed with
``simulator.estimate``; printed: total cycles, the ratio, compile times.

    python benchmarks/tile_choice.py [--models small_cnn,mlp,...] [--targets nm/fp32-16x16,...]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "tile_choice.json"
MODELS = ("small_cnn", "mlp", "bert_tiny", "vit_tiny", "gpt2_block", "mobilenet_v2", "resnet18")
TARGETS = ("nm/fp32-16x16", "nm/bf16-32x32")
RANKED = 8


def model_cycles(name: str, target: str, shortlist: int) -> tuple[int, float]:
    import nm_tvm
    from nm_tvm.cli.cmd_compile import _programs
    from nm_tvm.models import zoo
    from nm_tvm.target import simulator
    from nm_tvm.target.codegen import gemm

    gemm.SHORTLIST = shortlist
    gemm._choose_gemm_tiles.cache_clear()
    model = zoo.BUILDERS[name]()
    start = time.perf_counter()
    compiled = nm_tvm.compile(model, target=target)
    seconds = time.perf_counter() - start
    programs = _programs(compiled.offloaded_module)
    return sum(simulator.estimate(p)["cycles"] for p in programs.values()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    from nm_tvm.target.codegen import gemm

    default = gemm.SHORTLIST
    rows = []
    print(f"{'model':<14} {'target':<16} {'static cycles':>14} {'ranked cycles':>14} "
          f"{'ratio':>6} {'compile s (static / ranked)':>28}")
    for target in args.targets.split(","):
        for name in args.models.split(","):
            static, t_static = model_cycles(name, target, 1)
            ranked, t_ranked = model_cycles(name, target, RANKED)
            rows.append({"model": name, "target": target, "static_cycles": static,
                         "ranked_cycles": ranked, "ratio": ranked / static,
                         "compile_s_static": round(t_static, 2),
                         "compile_s_ranked": round(t_ranked, 2)})
            print(f"{name:<14} {target:<16} {static:>14,} {ranked:>14,} {ranked / static:>6.3f} "
                  f"{t_static:>13.2f} / {t_ranked:.2f}")
    gemm.SHORTLIST = default
    RESULTS.write_text(json.dumps({"shortlist": RANKED, "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
