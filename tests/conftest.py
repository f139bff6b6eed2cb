import os

import numpy as np
import pytest
from hypothesis import HealthCheck, is_hypothesis_test, settings

# Hypothesis budgets (tests/test_differential.py). `make test` runs the derandomized
# `nm-quick` profile (the same examples every run); `make test-slow` selects `nm-slow` with
# NM_HYPOTHESIS_PROFILE=nm-slow (or --hypothesis-profile=nm-slow): NM_HYPOTHESIS_EXAMPLES random
# examples per property (default 600), and every hypothesis test then counts as `slow`, so the
# `-m slow` selection of test-slow includes them. A failure prints its reproduce blob.
_COMMON = dict(deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("nm-quick", max_examples=80, derandomize=True, **_COMMON)
settings.register_profile("nm-slow", max_examples=int(os.environ.get("NM_HYPOTHESIS_EXAMPLES",
                                                                     "600")),
                          print_blob=True, **_COMMON)
settings.load_profile(os.environ.get("NM_HYPOTHESIS_PROFILE", "nm-quick"))


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    if settings.get_current_profile_name() != "nm-slow":
        return
    for item in items:
        if isinstance(item, pytest.Function) and is_hypothesis_test(item.obj):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
