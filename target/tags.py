"""TVM target tags for the accelerator: ``Target("nm/<preset>")``.

Python cannot register a new target kind (docs/TVM_NOTES.md), so the accelerator is an ``llvm`` target
(the host runs the Relax VM) with key ``nm`` whose ``model`` names the hardware description:
a preset name, a JSON path, or an in-process config registered by :func:`resolve_target`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TVM is imported where a Target is built: the CLI's --help needs none
    from tvm.target import Target

from .hardware import HardwareConfig, HardwareConfigError, load_preset, preset_names

TAG_PREFIX = "nm/"
DEFAULT_TARGET = "nm/fp32-16x16"
_INLINE_CONFIGS: dict[str, HardwareConfig] = {}


def _target_config(model: str) -> dict:
    return {"kind": "llvm", "keys": ["nm", "cpu"], "model": model}


def register_tags() -> None:
    """Register one tag per preset (idempotent)."""
    import tvm

    for name in preset_names():
        tvm.target.register_tag(TAG_PREFIX + name, _target_config(name), override=True)


def config_of(target: Target) -> HardwareConfig:
    """The hardware description an ``nm`` target points at."""
    if "nm" not in list(target.keys):
        raise HardwareConfigError(f"target {target} is not an nm accelerator target")
    model = str(target.model)
    if model in _INLINE_CONFIGS:
        return _INLINE_CONFIGS[model]
    if model in preset_names():
        return load_preset(model)
    return HardwareConfig.from_file(model)


def resolve_target(target=None) -> tuple[Target, HardwareConfig]:
    """Accept a tag name, a preset name, a JSON path, a Target or a HardwareConfig."""
    from tvm.target import Target

    register_tags()
    if target is None:
        target = DEFAULT_TARGET
    if isinstance(target, HardwareConfig):
        digest = hashlib.sha1(json.dumps(target.to_dict(), sort_keys=True).encode()).hexdigest()
        key = f"inline:{target.name}:{digest[:12]}"
        _INLINE_CONFIGS[key] = target
        tvm_target = Target(_target_config(key))
        return tvm_target, target
    if isinstance(target, Target):
        return target, config_of(target)
    text = str(target)
    if text.endswith(".json") or Path(text).is_file():
        cfg = HardwareConfig.from_file(text)
        return Target(_target_config(str(Path(text).resolve()))), cfg
    name = text[len(TAG_PREFIX):] if text.startswith(TAG_PREFIX) else text
    if name not in preset_names():
        raise HardwareConfigError(
            f"unknown target '{text}'; use nm/<preset> with a preset from "
            f"{', '.join(preset_names())}, or a hardware JSON file")
    tvm_target = Target(TAG_PREFIX + name)
    return tvm_target, config_of(tvm_target)
