"""The model zoo (random weights) and the real pretrained models with their task checks."""
import numpy as np
import onnx
import pytest

import nm_tvm
from nm_tvm import frontend
from nm_tvm.models import pretrained, zoo
from nm_tvm.per_layer import first_divergence, match_layers
from nm_tvm.validate import compare, onnx_runtime_outputs

SMALL = {
    "resnet18": lambda: zoo.resnet18(size=32, width=8, classes=10),
    "resnet50": lambda: zoo.resnet50(size=32, width=8, classes=10),
    "mobilenet_v2": lambda: zoo.mobilenet_v2(size=32, width_mult=0.25, classes=10),
    "bert_tiny": lambda: zoo.bert_tiny(seq=8),
    "vit_tiny": zoo.vit_tiny,
    "gpt2_block": lambda: zoo.gpt2_block(seq=8, hidden=64, heads=2),
}


def _inputs(proto, seed=0):
    return frontend.random_inputs(frontend.import_onnx(proto), seed)


@pytest.mark.parametrize("name", list(SMALL))
def test_zoo_builders_write_valid_onnx_that_runs(name):
    proto = SMALL[name]()
    onnx.checker.check_model(proto, full_check=True)
    out = onnx_runtime_outputs(proto, _inputs(proto))[0]
    assert np.all(np.isfinite(out)) and np.std(out) > 0


def test_transformer_builders_use_the_exported_op_forms():
    ops = {n.op_type for n in zoo.bert_tiny().graph.node}
    assert {"LayerNormalization", "Softmax", "Erf", "MatMul", "Transpose"} <= ops
    assert "Tanh" in {n.op_type for n in zoo.gpt2_block(seq=4, hidden=32, heads=2).graph.node}
    ops = {n.op_type for n in SMALL["mobilenet_v2"]().graph.node}
    assert "Clip" in ops and any(a.name == "group" and a.i > 1 for n in
                                 SMALL["mobilenet_v2"]().graph.node for a in n.attribute)


@pytest.mark.parametrize("name", ["bert_tiny", "gpt2_block"])
def test_small_transformers_gemm_only_on_the_simulator(name):
    """Linearized (default ranges, no calibration): every op on the accelerator."""
    proto = SMALL[name]()
    compiled = nm_tvm.compile(proto)
    assert compiled.host_ops == []
    x = _inputs(proto)
    cmp_ = compare("out", compiled.run(x)[0], onnx_runtime_outputs(proto, x)[0])
    assert cmp_.cosine >= 0.999 and cmp_.max_rel_err < 5e-3, cmp_


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "vit_tiny"])
def test_cnns_and_vit_on_the_simulator(name):
    """GEMM-only; calibrated on another input (ViT's first LayerNorm sees variances far below
    the uncalibrated default range: its class token is nearly constant)."""
    proto = SMALL[name]()
    imported = frontend.import_model(proto)
    compiled = nm_tvm.compile(proto, calibration=[frontend.random_inputs(imported, seed=7)])
    assert compiled.host_ops == []
    x = _inputs(proto)
    cmp_ = compare("out", compiled.run(x)[0], onnx_runtime_outputs(proto, x)[0])
    assert cmp_.max_rel_err < 2e-2, cmp_


@pytest.mark.slow
def test_full_size_presets_build():
    for proto in (zoo.resnet50(), zoo.bert_base(), zoo.vit(), zoo.mobilenet_v2()):
        onnx.checker.check_model(proto)


def test_per_layer_finds_the_first_divergent_layer():
    """A reference whose 'expand' conv weights differ: layers before it match, it diverges."""
    from nm_tvm.models import small_cnn

    proto = small_cnn()
    compiled = nm_tvm.compile(proto)
    changed = onnx.ModelProto()
    changed.CopyFrom(proto)
    for init in changed.graph.initializer:
        if init.name == "expand.weight":
            w = onnx.numpy_helper.to_array(init) * 1.5
            init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    x = _inputs(proto)
    assert first_divergence(match_layers(compiled, proto, x, 1e-5)) is None
    first = first_divergence(match_layers(compiled, changed, x, 1e-5))
    assert first is not None and first.layer == "expand"  # named as in the ONNX model


# ----------------------------------------------------------------------------- real models
def _need(name):
    reason = pretrained.available(name)
    if reason:
        pytest.skip(f"{name}: {reason}")


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_pretrained_task_check_in_onnx_runtime(name):
    _need(name)
    result = pretrained.task_check(name)
    assert result.passed, result.detail


def test_bert_builder_reproduces_the_shipped_minilm_onnx():
    """paraphrase-MiniLM-L3: weights taken from the shipped ONNX, graph written by
    zoo.bert_encoder; same last hidden state as the shipped graph."""
    _need("paraphrase-minilm-l3")
    assert pretrained.reference_check() < 1e-4


def test_minilm_sentence_similarity_on_the_simulator():
    _need("minilm-l6")
    model = pretrained.load("minilm-l6")
    compiled = nm_tvm.compile(model.onnx, input_shapes=model.input_shapes)
    assert compiled.host_ops == []
    result = pretrained.task_check("minilm-l6", run=compiled.run)
    assert result.passed, result.detail


def test_shipped_minilm_onnx_runs_gemm_only_and_accurate_by_default():
    """The paraphrase-MiniLM-L3 ONNX as its package ships it (int64 ids and mask, embedding
    Gathers, masked mean pooling): strict GEMM-only with no calibration given, sentence
    embedding cosine to ORT >= 0.999 (measured 0.99998: synthetic in-vocabulary calibration)."""
    _need("paraphrase-minilm-l3")
    proto = pretrained.shipped_minilm()
    seq = 16
    compiled = nm_tvm.compile(proto, input_shapes={"input_ids": (1, seq),
                                                   "attention_mask": (1, seq)})
    assert compiled.host_ops == []
    assert compiled.calibration.startswith("synthetic")
    for sentence in ("A man is playing a guitar.", "Heavy snow closed the mountain roads."):
        inputs = pretrained.shipped_minilm_inputs(sentence, seq)
        assert inputs["attention_mask"].sum() < seq  # padding present and masked
        sim = compiled.run(inputs)[3].ravel()
        ref = pretrained._ort(proto, inputs)[3].ravel()
        assert sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref) >= 0.999
    with pytest.raises(ValueError, match="tokens; the model is compiled for 16"):
        pretrained.shipped_minilm_inputs("word " * 40, seq)


def _compiled(name):
    """The shipped ONNX compiled strict with the default settings (and its fixed inputs)."""
    _need(name)
    model = pretrained.load(name)
    compiled = nm_tvm.compile(model.onnx, input_shapes=model.input_shapes,
                              input_values=model.input_values or None)
    assert compiled.host_ops == []  # GEMM-only
    return model, compiled


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppocrv6-rec", "ppocrv4-rec", "ppocr-cls",
                                  "pplcnet-orientation", "ppocrv4-det", "ppocrv6-det", "nudenet",
                                  "silero-vad", "magika"])
def test_real_model_task_checks_on_the_simulator(name):
    model, compiled = _compiled(name)
    result = pretrained.task_check(name, run=compiled.run)
    assert result.passed, result.detail


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppocrv4-det", "ppocrv6-det"])
def test_ppocr_detection_probability_map_matches_ort(name):
    """Measured max |sim - ORT| 2.6e-3 / 2.9e-3 (default ranges); the regions are identical."""
    model, compiled = _compiled(name)
    inputs = pretrained.preprocess(name, "image",
                                   pretrained.render_page(pretrained.DET_SIZE, seed=0))
    sim, ref = compiled.run(inputs)[0], pretrained._ort(model.onnx, inputs)[0]
    assert np.abs(sim - ref).max() < 1e-2
    assert pretrained.text_regions(sim) == pretrained.text_regions(ref)


@pytest.mark.slow
def test_nudenet_detections_match_ort():
    """A rendered portrait the detector finds one box in (BUTTOCKS_COVERED at 0.46 in ORT: a
    cartoon is out of its domain); same class, box within a pixel, score within 0.01."""
    model, compiled = _compiled("nudenet")
    inputs = pretrained.preprocess("nudenet", "image", pretrained.render_scene(11))
    got = pretrained.nudenet_detections(compiled.run(inputs)[0])
    want = pretrained.nudenet_detections(pretrained._ort(model.onnx, inputs)[0])
    assert len(want) == 1 and [d["class"] for d in got] == [d["class"] for d in want]
    assert max(abs(a - b) for a, b in zip(got[0]["box"], want[0]["box"])) < 1.0
    assert abs(got[0]["score"] - want[0]["score"]) < 0.01


@pytest.mark.slow
def test_silero_vad_streams_like_ort():
    """The sample rate fixed at compile time (the If on it folded), the LSTM state fed back
    call after call: per-chunk speech probability within 0.05 of ORT's (measured 0.033), the
    same speech / non-speech decision at 0.5 in every chunk; ORT-style calls passing sr work."""
    model, compiled = _compiled("silero-vad")
    assert compiled.input_names == ["input", "state"]
    audio = pretrained.synth_speech()
    sim = pretrained.vad_stream(audio, compiled.run)
    ref = pretrained.vad_stream(audio, lambda d: pretrained._ort(model.onnx, d))
    assert np.abs(sim - ref).max() < 0.05
    assert np.array_equal(sim > 0.5, ref > 0.5)
