"""Throughput per watt, accelerator vs CPU vs GPU (in the style of NeuralMatrix, arXiv 2305.14405).

* Accelerator: the simulated inference (cycle model and energy table of the target's hardware
  JSON): inferences/s = clock / cycles, power = energy per inference * inferences/s,
  inferences/J = 1 / energy per inference. The energy table's source is printed.
* CPU: ONNX Runtime (CPUExecutionProvider) on this host, measured in the same run (best of
  ``--repeat``, batch 1). Power is not measured: the figure used is stated with its source
  (``--cpu-watts`` overrides it).
* GPU: read from ``benchmarks/results/gpu_efficiency.json`` (written on a GPU machine by
  benchmarks/gpu_efficiency.py: PyTorch fp32, board power sampled with nvidia-smi).

Usage: python benchmarks/efficiency.py [--models resnet50,bert_base] [--target nm/...]
       [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

import nm_tvm
from nm_tvm.models import bert_base, bert_tiny, resnet50, small_cnn

ROOT = Path(__file__).resolve().parent
GPU_JSON = ROOT / "results" / "gpu_efficiency.json"
GPU_KEYS = {"resnet50": "resnet50", "bert_base": "bert_base_seq128"}

# CPU power. /proc/cpuinfo names the model; the power of a shared (virtualised) CPU is not
# measurable here, so a nominal per-logical-CPU share of a server CPU's TDP is used.
NOMINAL_W_PER_THREAD = 270.0 / 80  # Intel Xeon Platinum 8380: TDP 270 W, 40 cores / 80 threads
NOMINAL_SOURCE = ("nominal: Intel Xeon Platinum 8380 TDP 270 W (Intel ARK) / 80 threads = "
                  "3.375 W per logical CPU, times the logical CPUs ONNX Runtime used")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cases(names: list[str]):
    rng = np.random.default_rng(0)
    for name in names:
        if name == "resnet50":
            yield name, resnet50(), {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
        elif name == "bert_base":
            yield name, bert_base(seq=128), {
                "embeddings": rng.standard_normal((1, 128, 768)).astype(np.float32)}
        elif name == "bert_tiny":
            yield name, bert_tiny(seq=16), {
                "embeddings": rng.standard_normal((1, 16, 128)).astype(np.float32)}
        elif name == "small_cnn":
            yield name, small_cnn(), {"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
        else:
            raise SystemExit(f"unknown model {name}")


def measure_cpu(proto, inputs, repeat: int) -> tuple[float, int]:
    opts = ort.SessionOptions()
    threads = os.cpu_count() or 1
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    sess.run(None, inputs)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        best = min(best, time.perf_counter() - t0)
    return best, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,bert_base")
    parser.add_argument("--target", default=nm_tvm.DEFAULT_TARGET)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu-watts", type=float, help="CPU power to use (W); default nominal")
    parser.add_argument("--gpu-json", default=str(GPU_JSON))
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    console = Console(width=max(140, Console().width))
    gpu = json.loads(Path(args.gpu_json).read_text()) if Path(args.gpu_json).exists() else None
    rows = []
    model_name = cpu_model()
    for name, proto, inputs in cases(args.models.split(",")):
        console.print(f"[dim]{name}: compiling for {args.target} and simulating ...[/]")
        compiled = nm_tvm.compile(proto, target=args.target)
        compiled.run(inputs)
        s = compiled.stats.summary()
        rows.append({"model": name, "device": f"accelerator {compiled.hw.name} (simulated, "
                     f"{compiled.hw.clock_mhz:g} MHz)", "batch": 1,
                     "inferences_per_s": s["inferences_per_s"],
                     "power_w": s["average_power_mw"] * 1e-3,
                     "inferences_per_j": s["inferences_per_j"],
                     "power_source": f"energy model: {s['energy_source']}"})
        t, threads = measure_cpu(proto, inputs, args.repeat)
        watts = args.cpu_watts or NOMINAL_W_PER_THREAD * threads
        rows.append({"model": name, "device": f"CPU {model_name} x{threads} (ONNX Runtime "
                     f"{ort.__version__})", "batch": 1, "inferences_per_s": 1 / t,
                     "power_w": watts, "inferences_per_j": 1 / t / watts,
                     "power_source": "--cpu-watts" if args.cpu_watts else NOMINAL_SOURCE})
        if gpu:
            for r in gpu["results"]:
                if r["model"] == GPU_KEYS.get(name):
                    rows.append({"model": name, "device": f"GPU {gpu['gpu']} (PyTorch fp32)",
                                 "batch": r["batch"], "inferences_per_s": r["inferences_per_s"],
                                 "power_w": r["mean_power_w"],
                                 "inferences_per_j": r["inferences_per_j"],
                                 "power_source": f"nvidia-smi board power, measured "
                                                 f"{gpu['date']} (gpu_efficiency.json)"})
    table = Table(title="Throughput per watt (inferences/J = inferences/s per W)")
    for col in ("model", "device", "batch", "inferences/s", "power W", "inferences/J",
                "vs CPU"):
        table.add_column(col, justify="left" if col in ("model", "device") else "right")
    for r in rows:
        cpu = next(c for c in rows if c["model"] == r["model"] and c["device"].startswith("CPU"))
        r["vs_cpu_inferences_per_j"] = r["inferences_per_j"] / cpu["inferences_per_j"]
        table.add_row(r["model"], r["device"], str(r["batch"]), f"{r['inferences_per_s']:,.2f}",
                      f"{r['power_w']:.2f}", f"{r['inferences_per_j']:,.3f}",
                      f"{r['vs_cpu_inferences_per_j']:.2f}x")
    console.print(table)
    console.print("power sources:")
    for src in dict.fromkeys(r["power_source"] for r in rows):
        console.print(f"  [dim]- {src}[/]")
    if gpu:
        console.print(f"  [dim]- GPU: {gpu['gpu']}, driver {gpu['driver']}, torch {gpu['torch']},"
                      f" {gpu['precision']}; {gpu['power_method']}[/]")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
