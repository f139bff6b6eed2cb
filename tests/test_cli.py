"""nm-tvmc as a user runs it: a subprocess per command, exit codes, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from nm_tvm.models import bert_tiny, small_cnn

CLI = [sys.executable, "-m", "nm_tvm.cli"]


def nm_tvmc(*args, cwd=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    onnx.save(small_cnn(), d / "cnn.onnx")
    onnx.save(bert_tiny(seq=8), d / "bert_tiny.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "cnn_in.npz", input=rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    np.savez(d / "bert_in.npz", embeddings=rng.standard_normal((1, 8, 128)).astype(np.float32))
    return d


COMMANDS = ["compile", "run", "validate", "profile", "targets"]


def test_help_of_every_command():
    """One subprocess calls --help of each command (a process each would cost ~3 s apiece)."""
    code = ("import sys\nfrom nm_tvm.cli import main\n"
            f"for cmd in [[], *[[c] for c in {COMMANDS!r}]]:\n"
            "    try:\n        main(cmd + ['--help'])\n"
            "    except SystemExit as e:\n        print('@@exit', e.code, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    pages = proc.stdout.split("@@exit")
    assert all(p.strip().startswith("0") for p in pages[1:]), proc.stdout[-500:]
    for page, cmd in zip(pages, ["", *COMMANDS]):
        assert f"usage: nm-tvmc {cmd}".strip() in page and "example" in page, page[:300]
    proc = nm_tvmc("compile", "--help")  # and the real entry point
    assert proc.returncode == 0 and "--allow-host-fallback" in proc.stdout


def test_targets_lists_presets():
    proc = nm_tvmc("targets")
    assert proc.returncode == 0
    assert "nm/fp32-16x16" in proc.stdout and "nm/bf16-32x32" in proc.stdout
    assert "256 KiB" in proc.stdout


def test_cnn_compile_run_validate_round_trip(files):
    tar = files / "cnn.tar"
    proc = nm_tvmc("compile", files / "cnn.onnx", "--target", "nm/fp32-16x16", "-o", tar,
                   "--dump-code", "relax,asm", "--dump-offloads")
    assert proc.returncode == 0, proc.stderr
    assert "8 accelerator layers" in proc.stdout and "host ops: none" in proc.stdout
    assert "im2col DMA gather" in proc.stdout  # --dump-offloads: how conv was rewritten
    assert "LOOP_GEMM" in (files / "cnn.tar.asm").read_text()
    assert "nm_accel.run" in (files / "cnn.tar.relax").read_text()

    proc = nm_tvmc("run", tar, "--inputs", files / "cnn_in.npz", "-o", files / "out.npz",
                   "--print-top", "3", "--profile")
    assert proc.returncode == 0, proc.stderr
    assert "logits top-3" in proc.stdout and "PE utilization" in proc.stdout
    out = np.load(files / "out.npz")["logits"]

    from nm_tvm.validate import onnx_runtime_outputs

    x = dict(np.load(files / "cnn_in.npz"))
    ref = onnx_runtime_outputs(small_cnn(), x)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)

    proc = nm_tvmc("validate", files / "cnn.onnx", "--inputs", files / "cnn_in.npz",
                   "--per-layer")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no layer diverges" in proc.stdout and "PASS" in proc.stdout


def test_bert_tiny_compile_run_validate_round_trip(files):
    tar = files / "bert.tar"
    proc = nm_tvmc("compile", files / "bert_tiny.onnx", "-o", tar)  # GEMM-only (strict)
    assert proc.returncode == 0, proc.stderr
    proc = nm_tvmc("run", tar, "--inputs", files / "bert_in.npz", "-o", files / "bert_out.npz")
    assert proc.returncode == 0, proc.stderr
    assert np.load(files / "bert_out.npz")["last_hidden_state"].shape == (1, 8, 128)
    proc = nm_tvmc("validate", files / "bert_tiny.onnx", "--inputs", files / "bert_in.npz",
                   "--rtol", "5e-3")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validation_over_tolerance_exits_1(files):
    proc = nm_tvmc("validate", files / "cnn.onnx", "--rtol", "1e-12")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["compile", "missing.onnx"], "does not exist"),
    (["compile", "{bad}", "--target", "nm/nope"], "unknown target"),
    (["compile", "{bad}"], "not a readable ONNX model"),
    (["compile", "{cnn}", "--input-shapes", "input:[1,x]"], "bad shape"),
    (["compile", "{cnn}", "--frobnicate"], "unrecognized arguments"),
    (["run", "{bad}"], "not an nm_tvm artifact"),
    (["run", "{cnn}"], "not an nm_tvm artifact"),
    (["validate", "{cnn}", "--fill-mode", "pi"], "invalid choice"),
    (["compile", "{cnn}", "--calibrate", "nope.npz"], "input file 'nope.npz' does not exist"),
    (["run", "{cnn}", "--print-top", "-3"], "--print-top: -3 must be at least 1"),
    (["validate", "{cnn}", "--rtol", "-1"], "--rtol: -1 must be a positive, finite number"),
    (["validate", "{cnn}", "--inputs", "{txt}"], "expected .npz, .npy or an image"),
    (["profile", "{cnn}", "--plots", "{txt}"], "names a file; give a folder for the PNGs"),
    (["compile", "{dyn}"], "give its shape with --input-shapes \"x:[1,...]\""),
    (["compile", "{cnn}", "--print-ir-after", "nm.Nope*"], "nm.Nope* matched no pass that ran"),
    (["compile", "{cnn}", "--calibrate", "auto", "{cnn}"], "or one of 'auto' / 'none' alone"),
    (["compile", "{cnn}", "--calibrate", "{bad}"], "cannot read inputs from"),
])
def test_bad_arguments_and_files_give_one_line_and_exit_2(files, args, message):
    (files / "bad.onnx").write_text("this is not a model")
    (files / "words.txt").write_text("not an array")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "dyn",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                     ir_version=9), files / "dyn.onnx")
    args = [a.format(bad=files / "bad.onnx", cnn=files / "cnn.onnx", txt=files / "words.txt",
                     dyn=files / "dyn.onnx") for a in args]
    proc = nm_tvmc(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in _error_line(proc)


def test_debug_works_after_the_command_too(files):
    proc = nm_tvmc("compile", "missing.onnx", "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = nm_tvmc("--debug", "compile", "missing.onnx")
    assert "Traceback" in proc.stderr


def test_interrupt_wrapped_by_the_ffi_is_reported_as_interrupted():
    from nm_tvm.cli.main import _interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("pass failed") from inner
    except RuntimeError as err:
        assert _interrupted(err)
    assert _interrupted(RuntimeError("Traceback ... KeyboardInterrupt"))
    assert not _interrupted(RuntimeError("shape mismatch"))


def test_calibrate_option_reaches_the_compiler(files, tmp_path):
    """--calibrate FILE... fits the tables to those inputs; 'auto' / 'none' choose synthetic
    inputs or the default ranges; the compile summary says which."""
    out = tmp_path / "m.tar"
    proc = nm_tvmc("compile", files / "bert_tiny.onnx", "--calibrate", files / "bert_in.npz",
                   files / "bert_in.npz", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "PWL table ranges: 2 given sample(s)" in proc.stdout
    proc = nm_tvmc("compile", files / "bert_tiny.onnx", "--calibrate", "auto", "-o", out)
    assert "PWL table ranges: synthetic, 2 samples (embeddings: N(0, 1))" in proc.stdout
    proc = nm_tvmc("validate", files / "bert_tiny.onnx", "--calibrate", "none", "--inputs",
                   files / "bert_in.npz", "--rtol", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "PWL table ranges: default ranges" in proc.stdout


def test_run_with_wrong_inputs_is_a_usage_error(files):
    tar = files / "cnn.tar"
    if not tar.exists():
        assert nm_tvmc("compile", files / "cnn.onnx", "-o", tar).returncode == 0
    np.savez(files / "wrong.npz", x=np.zeros((1, 3), np.float32))
    proc = nm_tvmc("run", tar, "--inputs", files / "wrong.npz")
    assert proc.returncode == 2
    assert "unknown input" in _error_line(proc)


def test_unsupported_op_in_strict_mode_exits_1(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Tan", ["m"], ["y"], name="the_tan")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.ones(32, np.float32))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=9), tmp_path / "tan.onnx")
    proc = nm_tvmc("compile", tmp_path / "tan.onnx", "-o", tmp_path / "tan.tar")
    assert proc.returncode == 1
    assert "--allow-host-fallback" in _error_line(proc)
    proc = nm_tvmc("compile", tmp_path / "tan.onnx", "-o", tmp_path / "tan.tar",
                   "--allow-host-fallback")
    assert proc.returncode == 0, proc.stderr
    assert "tan" in proc.stdout


def test_profile_writes_reports_per_layer_and_per_node(tmp_path, capsys):
    from nm_tvm.cli import main

    csv_path, json_path = tmp_path / "layers.csv", tmp_path / "report.json"
    assert main(["profile", "zoo:bert_tiny", "--csv", str(csv_path), "--json", str(json_path),
                 "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "embeddings.LayerNorm/7" in out and "full queue" in out
    layers = csv_path.read_text().splitlines()
    assert layers[0].startswith("layer,kind,source_nodes,cycles")
    report = json.loads(json_path.read_text())
    assert {"layers", "nodes", "summary"} <= set(report)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "cycles.png", "energy.png", "roofline.png"]
    assert main(["profile", "zoo:bert_tiny", "--by-node", "--csv", str(csv_path)]) == 0
    nodes = csv_path.read_text().splitlines()
    assert nodes[0].startswith("node,kind,layers,cycles") and len(nodes) < len(layers)


def test_run_text_gives_the_sentence_embedding(tmp_path):
    """``run --text`` on a sentence-embedding model: the pooled, L2-normalised embedding is
    printed and saved next to the raw outputs; a text longer than the compiled sequence is an
    error naming both lengths."""
    from nm_tvm.models import pretrained

    reason = pretrained.available("minilm-l6")
    if reason:
        pytest.skip(reason)
    tar = tmp_path / "minilm.tar"
    assert nm_tvmc("compile", "pretrained:minilm-l6", "-o", tar).returncode == 0
    proc = nm_tvmc("run", tar, "--text", "A man is playing a guitar.", "-o", tmp_path / "o.npz")
    assert proc.returncode == 0, proc.stderr
    emb = np.load(tmp_path / "o.npz")["sentence_embedding"]
    assert emb.shape == (384,) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
    proc = nm_tvmc("run", tar, "--text", "A man is playing a guitar.")
    assert "sentence embedding (384 dims, mean of 9 tokens" in proc.stdout
    proc = nm_tvmc("run", tar, "--text", "word " * 200)
    assert proc.returncode != 0 and "tokens; the model is compiled for" in proc.stderr


def test_dump_offloads_places_every_onnx_op_from_its_layers(files, tmp_path):
    """The ONNX census comes from each layer's source nodes: a GEMM-only model lists no host
    row (LayerNormalization, Softmax and Div are accelerator work, as 'host ops: none' says)."""
    proc = nm_tvmc("compile", files / "bert_tiny.onnx", "--dump-offloads", "-o",
                   tmp_path / "b.tar")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip()
            for line in proc.stdout.splitlines() if line.count("│") == 5}
    assert rows["LayerNormalization"] == "accelerator" and rows["Softmax"] == "accelerator"
    assert rows["MatMul"] == "accelerator"
    assert not any("host" in where for where in rows.values()), rows


def test_run_print_time_repeat_number_and_outputs_as_tvmc(files, tmp_path):
    tar = files / "cnn.tar"
    if not tar.exists():
        assert nm_tvmc("compile", files / "cnn.onnx", "-o", tar).returncode == 0
    proc = nm_tvmc("run", tar, "--print-time", "--repeat", "3", "--number", "2", "--outputs",
                   tmp_path / "o.npz")
    assert proc.returncode == 0, proc.stderr
    assert "host wall time per run (ms), 3 x 2: mean" in proc.stdout
    assert "simulated time per run:" in proc.stdout and "cycles at" in proc.stdout
    assert (tmp_path / "o.npz").exists()
    proc = nm_tvmc("run", tar, "--print-time", "--repeat", "0")
    assert proc.returncode == 2 and "--repeat" in proc.stderr
    proc = nm_tvmc("compile", files / "cnn.onnx", "--model-format", "tflite")
    assert proc.returncode == 2 and "invalid choice: 'tflite'" in proc.stderr


def test_unknown_disabled_pass_names_are_a_usage_error(files):
    """TVM ignores unknown --disabled-pass names; a typo would silently disable nothing."""
    proc = nm_tvmc("compile", files / "cnn.onnx", "--disabled-pass", "nm.FoldScaleShif")
    assert proc.returncode == 2
    assert "no pass is named 'nm.FoldScaleShif'; did you mean nm.FoldScaleShift" in proc.stderr
    proc = nm_tvmc("compile", files / "cnn.onnx", "--disabled-pass", "nm.FoldScaleShift,FuseOps",
                   "-o", files / "cnn_nofold.tar")
    assert proc.returncode == 0, proc.stderr
