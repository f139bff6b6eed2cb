"""GPU throughput and board power for the benchmark models (the GPU side of benchmarks/efficiency.py).

Run on a machine with an NVIDIA GPU, PyTorch (CUDA) and nvidia-smi:

    python benchmarks/gpu_efficiency.py --out benchmarks/results/gpu_efficiency.json

For each model (ResNet-50 at 1x3x224x224 and BERT-base encoder at seq 128, the same
architectures and shapes as ``models.zoo.resnet50`` / ``models.zoo.bert_base``; random weights)
and batch size it runs inference in a timed loop for ``--seconds`` while
``nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits -lms 100`` samples the board
power in the background, and records inferences/s, mean board power during the loop and
inferences/J (= inferences/s / W). The models are PyTorch equivalents written here (torchvision's
ResNet-50 when torchvision is installed); the ONNX files of models/ are not needed on the GPU box.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import threading
import time

import torch
from torch import nn


# ---------------------------------------------------------------------------- models
class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                   nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.down(x))


def resnet50() -> tuple[nn.Module, str]:
    try:
        import torchvision

        return torchvision.models.resnet50(weights=None), "torchvision.models.resnet50"
    except ImportError:
        pass
    layers, c_in, blocks = [], 64, []
    for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(count):
            blocks.append(Bottleneck(c_in, width, stride if i == 0 else 1))
            c_in = width * 4
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
              nn.Linear(2048, 1000)]
    return nn.Sequential(*layers), "ResNet-50 (PyTorch, written in gpu_efficiency.py)"


class BertEncoder(nn.Module):
    """models.zoo.bert_base: embeddings LayerNorm, 12 post-norm layers, GELU (erf), eps 1e-12."""

    def __init__(self, layers=12, hidden=768, heads=12, intermediate=3072):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        layer = nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout=0.0,
                                           activation="gelu", layer_norm_eps=1e-12,
                                           batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(self.norm(x))


MODELS = {
    "resnet50": (resnet50, lambda b: (b, 3, 224, 224)),
    "bert_base_seq128": (lambda: (BertEncoder(), "BERT-base encoder (torch.nn.TransformerEncoder)"),
                         lambda b: (b, 128, 768)),
}


# ---------------------------------------------------------------------------- power sampling
class PowerSampler:
    """Background ``nvidia-smi -lms`` reading board power (W) of one GPU."""

    def __init__(self, gpu: int = 0, period_ms: int = 100):
        self.cmd = ["nvidia-smi", f"--id={gpu}", "--query-gpu=power.draw",
                    "--format=csv,noheader,nounits", f"-lms={period_ms}"]
        self.samples: list[tuple[float, float]] = []

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:
                pass

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.thread.join(timeout=2)

    def mean(self, t0: float, t1: float) -> tuple[float, int]:
        window = [w for t, w in self.samples if t0 <= t <= t1]
        return (sum(window) / len(window) if window else math.nan), len(window)


def smi(query: str) -> str:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[0]


def measure(model: nn.Module, shape, seconds: float, sampler: PowerSampler) -> dict:
    x = torch.randn(*shape, device="cuda")
    with torch.inference_mode():
        for _ in range(10):  # warm-up (cuDNN autotune, allocator)
            model(x)
        torch.cuda.synchronize()
        # calibrate a loop length of about `seconds`
        t0 = time.perf_counter()
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        per = (time.perf_counter() - t0) / 5
        iters = max(20, int(seconds / per))
        t_start = time.time()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        t_end = time.time()
    time.sleep(0.25)  # let the sampler deliver the last readings
    power, n = sampler.mean(t_start + 0.3, t_end)  # skip the first sample period of ramp-up
    ips = iters * shape[0] / wall
    return {"iterations": iters, "wall_s": wall, "latency_ms": wall / iters * 1e3,
            "inferences_per_s": ips, "mean_power_w": power, "power_samples": n,
            "inferences_per_j": ips / power if power == power else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/gpu_efficiency.json")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 math, like the fp32 reference target
    torch.backends.cudnn.allow_tf32 = False
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": smi("name"), "driver": smi("driver_version"),
        "power_limit_w": smi("power.limit"), "torch": torch.__version__,
        "cuda": torch.version.cuda, "precision": "fp32 (TF32 off)",
        "power_method": "nvidia-smi --query-gpu=power.draw -lms 100, mean over the timed loop",
    }
    with PowerSampler() as sampler:
        time.sleep(1.0)
        info["idle_power_w"], _ = sampler.mean(0, time.time())
        results = []
        for name in args.models.split(","):
            build, shape = MODELS[name]
            model, impl = build()
            model = model.cuda().eval()
            for batch in (int(b) for b in args.batches.split(",")):
                r = measure(model, shape(batch), args.seconds, sampler)
                r.update(model=name, implementation=impl, batch=batch, input_shape=list(shape(batch)))
                results.append(r)
                print(f"{name:>18} batch {batch:2d}: {r['inferences_per_s']:9.1f} inf/s "
                      f"{r['mean_power_w']:6.1f} W  {r['inferences_per_j']:.3f} inf/J", flush=True)
            del model
            torch.cuda.empty_cache()
    info["results"] = results
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
