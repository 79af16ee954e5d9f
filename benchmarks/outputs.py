"""The whole calibration and what it writes: plan.yaml, report.md and plots/.

`calibrate.py` samples, executes and searches; `planfile.py` and `report.py`
render a search; this module runs the pipeline and writes what they render
(the imports go one way: outputs -> report -> planfile -> calibrate).
"""

from __future__ import annotations

from pathlib import Path

from cascode.engine.plans import Plan

from .calibrate import (
    BackendFactory,
    SandboxFactory,
    Search,
    Settings,
    load_family_data,
    pack_caches,
    search,
)
from .datasets import Dataset
from .planfile import write_plan_file
from .report import write_report


def calibrate(
    plan: Plan,
    dataset: Dataset,
    settings: Settings,
    *,
    backend_factory: BackendFactory | None = None,
    sandbox_factory: SandboxFactory | None = None,
    generate: bool = True,
    plan_out: Path | None = None,
) -> Search:
    """The whole calibration; writes plan.yaml, report.md and plots/ under `settings.out`.

    The caches are packed even when the run stops early, so that whatever was
    generated is kept in the committed form.
    """
    try:
        family = load_family_data(plan, dataset, settings, backend_factory=backend_factory,
                                  sandbox_factory=sandbox_factory, generate=generate)
    finally:
        pack_caches(settings.out, plan)
    return write_outputs(search(family, settings), plan_out)


def write_outputs(result: Search, plan_out: Path | None = None) -> Search:
    out = result.settings.out
    text = write_plan_file(result)
    (out / "plan.yaml").write_text(text, encoding="utf-8")
    if plan_out is not None:
        plan_out.write_text(text, encoding="utf-8")
    write_report(result, out)
    return result
