"""validate's default verdict: the simulator within rtol * max|ORT| plus the fitted tables'
propagated bound (nm_tvm.pwl_error_bound) passes the zoo transformers at default settings,
and fails -- naming the table fed outside its range -- when the approximation is not as fitted."""
import pytest

from nm_tvm.models import zoo
from nm_tvm.validate import validate


@pytest.mark.parametrize("name", ["bert_tiny", "vit_tiny", "gpt2_block"])
def test_zoo_transformers_pass_at_default_settings(name):
    report = validate(zoo.BUILDERS[name]())
    assert report.passed, report.rows()
    for out in report.outputs:  # the bound is a bound, not a blanket: it stays small
        assert 0 < out.tolerance < 0.1 * max(out.max_abs_err / max(out.max_rel_err, 1e-30), 1)
    assert report.out_of_range == []


def test_default_ranges_on_vit_fail_and_name_the_table():
    """Without calibration ViT's first LayerNorm variance (7e-4) is below rsqrt's default
    range [2^-6, 64]: the error leaves the bound, and the table is named."""
    report = validate(zoo.BUILDERS["vit_tiny"](), calibration=[])
    assert not report.passed
    worst = report.out_of_range[0]
    assert worst["id"].startswith("rsqrt") and worst["seen_min"] < worst["lo"]


def test_exact_models_get_no_pwl_allowance():
    report = validate(zoo.BUILDERS["small_cnn"](), rtol=1e-12)
    assert [o.tolerance for o in report.outputs] == [pytest.approx(1e-12 * o.max_abs_err /
                                                                   o.max_rel_err)
                                                     for o in report.outputs]
    assert not report.passed or all(o.max_abs_err == 0 for o in report.outputs)
