"""A member's price per million tokens overrides the hourly price in the token cost."""

from __future__ import annotations

import dataclasses

from cascode.benchmarks.prices import MemberPrice


def test_price_per_mtok_sets_the_token_price():
    hourly = MemberPrice(0.001, {1: 0.05, 20: 0.01}, 0.44, "test")
    assert hourly.dollars_per_token == 0.01 * 0.44 / 3600.0
    hosted = dataclasses.replace(hourly, price_per_mtok=0.6)
    assert hosted.dollars_per_token == 0.6 / 1e6
