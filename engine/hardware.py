"""What machine this is, in the words plans record their measured seconds with."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from typing import Any


def hardware() -> str:
    """The CPU model and core count (recorded with every cached generation and price)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


_ON = re.compile(r"^measured \S+ on (.+)$")


def seconds_elsewhere(calibration: Mapping[str, Any] | None, members: list[str],
                      here: str | None = None) -> str:
    """When the plan's prices for `members` were measured on another machine than this
    one, a clause saying so ("" when they were measured here, or through a server)."""
    prices = dict((calibration or {}).get("prices") or {})
    here = here or hardware()
    elsewhere = set()
    for name in members:
        m = _ON.match(str(prices.get(name, "")))
        if m is None or m.group(1).startswith("the model server at"):
            continue
        if m.group(1) != here:
            elsewhere.add(m.group(1))
    if not elsewhere:
        return ""
    return (f"seconds measured on {'; '.join(sorted(elsewhere))}, not on this machine "
            f"({here})")
