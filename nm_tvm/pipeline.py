"""The nm compilation pipeline: canonicalize -> partition -> codegen -> verify -> VM build.

Registered as the Relax pipeline ``"nm"`` so that
``tvm.compile(mod, target=Target("nm/fp32-16x16"), relax_pipeline="nm")`` builds the same
executable as :func:`nm_tvm.compile`; inside it the hardware comes from ``Target.current()``.
"""
from __future__ import annotations

import dataclasses

import tvm
from tvm import relax
from tvm.target import Target

from nm_tvm.passes import Canonicalize, Linearize, LinearizeConfig
from nm_tvm.record import CompileRecord
from nm_tvm.target import codegen
from nm_tvm.target.backend import LowerToAccelerator, PartitionForAccelerator, VerifyGemmOnly
from nm_tvm.target.hardware import HardwareConfig
from nm_tvm.target.tags import config_of

PIPELINE_NAME = "nm"


def accelerator_passes(hw: HardwareConfig, strict: bool = True,
                       linearize: LinearizeConfig | None = None, probe: bool = False,
                       record: CompileRecord | None = None) -> tvm.transform.Pass:
    """Relax -> accelerator calls (no VM lowering): useful to inspect the offloaded module.
    ``probe`` also returns every fitted table's input tensor (for calibration); ``record``
    receives the tables, layers and host ops."""
    config = dataclasses.replace(linearize or LinearizeConfig(),
                                 max_table_entries=codegen.table_entries(hw))
    return tvm.transform.Sequential(
        [Canonicalize(), Linearize(config, probe, record), PartitionForAccelerator(),
         LowerToAccelerator(hw, record), VerifyGemmOnly(strict, record)],
        name="nm.AcceleratorPasses")


def known_pass_names(hw: HardwareConfig) -> set[str]:
    """Names a ``PassContext(disabled_pass=...)`` can mean here: the nm passes (walked through
    their Sequentials) and the passes Relax's transform module defines (TVM names a pass after
    its constructor: ``FuseOps``, ``LegalizeOps``)."""
    def walk(p) -> set[str]:
        names = {str(p.info.name)}
        for inner in getattr(p, "passes", None) or []:
            names |= walk(inner)
        return names

    names = walk(accelerator_passes(hw)) | {"nm.Pipeline"}
    names |= {n for n in dir(relax.transform) if n[:1].isupper() and callable(
        getattr(relax.transform, n))}
    return names


def nm_pipeline(hw: HardwareConfig | None = None, strict: bool = True) -> tvm.transform.Pass:
    """The full Relax pipeline for an nm target, ending in TVM's VM lowering."""

    @tvm.transform.module_pass(opt_level=0, name="nm.Pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        config = hw
        if config is None:
            target = Target.current()
            if target is None:
                raise ValueError("the nm pipeline needs an nm target (tvm.compile(..., target=...))")
            config = config_of(target)
        mod = accelerator_passes(config, strict)(mod)
        return relax.get_pipeline("default")(mod)

    return _pipeline


def _register() -> None:
    if PIPELINE_NAME not in relax.pipeline.PIPELINE_MAP:
        relax.register_pipeline(PIPELINE_NAME)(nm_pipeline)


_register()
