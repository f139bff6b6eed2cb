"""Real pretrained models, GEMM-only on the simulator, against ONNX Runtime on real inputs.

* MiniLM sentence encoders (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2): cosine similarity of
  the sentence embedding (simulator vs ORT) on real sentences; calibrated on other sentences.
* The shipped paraphrase-MiniLM-L3-v2 ONNX as exported (int64 ids and mask, embedding Gathers
  and masked pooling in the graph), compiled with the default settings (no calibration given).
* PP-LCNet page orientation: class agreement with ORT on rendered pages in four rotations.
* PP-OCRv6 recognition: decoded string identical to ORT's on rendered words (Pillow).
* PP-OCR text-line classifier: class agreement with ORT on rendered lines, upright and 180.
* PP-OCRv4 recognition (the rapidocr-onnxruntime export, chained computed Reshapes): as v6.
* PP-OCRv4 and PP-OCRv6 text detection: the DB probability map against ORT's on rendered
  pages (max error, the thresholded map, text regions found).
* NudeNet YOLOv8n: raw boxes / class scores and the post-processed detections against ORT's on
  rendered scenes and pages.
* Silero VAD (If on the int64 sample rate, fixed by input_values; LSTM state streamed): the
  speech probability per 32 ms chunk against ORT's on synthesized audio.
* Magika file types: top-1 class agreement with ORT on real files, default settings.
Every ONNX file is the one its package ships, compiled strict (GEMM-only).
Usage: python benchmarks/real_models.py [--pages N] [--words N] [--json out.json]
                                        [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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


def _compiled(name: str, calibration):
    """(model, compiled with calibration on the given inputs, compile seconds)."""
    model = pretrained.load(name)
    t0 = time.perf_counter()
    compiled = nm_tvm.compile(model.onnx, input_shapes=model.input_shapes,
                              calibration=calibration, input_values=model.input_values or None)
    return model, compiled, time.perf_counter() - t0


def _common(name: str, compiled, compile_s: float) -> dict:
    return {"model": name, "gemm_only": compiled.host_ops == [], "layers": len(compiled.layers),
            "calibration": compiled.calibration, "compile_s": round(compile_s, 2),
            "cycles": compiled.stats.cycles,
            "linearized_cycle_share": compiled.stats.linearized_cycle_share}


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


def ocr(n_words: int, name: str = "ppocrv6-rec") -> dict:
    model, compiled, compile_s = _compiled(name, _text_images(name, 3, seed=99))
    same = correct = 0
    words = _words(n_words)
    for word in words:
        inputs = pretrained.preprocess(name, "image", pretrained.render_text(word))
        sim = pretrained.ctc_decode(compiled.run(inputs)[0], model.characters)
        ref = pretrained.ctc_decode(pretrained._ort(model.onnx, inputs)[0], model.characters)
        same += sim == ref
        correct += sim.strip() == word
    return {**_common(name, compiled, compile_s), "images": len(words),
            "identical_to_ort": same / len(words), "simulator_exact_text": correct / len(words)}


def text_detection(pages: int, name: str = "ppocrv4-det") -> dict:
    """PP-OCR detection on rendered pages (seeds 0..pages-1), calibrated on two others."""
    size = pretrained.DET_SIZE
    model, compiled, compile_s = _compiled(
        name, [pretrained.preprocess(name, "image", pretrained.render_page(size, 100 + i))
               for i in range(2)])
    err = agree = 0.0
    same_regions = lines_found = 0
    for seed in range(pages):
        inputs = pretrained.preprocess(name, "image", pretrained.render_page(size, seed))
        sim, ref = compiled.run(inputs)[0], pretrained._ort(model.onnx, inputs)[0]
        err = max(err, float(np.abs(sim - ref).max()))
        agree = max(agree, float(((sim > 0.3) != (ref > 0.3)).mean()))
        regions = pretrained.text_regions(sim)
        same_regions += regions == pretrained.text_regions(ref)
        lines_found += len(regions) == len(pretrained.render_page_lines(size, seed))
    return {**_common(name, compiled, compile_s), "input": [size, size], "pages": pages,
            "max_abs_err_probability": err, "max_fraction_of_pixels_flipped_at_0.3": agree,
            "regions_identical_to_ort": same_regions / pages,
            "pages_with_one_region_per_line": lines_found / pages}


def detector(scenes: int) -> dict:
    """NudeNet on rendered portraits and text pages, calibrated on two other portraits."""
    name = "nudenet"
    model, compiled, compile_s = _compiled(
        name, [pretrained.preprocess(name, "image", pretrained.render_scene(100 + i))
               for i in range(2)])
    images = [pretrained.render_scene(i) for i in range(scenes)] + \
        [pretrained.render_page(pretrained.NUDENET_SIZE, i) for i in range(3)]
    box_err = score_err = det_box_err = det_score_err = 0.0
    same = n_dets = 0
    for image in images:
        inputs = pretrained.preprocess(name, "image", image)
        sim, ref = compiled.run(inputs)[0], pretrained._ort(model.onnx, inputs)[0]
        box_err = max(box_err, float(np.abs(sim[0, :4] - ref[0, :4]).max()))
        score_err = max(score_err, float(np.abs(sim[0, 4:] - ref[0, 4:]).max()))
        got, want = pretrained.nudenet_detections(sim), pretrained.nudenet_detections(ref)
        n_dets += len(want)
        match = [g["class"] == w["class"] for g, w in zip(got, want)]
        same += len(got) == len(want) and all(match)
        for g, w in zip(got, want):
            det_box_err = max(det_box_err, max(abs(a - b) for a, b in zip(g["box"], w["box"])))
            det_score_err = max(det_score_err, abs(g["score"] - w["score"]))
    return {**_common(name, compiled, compile_s), "images": len(images),
            "ort_detections": n_dets, "images_with_identical_detections": same / len(images),
            "max_abs_err_box_px_detections": det_box_err,
            "max_abs_err_score_detections": det_score_err,
            "max_abs_err_box_px_all_anchors": box_err,
            "max_abs_err_score_all_anchors": score_err}


CLIPS = [((1.0, 2.0), 0), ((0.4, 1.1), 1), ((1.6, 2.7), 2)]


def _vad_metrics(compiled, model) -> dict:
    err, flips, chunks, detected = 0.0, 0, 0, 0
    for voiced, seed in CLIPS:
        audio = pretrained.synth_speech(voiced=voiced, seed=seed)
        sim = pretrained.vad_stream(audio, compiled.run)
        ref = pretrained.vad_stream(audio, lambda d: pretrained._ort(model.onnx, d))
        err = max(err, float(np.abs(sim - ref).max()))
        flips += int(((sim > 0.5) != (ref > 0.5)).sum())
        chunks += len(sim)
        detected += bool((sim > 0.5).any())
    return {"calibration": compiled.calibration, "max_abs_err_probability": err,
            "decisions_flipped_at_0.5": flips, "chunks": chunks,
            "clips_with_speech_detected": detected}


def vad() -> dict:
    """Silero VAD streamed over synthesized clips: default settings, and calibrated on the
    calls ORT saw on another clip (its state inputs included)."""
    name = "silero-vad"
    model = pretrained.load(name)
    seen = []

    def record(inputs):
        seen.append({k: v for k, v in inputs.items() if k != "sr"})
        return pretrained._ort(model.onnx, inputs)

    pretrained.vad_stream(pretrained.synth_speech(voiced=(0.5, 1.5), seed=9), record)
    model, compiled, compile_s = _compiled(name, None)
    default = _vad_metrics(compiled, model)
    calibrated = _vad_metrics(_compiled(name, seen[::4])[1], model)
    return {**_common(name, compiled, compile_s), "clips": len(CLIPS),
            "ort_clips_with_speech_detected": sum(
                bool((pretrained.vad_stream(pretrained.synth_speech(voiced=v, seed=s), lambda d:
                      pretrained._ort(model.onnx, d)) > 0.5).any()) for v, s in CLIPS),
            **default, "calibrated": calibrated}


def _magika_files() -> dict[str, bytes]:
    """Files of this repository and of installed packages, and the loader's made-up ones."""
    import glob
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    root = Path(__file__).resolve().parent.parent
    paths = [root / p for p in ("README.md", "Makefile", "CMakeLists.txt", "pyproject.toml",
                                "target/isa_spec.json", "target/csrc/simulator.cc",
                                "docs/ISA.md", "nm_tvm/frontend.py")]
    paths += [site / p for p in ("numpy/__init__.py", "PIL/Image.py",
                                 "magika/config/content_types_kb.min.json",
                                 "rapidocr_onnxruntime/config.yaml")]
    paths += [Path(p) for p in sorted(glob.glob(str(site / "numpy/_core/*.so")))[:1]]
    files = {str(p.relative_to(root if root in p.parents else site)): p.read_bytes()
             for p in paths if p.is_file()}
    files.update({f"made-up {k}": v for k, v in pretrained.sample_files().items()})
    return files


def _file_type_metrics(compiled, model, files: dict) -> dict:
    rows, agree = [], 0
    for path, data in files.items():
        inputs = pretrained.magika_features(data)
        sim, ref = compiled.run(inputs)[0][0], pretrained._ort(model.onnx, inputs)[0][0]
        agree += sim.argmax() == ref.argmax()
        rows.append({"file": path, "simulator": model.labels[int(sim.argmax())],
                     "ort": model.labels[int(ref.argmax())],
                     "max_abs_err": float(np.abs(sim - ref).max())})
    return {"calibration": compiled.calibration, "top1_agreement_with_ort": agree / len(rows),
            "max_abs_err_probability": max(r["max_abs_err"] for r in rows), "per_file": rows}


def file_types() -> dict:
    """Magika: calibrated on two files outside the set, and with the default settings."""
    import tvm

    name = "magika"
    model = pretrained.load(name)
    files = _magika_files()
    root = Path(__file__).resolve().parent.parent
    others = [Path(tvm.__file__).read_bytes(), (root / "docs/ARCHITECTURE.md").read_bytes()]
    model, compiled, compile_s = _compiled(name, [pretrained.magika_features(d) for d in others])
    calibrated = _file_type_metrics(compiled, model, files)
    default = _file_type_metrics(_compiled(name, None)[1], model, files)
    return {**_common(name, compiled, compile_s), "files": len(files), **calibrated,
            "default_settings": {k: v for k, v in default.items() if k != "per_file"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--json")
    parser.add_argument("--only", nargs="*", help="run these rows only (names as below); with "
                        "--json, replaces those rows in the file and keeps the others")
    args = parser.parse_args()
    rows = {
        "paraphrase-minilm-l3": lambda: minilm("paraphrase-minilm-l3"),
        "minilm-l6": lambda: minilm("minilm-l6"),
        "shipped-minilm": shipped_minilm,
        "pplcnet-orientation": lambda: orientation(args.pages),
        "ppocr-cls": lambda: line_classifier(max(1, args.words // 5)),
        "ppocrv6-rec": lambda: ocr(args.words),
        "ppocrv4-rec": lambda: ocr(args.words, "ppocrv4-rec"),
        "ppocrv4-det": lambda: text_detection(args.pages),
        "ppocrv6-det": lambda: text_detection(args.pages, "ppocrv6-det"),
        "nudenet": lambda: detector(args.scenes),
        "silero-vad": vad,
        "magika": file_types,
    }
    unknown = set(args.only or []) - set(rows)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; rows: {', '.join(rows)}")
    results = []
    if args.only and args.json and Path(args.json).is_file():
        results = [r for r in json.loads(Path(args.json).read_text())
                   if _row_name(r) not in args.only]
    for key, run in rows.items():
        if args.only and key not in args.only:
            continue
        result = run()
        result["row"] = key
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "per_file"}), flush=True)
    order = list(rows)
    results.sort(key=lambda r: order.index(_row_name(r)) if _row_name(r) in order else 99)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def _row_name(result: dict) -> str:
    """A result's row key (rows written before keys existed are named by their model)."""
    if "row" in result:
        return result["row"]
    model = result.get("model", "")
    return "shipped-minilm" if "shipped" in model else model


if __name__ == "__main__":
    main()
