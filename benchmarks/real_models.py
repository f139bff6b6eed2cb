"""Real pretrained models, GEMM-only on the simulator, against ONNX Runtime on real inputs.

* MiniLM sentence encoders (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2): cosine similarity of
  the sentence embedding (simulator vs ORT) on real sentences; calibrated on other sentences.
* The shipped paraphrase-MiniLM-L3-v2 ONNX as exported (int64 ids and mask, embedding Gathers
  and masked pooling in the graph), compiled with the default settings (no calibration given).
* PP-LCNet page orientation: class agreement with ORT on rendered pages in four rotations.
* PP-OCRv6 recognition: decoded string identical to ORT's on rendered words (Pillow).
* PP-OCR text-line classifier: class agreement with ORT on rendered lines, upright and 180.
Usage: python benchmarks/real_models.py [--pages N] [--words N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import nm_tvm
from nm_tvm.models import pretrained

CALIBRATION_SENTENCES = [
    "The weather is lovely today.", "He drove to the station in the rain.",
    "Matrix multiplication is the core of neural networks.", "She plays the violin well.",
]
SENTENCES = [
    "A man is playing a guitar.", "Someone is playing an instrument.",
    "The cat sleeps on the sofa.", "A kitten is napping on the couch.",
    "Stock markets fell sharply on Monday.", "Shares dropped at the start of the week.",
    "I would like a cup of coffee.", "Can I have some tea, please?",
    "The compiler turns the network into matrix operations.",
    "The children are building a sandcastle.", "Heavy snow closed the mountain roads.",
    "The museum opens at nine in the morning.",
]


def _compiled(name: str, calibration: list):
    """(model, compiled with calibration on the given inputs, compile seconds)."""
    model = pretrained.load(name)
    t0 = time.perf_counter()
    compiled = nm_tvm.compile(model.onnx, input_shapes=model.input_shapes,
                              calibration=calibration)
    return model, compiled, time.perf_counter() - t0


def _text_images(name: str, n: int, seed: int) -> list:
    return [pretrained.preprocess(name, "image", pretrained.render_text(w))
            for w in _words(n, seed=seed)]


def minilm(name: str) -> dict:
    model, compiled, compile_s = _compiled(
        name, [pretrained.minilm_inputs(name, s, pretrained.TEXT_SEQ)
               for s in CALIBRATION_SENTENCES])
    cosines = []
    for sentence in SENTENCES:
        inputs = pretrained.minilm_inputs(name, sentence, pretrained.TEXT_SEQ)
        sim = pretrained.sentence_embedding(compiled.run(inputs)[0], inputs["attention_bias"])
        ref = pretrained.sentence_embedding(pretrained._ort(model.onnx, inputs)[0],
                                            inputs["attention_bias"])
        cosines.append(float(sim @ ref))
    return {"model": name, "gemm_only": compiled.host_ops == [], "layers": len(compiled.layers),
            "sentences": len(SENTENCES), "min_cosine": min(cosines),
            "mean_cosine": float(np.mean(cosines)), "compile_s": compile_s,
            "cycles": compiled.stats.cycles,
            "linearized_cycle_share": compiled.stats.linearized_cycle_share,
            "task": pretrained.task_check(name, run=compiled.run).detail}


def shipped_minilm() -> dict:
    proto = pretrained.shipped_minilm()
    seq = 32
    shapes = {"input_ids": (1, seq), "attention_mask": (1, seq)}
    t0 = time.perf_counter()
    compiled = nm_tvm.compile(proto, input_shapes=shapes)  # defaults: nothing given
    compile_s = time.perf_counter() - t0
    cosines = []
    for sentence in SENTENCES:
        inputs = pretrained.shipped_minilm_inputs(sentence, seq)
        sim, ref = compiled.run(inputs)[3].ravel(), pretrained._ort(proto, inputs)[3].ravel()
        cosines.append(float(sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref)))
    return {"model": "paraphrase-MiniLM-L3-v2 (shipped ONNX)", "gemm_only": compiled.host_ops == [],
            "layers": len(compiled.layers), "sentences": len(SENTENCES), "seq": seq,
            "calibration": compiled.calibration, "min_cosine": min(cosines),
            "mean_cosine": float(np.mean(cosines)), "compile_s": compile_s,
            "cycles": compiled.stats.cycles,
            "linearized_cycle_share": compiled.stats.linearized_cycle_share}


def orientation(pages: int) -> dict:
    name = "pplcnet-orientation"
    model, compiled, _ = _compiled(
        name, [pretrained.preprocess(name, "image", pretrained.render_page(seed=100 + i))
               for i in range(2)])
    agree = total = correct = 0
    for seed in range(pages):
        page = pretrained.render_page(seed=seed)
        for angle, label in ((0, "0"), (90, "90"), (180, "180"), (270, "270")):
            inputs = pretrained.preprocess(name, "image", page.rotate(angle, expand=True))
            sim = int(compiled.run(inputs)[0].argmax())
            ref = int(pretrained._ort(model.onnx, inputs)[0].argmax())
            agree += sim == ref
            correct += model.labels[sim] == label
            total += 1
    return {"model": name, "gemm_only": compiled.host_ops == [], "layers": len(compiled.layers),
            "images": total, "agreement_with_ort": agree / total,
            "simulator_accuracy": correct / total, "cycles": compiled.stats.cycles}


WORDS = ("accelerator matrix compiler tensor program simulator layer model kernel energy cycle "
         "memory systolic array weight stationary table segment linear vector").split()


def _words(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        word = " ".join(rng.choice(WORDS, rng.integers(1, 3)))
        out.append(word.capitalize() + (f" {rng.integers(0, 2026)}" if i % 3 == 0 else ""))
    return out


def ocr(n_words: int) -> dict:
    name = "ppocrv6-rec"
    model, compiled, _ = _compiled(name, _text_images(name, 3, seed=99))
    same = correct = 0
    words = _words(n_words)
    for word in words:
        inputs = pretrained.preprocess(name, "image", pretrained.render_text(word))
        sim = pretrained.ctc_decode(compiled.run(inputs)[0], model.characters)
        ref = pretrained.ctc_decode(pretrained._ort(model.onnx, inputs)[0], model.characters)
        same += sim == ref
        correct += sim.strip() == word
    return {"model": name, "gemm_only": compiled.host_ops == [], "layers": len(compiled.layers),
            "images": len(words), "identical_to_ort": same / len(words),
            "simulator_exact_text": correct / len(words), "cycles": compiled.stats.cycles,
            "linearized_cycle_share": compiled.stats.linearized_cycle_share}


def line_classifier(n_words: int) -> dict:
    name = "ppocr-cls"
    model, compiled, _ = _compiled(name, _text_images(name, 2, seed=98))
    agree = total = 0
    for word in _words(n_words, seed=1):
        for angle in (0, 180):
            inputs = pretrained.preprocess(name, "image", pretrained.render_text(word).rotate(angle))
            agree += int(compiled.run(inputs)[0].argmax()) == int(
                pretrained._ort(model.onnx, inputs)[0].argmax())
            total += 1
    return {"model": name, "gemm_only": compiled.host_ops == [], "layers": len(compiled.layers),
            "images": total, "agreement_with_ort": agree / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = []
    for name in ("paraphrase-minilm-l3", "minilm-l6"):
        results.append(minilm(name))
        print(json.dumps(results[-1]))
    results.append(shipped_minilm())
    print(json.dumps(results[-1]))
    results.append(orientation(args.pages))
    print(json.dumps(results[-1]))
    results.append(line_classifier(max(1, args.words // 5)))
    print(json.dumps(results[-1]))
    results.append(ocr(args.words))
    print(json.dumps(results[-1]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
