"""Pieces of the report: the PCHIP curve of the papers' Figure 1."""

from __future__ import annotations

import numpy as np
import pytest

from cascode.benchmarks.report import pchip

from ..conftest import need_module


@pytest.mark.parametrize(
    ("x", "y"),
    [([0, 1, 3, 4.5, 7], [0, 0.3, 0.35, 0.6, 0.62]), ([1, 2], [3, 5]), ([0, 1, 2], [0, 1, 0.5])],
)
def test_pchip_matches_scipy_and_stays_monotone(x, y):
    interpolate = need_module("scipy.interpolate", "install.sh's calibrate extra has scipy")
    x, y = np.array(x, float), np.array(y, float)
    xs = np.linspace(x[0], x[-1], 101)
    np.testing.assert_allclose(pchip(x, y, xs), interpolate.PchipInterpolator(x, y)(xs),
                               atol=1e-12)
    if np.all(np.diff(y) >= 0):
        assert np.all(np.diff(pchip(x, y, xs)) >= -1e-12)
