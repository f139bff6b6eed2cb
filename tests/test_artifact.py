"""Artifact files: one tar that a fresh process loads and runs without recompiling."""
import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import nm_tvm
from nm_tvm import artifact
from nm_tvm.models import mlp
from nm_tvm.record import SCHEMA_VERSION


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("artifact")
    compiled = nm_tvm.compile(mlp(), target="nm/bf16-32x32")
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "ref.npy", compiled.run({"input": x})[0])
    return artifact.save(compiled, d / "mlp.tar", "mlp"), compiled


def test_reload_in_a_new_process_gives_identical_outputs(saved):
    path, compiled = saved
    d = path.parent
    code = (f"import numpy as np; from nm_tvm import artifact; m = artifact.load({str(path)!r});"
            f"y = m.run({{'input': np.load({str(d / 'x.npy')!r})}})[0];"
            f"np.save({str(d / 'y.npy')!r}, y); print(m.hw.name, m.stats.cycles)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(d / "y.npy"), np.load(d / "ref.npy"))
    name, cycles = proc.stdout.split()
    assert name == "bf16-32x32" and int(cycles) == compiled.stats.cycles


def test_manifest_describes_the_model(saved):
    path, compiled = saved
    m = artifact.read_manifest(path)
    assert m["inputs"] == [{"name": "input", "shape": [4, 64], "dtype": "float32"}]
    assert m["outputs"] == compiled.output_names
    assert m["hardware"]["dtypes"]["operand"] == "bfloat16"
    record = m["record"]
    assert record["schema"] == SCHEMA_VERSION
    assert record["layers"] == compiled.layers and record["host_ops"] == []
    assert record["tables"] == compiled.pwl_tables


def test_reloaded_model_has_the_same_record(saved):
    path, compiled = saved
    loaded = artifact.load(path)
    assert loaded.record.to_dict() == compiled.record.to_dict()
    assert loaded.offloaded_module is None  # the IR is not stored; the executable is


@pytest.mark.parametrize("record", [None, {"schema": 99, "layers": [], "tables": [],
                                           "host_ops": []},
                                    {"schema": SCHEMA_VERSION, "layers": [{"id": 0}],
                                     "tables": [], "host_ops": []}],
                         ids=["missing", "other schema", "malformed layer"])
def test_bad_record_is_refused(saved, tmp_path, record):
    path, _ = saved
    with pytest.raises(artifact.ArtifactError, match="incompatible nm_tvm build"):
        artifact.load(_rewrite(path, tmp_path / "rec.tar", record=record))


def _rewrite(path, dest, **changes):
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile(artifact.MANIFEST).read())
        lib = tar.extractfile(artifact.LIBRARY).read()
    manifest.update(changes)
    manifest["digest"] = artifact._manifest_digest(manifest)  # as another build would write it
    with tarfile.open(dest, "w") as tar:
        for name, blob in ((artifact.MANIFEST, json.dumps(manifest).encode()),
                           (artifact.LIBRARY, lib)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return dest


def test_incompatible_versions_are_refused(saved, tmp_path):
    path, _ = saved
    with pytest.raises(artifact.ArtifactError, match="ISA version 999"):
        artifact.load(_rewrite(path, tmp_path / "isa.tar", isa_version=999))
    with pytest.raises(artifact.ArtifactError, match="format version 7"):
        artifact.load(_rewrite(path, tmp_path / "fmt.tar", format_version=7))
    with pytest.raises(artifact.ArtifactError, match="TVM 0.1"):
        artifact.load(_rewrite(path, tmp_path / "tvm.tar", tvm_version="0.1"))


def test_an_edited_manifest_is_refused(saved, tmp_path):
    """Renaming the hardware (or changing its clock) in manifest.json would report figures for
    a machine the programs were not built for."""
    path, _ = saved
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile(artifact.MANIFEST).read())
        lib = tar.extractfile(artifact.LIBRARY).read()
    manifest["hardware"]["name"] = "my-faster-chip"
    dest = tmp_path / "edited.tar"
    with tarfile.open(dest, "w") as tar:
        for name, blob in ((artifact.MANIFEST, json.dumps(manifest).encode()),
                           (artifact.LIBRARY, lib)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(artifact.ArtifactError, match="was edited after compilation"):
        artifact.load(dest)


def test_library_size_and_checksum_mismatches_are_told_apart(saved, tmp_path):
    path, _ = saved
    with tarfile.open(path) as tar:
        manifest = tar.extractfile(artifact.MANIFEST).read()
        lib = tar.extractfile(artifact.LIBRARY).read()
    for name, blob, message in (("short.tar", lib[:-10], "bytes, the manifest records"),
                                ("flip.tar", lib[:100] + bytes([lib[100] ^ 1]) + lib[101:],
                                 "sha256 does not match")):
        with tarfile.open(tmp_path / name, "w") as tar:
            for member, data in ((artifact.MANIFEST, manifest), (artifact.LIBRARY, blob)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        with pytest.raises(artifact.ArtifactError, match=message):
            artifact.load(tmp_path / name)


def test_files_that_are_not_artifacts_are_refused(tmp_path):
    (tmp_path / "text.tar").write_text("hello")
    with pytest.raises(artifact.ArtifactError, match="not a tar file"):
        artifact.load(tmp_path / "text.tar")
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.add(__file__, arcname="x.py")
    with pytest.raises(artifact.ArtifactError, match="not an nm_tvm artifact"):
        artifact.load(tmp_path / "other.tar")
    with pytest.raises(artifact.ArtifactError, match="does not exist"):
        artifact.load(tmp_path / "missing.tar")


def test_tvm_api_pipeline_executable_exports_and_reloads(tmp_path, rng):
    """The TVM-API path (tvm.compile with relax_pipeline="nm") exports like any executable."""
    import tvm
    from tvm import relax
    from tvm.target import Target

    from nm_tvm.target import simulator

    imported = nm_tvm.frontend.import_onnx(mlp())
    exe = tvm.compile(imported.mod, target=Target("nm/fp32-16x16"), relax_pipeline="nm")
    with artifact.quiet_native_stderr():
        exe.export_library(str(tmp_path / "m.so"))
        simulator.load()
        loaded = tvm.runtime.load_module(str(tmp_path / "m.so"))
    x = rng.standard_normal((4, 64)).astype(np.float32)
    outs = [relax.VirtualMachine(e, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
            for e in (exe, loaded)]
    np.testing.assert_array_equal(outs[0], outs[1])
    from nm_tvm.validate import onnx_runtime_outputs

    ref = onnx_runtime_outputs(mlp(), {"input": x})[0]
    np.testing.assert_allclose(outs[0], ref, rtol=1e-5, atol=1e-5)
