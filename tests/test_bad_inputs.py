"""Bad input of every kind gives a clear error (never a crash): files, operators, run-time
inputs, NaN/Inf, models larger than DRAM, hardware JSON files."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nm_tvm
from nm_tvm.frontend import ModelLoadError
from nm_tvm.target.backend import DramCapacityError, NotGemmOnlyError
from nm_tvm.runtime import InputError, UnsupportedOperatorError
from nm_tvm.target.codegen import CodegenError
from nm_tvm.target.hardware import HardwareConfigError, load_preset
from nm_tvm.validate import onnx_runtime_outputs

F32 = np.float32


def _model(nodes, inputs, output_shape, inits=()):
    graph = helper.make_graph(
        nodes, "bad",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(np.asarray(v, F32), k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _matmul_relu(k=8, n=8):
    w = np.random.default_rng(0).standard_normal((k, n))
    return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                   helper.make_node("Relu", ["h"], ["y"], name="act")],
                  {"x": [2, k]}, [2, n], [("w", w)])


# ------------------------------------------------------------------------------ model files
def test_truncated_onnx_file(tmp_path):
    data = _matmul_relu().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        nm_tvm.compile(str(path))


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all\n", bytes(range(256)) * 4,
                                     b"\x08\x07" + b"\xff" * 64])
def test_non_onnx_file(tmp_path, content):
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        nm_tvm.compile(str(path))


def test_missing_file_and_invalid_graph(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        nm_tvm.compile(str(tmp_path / "nope.onnx"))
    bad = _matmul_relu()
    bad.graph.node[1].input[0] = "undefined_tensor"
    with pytest.raises(ModelLoadError, match="invalid"):
        nm_tvm.compile(bad)


# ------------------------------------------------------------------- unsupported operators
def _cumsum_model():
    """MatMul then CumSum (not in the support table: a running sum is not offloaded)."""
    w = np.random.default_rng(1).standard_normal((8, 8))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
         helper.make_node("CumSum", ["h", "axis"], ["y"], name="running_sum")], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(np.asarray(w, F32), "w"),
         numpy_helper.from_array(np.array(1, np.int64), "axis")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_unsupported_operator_error_names_op_node_and_alternatives():
    with pytest.raises(UnsupportedOperatorError) as info:
        nm_tvm.compile(_cumsum_model())
    msg = str(info.value)
    assert "CumSum (node 'running_sum'" in msg  # the op and the node
    assert "try: MatMul with a constant" in msg  # the alternative
    assert "Supported operators" in msg and "Conv" in msg and "MatMul" in msg
    assert "strict=False" in msg
    assert "cumsum" in msg  # the Relax-level VerifyGemmOnly message follows
    assert isinstance(info.value, NotGemmOnlyError)  # existing handlers still catch it


def test_unsupported_operator_that_the_importer_cannot_import():
    node = helper.make_node("Det", ["x"], ["y"], name="det0")  # TVM's importer lacks Det
    with pytest.raises(UnsupportedOperatorError, match="Det \\(node 'det0'"):
        nm_tvm.compile(_model([node], {"x": [2, 3, 3]}, [2]))


def test_unsupported_attribute_of_a_claimed_operator_is_a_compile_error():
    # ceil_mode pooling (windows hanging over the edge) has no accelerator mapping yet.
    node = helper.make_node("AveragePool", ["x"], ["y"], name="ceil_pool", kernel_shape=[3, 3],
                            strides=[2, 2], ceil_mode=1)
    with pytest.raises(NotGemmOnlyError, match="avg_pool2d \\(node 'ceil_pool'\\)"):
        nm_tvm.compile(_model([node], {"x": [1, 4, 6, 6]}, [1, 4, 3, 3]))


def test_host_fallback_reports_what_ran_where():
    proto = _cumsum_model()
    compiled = nm_tvm.compile(proto, strict=False)
    where = compiled.placement()
    assert where["accelerator"] == ["proj"]  # named as in the ONNX model
    assert len(where["host"]) == 1 and "cumsum" in where["host"][0]
    assert compiled.host_ops == where["host"]
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(F32)
    np.testing.assert_allclose(compiled.run({"x": x})[0], onnx_runtime_outputs(proto, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- run-time inputs
@pytest.fixture(scope="module")
def compiled_mlp():
    return nm_tvm.compile(_matmul_relu())


@pytest.mark.parametrize("inputs, fragment", [
    ({"x": np.zeros((2, 8), F32), "z": np.zeros(1, F32)}, "unknown input(s) ['z']"),
    ({"input": np.zeros((2, 8), F32)}, "unknown input(s) ['input']"),
    ({}, "missing input 'x'"),
    ({"x": np.zeros((2, 9), F32)}, "shape (2, 9); expected (2, 8)"),
    ({"x": np.zeros((8,), F32)}, "shape (8,); expected (2, 8)"),
    ({"x": np.zeros((2, 8), np.float64)}, "dtype float64; expected float32"),
    ({"x": np.zeros((2, 8), np.int64)}, "dtype int64; expected float32"),
    ({"x": [[0.0] * 8] * 2}, "dtype float64"),
])
def test_wrong_run_time_inputs(compiled_mlp, inputs, fragment):
    with pytest.raises(InputError) as info:
        compiled_mlp.run(inputs)
    assert fragment in str(info.value)


def test_non_contiguous_input_is_accepted(compiled_mlp):
    x = np.random.default_rng(3).standard_normal((8, 2)).astype(F32).T  # a strided view
    expect = onnx_runtime_outputs(_matmul_relu(), {"x": np.ascontiguousarray(x)})[0]
    np.testing.assert_allclose(compiled_mlp.run({"x": x})[0], expect, rtol=1e-5, atol=1e-6)


def test_unsupported_input_type_is_a_load_error():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "half",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with pytest.raises(ModelLoadError, match="element type FLOAT16; supported input types are "
                                             "FLOAT, INT64, INT32, BOOL, UINT8 and INT8"):
        nm_tvm.compile(proto)


def test_strict_errors_lead_with_the_real_cause():
    """A model that cannot load (here a FLOAT16 input) says so first, not as a list of the
    operators outside the support table it also uses (Tan)."""
    graph = helper.make_graph([helper.make_node("Tan", ["x"], ["y"], name="tangent")], "half",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with pytest.raises(ModelLoadError) as info:
        nm_tvm.compile(proto)
    assert str(info.value).startswith("input 'x' has ONNX element type FLOAT16")


def test_integer_arithmetic_is_named_as_host_compute():
    """Integer inputs load; arithmetic on integers is not accelerator work (only Gather
    indices and Cast to float are), so strict mode names the node."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="int_relu")], "int",
                              [helper.make_tensor_value_info("x", TensorProto.INT32, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with pytest.raises(NotGemmOnlyError, match="relax.nn.relu \\(node 'int_relu'\\)"):
        nm_tvm.compile(proto)


# ------------------------------------------------------------------------------ NaN / Inf
# Semantics (documented in README "Bad input"): NaN and Inf inputs are accepted and follow
# IEEE-754 fp32 arithmetic as the simulator computes it: GEMMs propagate NaN (and 0 * Inf = NaN)
# to every output they touch, exactly as ONNX Runtime does; adds, ReLU of NaN (NaN) and of +Inf
# (+Inf) match ONNX Runtime, and ReLU(-Inf) is 0 (a flat PWL segment outputs its intercept).
SPECIALS = np.array([[np.nan, np.inf, -np.inf, 1.0, -1.0, 0.0, 2.0, -3.0]], F32)


def _nan_compare(proto, inputs):
    sim = nm_tvm.compile(proto).run(inputs)[0]
    ref = onnx_runtime_outputs(proto, inputs)[0]
    np.testing.assert_array_equal(np.isnan(sim), np.isnan(ref))
    np.testing.assert_array_equal(sim[~np.isnan(ref)], ref[~np.isnan(ref)])
    return sim


def test_nan_inf_through_gemm_propagate_like_onnxruntime():
    x = SPECIALS.copy()
    proto = _model([helper.make_node("MatMul", ["x", "w"], ["h"]),
                    helper.make_node("Relu", ["h"], ["y"])], {"x": [1, 8]}, [1, 8],
                   [("w", np.eye(8))])
    sim = _nan_compare(proto, {"x": x})
    assert np.isnan(sim).all()  # NaN * 0 and Inf * 0 reach every column


def test_nan_inf_through_elementwise_add():
    proto = _model([helper.make_node("Add", ["a", "b"], ["y"])], {"a": [1, 8], "b": [1, 8]},
                   [1, 8])
    b = np.array([[1, -np.inf, np.inf, np.nan, 0, 0, 0, 0]], F32)
    sim = _nan_compare(proto, {"a": SPECIALS, "b": b})
    assert np.isnan(sim[0, :4]).all() and sim[0, 4] == -1.0


def test_relu_of_nan_and_plus_inf():
    proto = _model([helper.make_node("Relu", ["x"], ["y"])], {"x": [1, 8]}, [1, 8])
    x = SPECIALS.copy()
    x[0, 2] = -7.0
    sim = _nan_compare(proto, {"x": x})
    assert np.isnan(sim[0, 0]) and sim[0, 1] == np.inf


def test_relu_of_minus_inf_is_zero():
    proto = _model([helper.make_node("Relu", ["x"], ["y"])], {"x": [1, 8]}, [1, 8])
    _nan_compare(proto, {"x": SPECIALS})


# ------------------------------------------------------------------- model larger than DRAM
def _tiny_dram(tmp_path, mib):
    raw = load_preset("fp32-16x16").to_dict()
    raw["name"] = "tiny-dram"
    raw["memories"]["dram_mib"] = mib
    path = tmp_path / "tiny_dram.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_model_larger_than_dram_in_total(tmp_path):
    """Each 64 KiB layer fits a 0.2 MiB DRAM; the four layers' weights together do not."""
    rng = np.random.default_rng(4)
    nodes, inits = [], []
    for i in range(4):
        nodes.append(helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"],
                                      ["y" if i == 3 else f"h{i + 1}"]))
        inits.append((f"w{i}", rng.standard_normal((128, 128))))
    proto = _model(nodes, {"x": [4, 128]}, [4, 128], inits)
    with pytest.raises(DramCapacityError) as info:
        nm_tvm.compile(proto, target=_tiny_dram(tmp_path, 0.2))
    msg = str(info.value)
    assert "needs at least 0.2" in msg and "0.25 MiB" in msg  # the need: 4 x 64 KiB weights
    assert "has 0.2 MiB" in msg and "memories.dram_mib" in msg  # the capacity and the field
    nm_tvm.compile(proto, target=_tiny_dram(tmp_path, 0.5))  # fits with more DRAM


def test_single_layer_larger_than_dram(tmp_path):
    w = np.ones((256, 256))  # 256 KiB of weights in one layer
    proto = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [1, 256]}, [1, 256],
                   [("w", w)])
    # the node has no name: its layer is named after its output tensor
    with pytest.raises(CodegenError, match=r"layer 'y'.*MiB of DRAM.*0\.1 MiB"):
        nm_tvm.compile(proto, target=_tiny_dram(tmp_path, 0.1))


# ------------------------------------------------------------------ malformed hardware JSON
@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "top level must be a JSON object"),
    ("{}", "missing field 'pe_array.rows'"),
])
def test_malformed_hardware_json_text(tmp_path, text, fragment):
    path = tmp_path / "hw.json"
    path.write_text(text)
    with pytest.raises(HardwareConfigError, match=fragment.replace("[", r"\[")):
        nm_tvm.compile(_matmul_relu(), target=str(path))


@pytest.mark.parametrize("field, value, fragment", [
    ("memories.dram_mib", -1, "memories.dram_mib"),
    ("memories.dram_mib", "big", "memories.dram_mib"),
    ("pe_array.rows", 0, "pe_array.rows"),
    ("pe_array.cols", 8, "pe_array.cols"),
    ("dtypes.operand", "int4", "dtypes.operand"),
    ("memories.scratchpad_kib", 0.01, "memories.scratchpad_kib"),
    ("memories.dram_bandwidth_bytes_per_cycle", 2.5, "dram_bandwidth_bytes_per_cycle"),
    ("energy.mac_pj", None, "energy.mac_pj"),
])
def test_malformed_hardware_json_fields(tmp_path, field, value, fragment):
    raw = load_preset("fp32-16x16").to_dict()
    cur = raw
    *parents, leaf = field.split(".")
    for part in parents:
        cur = cur[part]
    cur[leaf] = value
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(HardwareConfigError, match=fragment):
        nm_tvm.compile(_matmul_relu(), target=str(path))


def test_missing_hardware_file_and_unknown_preset(tmp_path):
    with pytest.raises(HardwareConfigError, match="does not exist"):
        nm_tvm.compile(_matmul_relu(), target=str(tmp_path / "none.json"))
    with pytest.raises(HardwareConfigError, match="unknown target 'nm/int3-1x1'"):
        nm_tvm.compile(_matmul_relu(), target="nm/int3-1x1")


# ------------------------------------------------------------------------ corrupted artifact
# Against nm_tvm/artifact.py (save / load / ArtifactError) as it exists now.
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import textwrap  # noqa: E402

from nm_tvm import artifact  # noqa: E402
from nm_tvm.target.isa import MAGIC  # noqa: E402

ARTIFACT_CHECKSUM = (
    "nm_tvm/artifact.py stores no checksum of model.so: a corrupted library is dlopen'ed as is. "
    "Fix: write sha256 and size of model.so into manifest.json at save and verify them in "
    "load() before tvm.runtime.load_module (ArtifactError naming the mismatch).")


@pytest.fixture(scope="module")
def artifact_parts(tmp_path_factory):
    proto = _matmul_relu()
    compiled = nm_tvm.compile(proto)
    path = artifact.save(compiled, tmp_path_factory.mktemp("art") / "model.tar")
    with tarfile.open(path) as tar:
        manifest = tar.extractfile(artifact.MANIFEST).read()
        library = tar.extractfile(artifact.LIBRARY).read()
    x = np.random.default_rng(5).standard_normal((2, 8)).astype(F32)
    return path, manifest, library, x, compiled.run({"x": x})[0]


def _write_artifact(path, manifest: bytes, library: bytes):
    with tarfile.open(path, "w") as tar:
        for name, data in ((artifact.MANIFEST, manifest), (artifact.LIBRARY, library)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_artifact_roundtrip_reference(artifact_parts, tmp_path):
    _, manifest, library, x, expect = artifact_parts
    loaded = artifact.load(_write_artifact(tmp_path / "ok.tar", manifest, library))
    np.testing.assert_array_equal(loaded.run({"x": x})[0], expect)


@pytest.mark.parametrize("how", ["random_bytes", "truncated_tar", "empty"])
def test_corrupted_artifact_file(artifact_parts, tmp_path, how):
    path, *_ = artifact_parts
    data = path.read_bytes()
    bad = tmp_path / "bad.tar"
    bad.write_bytes({"random_bytes": np.random.default_rng(0).bytes(4096),
                     "truncated_tar": data[:700], "empty": b""}[how])
    with pytest.raises(artifact.ArtifactError, match="bad.tar"):
        artifact.load(bad)


@pytest.mark.parametrize("manifest", [b"{not json", b"[]", b'{"format": "other"}'])
def test_corrupted_artifact_manifest(artifact_parts, tmp_path, manifest):
    _, _, library, *_ = artifact_parts
    with pytest.raises(artifact.ArtifactError):
        artifact.load(_write_artifact(tmp_path / "m.tar", manifest, library))


def test_corrupted_artifact_hardware_description(artifact_parts, tmp_path):
    _, manifest, library, *_ = artifact_parts
    raw = json.loads(manifest)
    raw["hardware"]["memories"]["dram_mib"] = -5
    with pytest.raises(artifact.ArtifactError, match="dram_mib"):
        artifact.load(_write_artifact(tmp_path / "hw.tar", json.dumps(raw).encode(), library))


def test_corrupted_program_inside_artifact_is_rejected_by_the_simulator(artifact_parts, tmp_path):
    """The accelerator program travels as a constant in model.so. A corrupted instruction is
    caught by the artifact checksum; were the checksum forged to match, the simulator's own
    validation still rejects it (ValueError naming the instruction) rather than execute it."""
    _, manifest, library, x, _ = artifact_parts
    lib = bytearray(library)
    at = lib.find(np.int64(MAGIC).tobytes())
    assert at >= 0
    header = np.frombuffer(bytes(lib[at:at + 16 * 8]), np.int64)
    first_instr = at + (16 + 4 * int(header[2])) * 8
    lib[first_instr:first_instr + 8] = np.int64(99).tobytes()  # opcode 99
    with pytest.raises(artifact.ArtifactError, match="corrupted"):
        artifact.load(_write_artifact(tmp_path / "p.tar", manifest, bytes(lib)))
    forged = json.loads(manifest)
    forged["library"] = {"bytes": len(lib), "sha256": hashlib.sha256(bytes(lib)).hexdigest()}
    forged["digest"] = artifact._manifest_digest(forged)
    loaded = artifact.load(_write_artifact(tmp_path / "f.tar", json.dumps(forged).encode(),
                                           bytes(lib)))
    with pytest.raises(ValueError, match="instruction 0 .*unknown opcode 99"):
        loaded.run({"x": x})


def test_corrupted_weights_inside_artifact_are_detected(artifact_parts, tmp_path):
    _, manifest, library, x, expect = artifact_parts
    lib = bytearray(library)
    w = np.asarray(numpy_helper.to_array(_matmul_relu().graph.initializer[0]), F32)
    at = lib.find(w.tobytes())
    assert at >= 0
    lib[at + 3] ^= 0x40  # one exponent bit of the first weight
    try:
        out = artifact.load(_write_artifact(tmp_path / "w.tar", manifest, bytes(lib))).run(
            {"x": x})[0]
    except artifact.ArtifactError:
        return
    assert np.array_equal(out, expect), "corrupted weights gave different outputs, no error"


def test_truncated_library_inside_artifact_is_an_error_not_a_crash(artifact_parts, tmp_path):
    _, manifest, library, *_ = artifact_parts
    bad = _write_artifact(tmp_path / "t.tar", manifest, library[: len(library) // 2])
    code = textwrap.dedent(f"""
        from nm_tvm import artifact
        try:
            artifact.load({str(bad)!r})
        except artifact.ArtifactError as err:
            print("ArtifactError", err)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"process died with {proc.returncode}"
    assert "ArtifactError" in proc.stdout


def test_empty_slice_is_left_to_the_host_not_the_simulator():
    """A slice past the end is an empty tensor: no DRAM region can hold it, so it is not
    offloaded (strict: a compile error naming it; otherwise the host makes it)."""
    starts, ends, axes = (numpy_helper.from_array(np.array([v], np.int64), n)
                          for v, n in ((10, "starts"), (20, "ends"), (1, "axes")))
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="past_end")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 0])], [starts, ends, axes])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with pytest.raises(NotGemmOnlyError, match="past_end"):
        nm_tvm.compile(proto)
    (y,) = nm_tvm.compile(proto, strict=False).run({"x": np.ones((2, 5), F32)})
    assert y.shape == (2, 0)
