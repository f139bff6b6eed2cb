"""Compiled-model artifacts: one file that a fresh process loads and runs without recompiling.

The file is an uncompressed tar holding

* ``manifest.json`` -- format name and version, the nm_tvm / ISA / TVM versions it was built
  with, the target's full hardware description, input names/shapes/dtypes, output names, and
  the compile record (``nm_tvm.record``: layers, PWL tables, host ops; its own schema version);
* ``model.so`` -- ``executable.export_library``: the Relax VM program with every accelerator
  program and weight inside as constants (so the tar is self-contained).

Loading reads and checks the manifest before touching the library, so a wrong file or one built
for another ISA fails with an :class:`ArtifactError` naming the problem, never a loader crash.
The simulator library is loaded before ``tvm.runtime.load_module`` because the exported VM
resolves ``nm_accel.run`` by name (docs/TVM_NOTES.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import tvm

FORMAT = "nm-tvm-artifact"
FORMAT_VERSION = 4  # 2: the library's size and sha256; 3: the compile record; 4: its own sha256
MANIFEST = "manifest.json"
LIBRARY = "model.so"


class ArtifactError(ValueError):
    """The file is not an nm_tvm artifact, or not one this installation can run."""


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence C++ log lines on fd 2 (TVM warns once per constant when saving/loading
    executables); Python exceptions still carry the error text."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _versions() -> dict:
    import nm_tvm
    from nm_tvm.target.isa import ISA_VERSION

    return {"nm_tvm": nm_tvm.__version__, "isa": ISA_VERSION, "tvm": tvm.__version__}


def manifest_of(compiled, model_name: str = "") -> dict:
    """Everything needed to rebuild a CompiledModel around a reloaded executable."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{f"{k}_version": v for k, v in _versions().items()},
        "model": model_name,
        "hardware": compiled.hw.to_dict(),
        "inputs": [{"name": n, "shape": list(compiled.input_shapes[n]),
                    "dtype": compiled.input_dtypes[n]} for n in compiled.input_names],
        "outputs": list(compiled.output_names),
        "fixed_inputs": [{"name": n, "dtype": str(v.dtype), "shape": list(v.shape),
                          "value": v.reshape(-1).tolist()}
                         for n, v in getattr(compiled, "fixed_inputs", {}).items()],
        "record": compiled.record.to_dict(),
    }


def save(compiled, path: str | Path, model_name: str = "", extra: dict | None = None) -> Path:
    """Write ``compiled`` (a :class:`nm_tvm.CompiledModel`) to one tar file at ``path``;
    ``extra`` adds manifest fields (the CLI's preprocessing name), covered by its digest."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="nm_tvm_export_") as tmp:
        lib = Path(tmp) / LIBRARY
        with quiet_native_stderr():
            compiled.executable.export_library(str(lib))
        data = lib.read_bytes()
        manifest = {**manifest_of(compiled, model_name), **(extra or {})}
        manifest["library"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        manifest["digest"] = _manifest_digest(manifest)
        manifest = json.dumps(manifest, indent=1).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
            tar.add(str(lib), arcname=LIBRARY)
    return path


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of an artifact; :class:`ArtifactError` if it is not a usable one."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact '{path}' does not exist")
    if not tarfile.is_tarfile(path):
        raise ArtifactError(f"'{path}' is not an nm_tvm artifact (not a tar file; "
                            "create one with `nm-tvmc compile MODEL.onnx -o model.tar`)")
    try:
        with tarfile.open(path) as tar:
            names = tar.getnames()
            if MANIFEST not in names or LIBRARY not in names:
                raise ArtifactError(f"'{path}' is a tar file but not an nm_tvm artifact "
                                    f"(needs {MANIFEST} and {LIBRARY}; has {names[:5]})")
            manifest = json.loads(tar.extractfile(MANIFEST).read())
    except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"'{path}': unreadable artifact ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"'{path}': {MANIFEST} is not an nm_tvm manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"'{path}' has artifact format version {manifest.get('format_version')}; this nm_tvm "
            f"reads version {FORMAT_VERSION}: recompile the model")
    here = _versions()
    if manifest.get("isa_version") != here["isa"]:
        raise ArtifactError(
            f"'{path}' was built for accelerator ISA version {manifest.get('isa_version')} "
            f"(nm_tvm {manifest.get('nm_tvm_version')}); this simulator runs ISA version "
            f"{here['isa']}: recompile the model")
    if manifest.get("tvm_version") != here["tvm"]:
        raise ArtifactError(
            f"'{path}' was built with TVM {manifest.get('tvm_version')}; this installation has "
            f"TVM {here['tvm']}: recompile the model")
    return manifest


def _manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest without its own digest (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_manifest_digest(path: Path, manifest: dict) -> None:
    """The programs inside the library were generated for the manifest's hardware: an edited
    manifest (another hardware name, a changed clock or energy table) would report figures
    for a machine the programs were not built for."""
    if manifest.get("digest") != _manifest_digest(manifest):
        raise ArtifactError(
            f"'{path}': {MANIFEST} was edited after compilation (its sha256 does not match); "
            f"the programs in {LIBRARY} were built for the hardware it was written with: "
            "recompile the model for the target you want instead of editing the manifest")


def _check_library(path: Path, data: bytes, expected: dict) -> None:
    """A truncated or altered library would crash dlopen or run with wrong weights: refuse it."""
    if len(data) != expected.get("bytes"):
        raise ArtifactError(f"'{path}': {LIBRARY} is corrupted: {len(data)} bytes, the manifest "
                            f"records {expected.get('bytes')} (truncated or extended): recompile "
                            "the model")
    if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise ArtifactError(f"'{path}': {LIBRARY} is corrupted: its sha256 does not match the "
                            "manifest's (same size, altered bytes): recompile the model")


def load(path: str | Path):
    """Load an artifact into a :class:`nm_tvm.CompiledModel` (no recompilation)."""
    from nm_tvm import frontend
    from nm_tvm.record import CompileRecord, RecordError
    from nm_tvm.runtime import CompiledModel
    from nm_tvm.target import simulator
    from nm_tvm.target.hardware import HardwareConfig, HardwareConfigError

    path = Path(path)
    manifest = read_manifest(path)
    try:
        hw = HardwareConfig.from_dict(manifest["hardware"], source=f"{path}:{MANIFEST}")
    except HardwareConfigError as err:
        raise ArtifactError(f"'{path}': bad hardware description ({err})") from None
    _check_manifest_digest(path, manifest)
    simulator.load()  # the VM resolves nm_accel.run when it is created
    with tempfile.TemporaryDirectory(prefix="nm_tvm_load_") as tmp:
        with tarfile.open(path) as tar:
            member = tar.getmember(LIBRARY)
            if not member.isfile():
                raise ArtifactError(f"'{path}': {LIBRARY} is not a regular file")
            data = tar.extractfile(member).read()
        _check_library(path, data, manifest.get("library") or {})
        (Path(tmp) / LIBRARY).write_bytes(data)
        try:
            with quiet_native_stderr():
                executable = tvm.runtime.load_module(str(Path(tmp) / LIBRARY))
        except Exception as err:  # a truncated or foreign .so
            raise ArtifactError(f"'{path}': cannot load {LIBRARY} ({str(err).splitlines()[0]})") \
                from None
    inputs = manifest["inputs"]
    imported = frontend.ImportedModel(
        mod=None, input_names=[i["name"] for i in inputs],
        input_shapes={i["name"]: tuple(i["shape"]) for i in inputs},
        input_dtypes={i["name"]: i["dtype"] for i in inputs},
        output_names=list(manifest["outputs"]))
    try:
        record = CompileRecord.from_dict(manifest.get("record"), source=f"{path}:{MANIFEST}")
    except RecordError as err:  # a manifest from another nm_tvm build
        raise ArtifactError(f"'{path}' was written by an incompatible nm_tvm build ({err}): "
                            "recompile the model") from None
    compiled = CompiledModel(executable, hw, imported, record)  # the IR is not in the artifact
    compiled.fixed_inputs = {f["name"]: np.asarray(f["value"], f["dtype"]).reshape(f["shape"])
                             for f in manifest.get("fixed_inputs", [])}
    compiled.manifest = manifest
    return compiled
