"""Hardware descriptions and target tags."""
import json

import pytest
from tvm.target import Target

import nm_tvm
from nm_tvm.target.hardware import HardwareConfig, HardwareConfigError, load_preset, preset_names


def test_presets_load_and_register_as_tags():
    assert {"fp32-16x16", "bf16-32x32"} <= set(preset_names())
    for name in preset_names():
        target, hw = nm_tvm.resolve_target(f"nm/{name}")
        assert "nm" in list(target.keys)
        assert hw.name == name
        assert Target(f"nm/{name}").model == name
    fp32, bf16 = load_preset("fp32-16x16"), load_preset("bf16-32x32")
    assert (fp32.dim, fp32.operand_dtype) == (16, "float32")
    assert (bf16.dim, bf16.operand_dtype) == (32, "bfloat16")
    # Memory rows follow from sizes and dtypes: 256 KiB / (16 * 4 B).
    assert fp32.sp_rows == 4096 and fp32.acc_rows == 2048


def test_user_json_file_is_accepted(tmp_path):
    raw = load_preset("fp32-16x16").to_dict()
    raw["name"] = "mine"
    raw["memories"]["scratchpad_kib"] = 64
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(raw))
    target, hw = nm_tvm.resolve_target(str(path))
    assert hw.name == "mine" and hw.scratchpad_kib == 64
    assert str(target.model) == str(path.resolve())


@pytest.mark.parametrize("field, value, expected", [
    ("pe_array.rows", 0, "pe_array.rows"),
    ("pe_array.cols", 8, "pe_array.cols"),
    ("pe_array.dataflow", "diagonal", "pe_array.dataflow"),
    ("dtypes.operand", "int4", "dtypes.operand"),
    ("memories.scratchpad_kib", -1, "memories.scratchpad_kib"),
    ("memories.scratchpad_kib", 1, "memories.scratchpad_kib"),
    ("memories.dram_bandwidth_bytes_per_cycle", "fast", "memories.dram_bandwidth_bytes_per_cycle"),
    ("energy.mac_pj", None, "energy.mac_pj"),
])
def test_invalid_field_is_named(tmp_path, field, value, expected):
    raw = load_preset("fp32-16x16").to_dict()
    cur = raw
    *parents, leaf = field.split(".")
    for p in parents:
        cur = cur[p]
    cur[leaf] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(HardwareConfigError, match=expected.replace(".", r"\.")):
        HardwareConfig.from_file(path)


def test_missing_field_and_bad_json(tmp_path):
    raw = load_preset("fp32-16x16").to_dict()
    del raw["memories"]["dram_latency_cycles"]
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(HardwareConfigError, match="memories.dram_latency_cycles"):
        HardwareConfig.from_file(path)
    path.write_text("{ not json")
    with pytest.raises(HardwareConfigError, match="not valid JSON"):
        HardwareConfig.from_file(path)
    with pytest.raises(HardwareConfigError, match="unknown target"):
        nm_tvm.resolve_target("nm/does-not-exist")


def test_unknown_field_is_named_with_a_suggestion():
    raw = load_preset("fp32-16x16").to_dict()
    raw["pe_array"]["colums"] = 16
    with pytest.raises(HardwareConfigError, match="unknown field 'pe_array.colums' "
                                                  "\\(did you mean 'cols'\\?\\)"):
        HardwareConfig.from_dict(raw, "hw.json")
    raw = load_preset("fp32-16x16").to_dict()
    raw["memorys"] = {}
    with pytest.raises(HardwareConfigError, match="unknown field 'memorys' \\(did you mean "
                                                  "'memories'\\?\\)"):
        HardwareConfig.from_dict(raw, "hw.json")


def test_pwl_memory_too_small_for_any_fitted_table_is_refused():
    from nm_tvm import pwl
    from nm_tvm.models import zoo
    from nm_tvm.target.codegen import NEG_TABLE
    from nm_tvm.target.hardware import MIN_PWL_ENTRIES

    assert MIN_PWL_ENTRIES == len(NEG_TABLE) + 1 + pwl.OUTER_SEGMENTS  # the derivation it states
    hw = load_preset("fp32-16x16")
    with pytest.raises(HardwareConfigError, match="'memories.pwl_table_entries' \\(7\\) must be "
                                                  "at least 8"):
        hw.with_overrides(**{"memories.pwl_table_entries": MIN_PWL_ENTRIES - 1})
    small = hw.with_overrides(**{"memories.pwl_table_entries": MIN_PWL_ENTRIES})
    compiled = nm_tvm.compile(zoo.bert_tiny(seq=8), target=small)  # softmax, norms, GELU fit
    assert max(t["segments"] for t in compiled.pwl_tables if not t["exact"]) >= 1
