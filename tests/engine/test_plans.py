"""Plan files: the packaged default, every illegal plan of docs/method.md section 1, typos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from cascode.engine.errors import PlanError
from cascode.engine.plans import load_plan, parse_plan, plan_to_dict

PLAN = """\
family:
  - {name: small, backend: llama_cpp, model: /models/small.gguf, price_per_hour: 0.44}
  - {name: medium, backend: llama_cpp, model: /models/medium.gguf}
  - {name: large, backend: openai, model: big-model, price_per_mtok: 2.5, options: {base_url: "http://gpu:8000/v1"}}
default_tier: two
tiers:
  one:
    theta: 0.5
    stages: {small: {k: 1, l: 2}}
  two:
    theta: 0.9
    stages: {small: {k: 3, l: 2}, medium: {k: 1, l: 4}}
  three:
    theta: [0.8, 1.0]
    stages: {small: {k: 5, l: 4}, medium: {k: 3, l: 2}, large: {k: 0, l: 0}}
"""

ONE_TIER = "two:\n    theta: 0.9\n    stages: {small: {k: 3, l: 2}, medium: {k: 1, l: 4}}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PlanError) as info:
        load_plan(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message, "plan errors are one line"
    assert str(tmp_path / "my-plan.yaml") in message, "plan errors name the file"
    return message


def with_tier_two(stages: str, theta: str = "0.9") -> str:
    return PLAN.replace(ONE_TIER, f"two:\n    theta: {theta}\n    stages: {stages}")


# ---------------------------------------------------------------------------
# Valid plans


def test_packaged_default_loads() -> None:
    plan = load_plan()
    assert [m.name for m in plan.family] == ["qwen-0.5b", "qwen-1.5b"]
    assert all(m.backend == "llama_cpp" and m.model.startswith("embedded:") for m in plan.family)
    assert plan.default_tier in plan.tiers
    for name in plan.tiers:
        tier = plan.tier(name)
        assert tier.stages, name
        assert tier.stages[-1].last and not any(s.last for s in tier.stages[:-1])
    assert plan.tier().name == plan.default_tier


def test_a_valid_plan_resolves_active_stages(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    two = plan.tier()
    assert two.name == "two"
    assert [(s.member.name, s.index, s.k, s.l, s.last) for s in two.stages] == [
        ("small", 0, 3, 2, False),
        ("medium", 1, 1, 4, True),
    ]
    assert all(s.theta == Fraction(9, 10) for s in two.stages)
    assert plan.family[2].price_per_mtok == 2.5
    assert plan_to_dict(plan)["tiers"]["two"]["stages"]["small"] == {"k": 3, "l": 2}


def test_per_boundary_thetas(tmp_path: Path) -> None:
    three = load_plan(write(tmp_path, PLAN)).tier("three")
    assert [(s.member.name, s.theta) for s in three.stages] == [
        ("small", Fraction(4, 5)),
        ("medium", Fraction(1)),
        ("large", Fraction(1)),  # the last member takes the last boundary's theta (unused)
    ]
    assert three.stages[-1].k == 0 and three.stages[-1].last


def test_skipped_and_left_out_members_are_inactive(tmp_path: Path) -> None:
    text = with_tier_two("{small: {k: -1, l: 0}, medium: {k: 3, l: 2}}")
    stages = load_plan(write(tmp_path, text)).tier("two").stages
    assert [s.member.name for s in stages] == ["medium"] and stages[0].last


def test_k_zero_last_member_is_valid(tmp_path: Path) -> None:
    text = with_tier_two("{small: {k: 3, l: 2}, medium: {k: 0}, large: {k: -1}}")
    stages = load_plan(write(tmp_path, text)).tier("two").stages
    assert [(s.member.name, s.k, s.l) for s in stages] == [("small", 3, 2), ("medium", 0, 0)]


# ---------------------------------------------------------------------------
# Illegal plans of docs/method.md section 1


@pytest.mark.parametrize(
    ("stages", "field"),
    [
        # l inconsistent with k
        ("{small: {k: 3, l: 0}, medium: {k: 1, l: 2}}", "stages.small.l"),
        ("{small: {k: 1, l: 2}, medium: {k: 0, l: 2}}", "stages.medium.l"),
        ("{small: {k: -1, l: 4}, medium: {k: 1, l: 2}}", "stages.small.l"),
        ("{small: {k: 3}, medium: {k: 1, l: 2}}", "stages.small.l"),
        # values outside the grids
        ("{small: {k: 2, l: 2}, medium: {k: 1, l: 2}}", "stages.small.k"),
        ("{small: {k: 3, l: 3}, medium: {k: 1, l: 2}}", "stages.small.l"),
        ("{small: {k: 3, l: 2}, medium: {k: 11, l: 2}}", "stages.medium.k"),
        # an unknown member
        ("{small: {k: 3, l: 2}, huge: {k: 1, l: 2}}", "stages.huge"),
        # no active member
        ("{small: {k: -1, l: 0}}", "stages"),
        ("{}", "stages"),
    ],
)
def test_illegal_stages(tmp_path: Path, stages: str, field: str) -> None:
    message = load_error(tmp_path, with_tier_two(stages))
    assert "tier 'two'" in message
    assert field in message


def test_unknown_member_lists_the_family(tmp_path: Path) -> None:
    message = load_error(tmp_path, with_tier_two("{small: {k: 3, l: 2}, huge: {k: 1, l: 2}}"))
    assert "unknown member" in message and "small, medium, large" in message


@pytest.mark.parametrize("theta", ["1.1", "-0.1", "[0.5, 1.5]", "[-0.2, 0.5]"])
def test_theta_out_of_range(tmp_path: Path, theta: str) -> None:
    stages = "{small: {k: 3, l: 2}, medium: {k: 1, l: 2}, large: {k: 1, l: 2}}"
    message = load_error(tmp_path, with_tier_two(stages, theta))
    assert "tier 'two'" in message and "theta" in message and "[0, 1]" in message


@pytest.mark.parametrize("theta", ["[0.5, 0.6]", "[]", "[0.5, 0.6, 0.7]"])
def test_theta_list_must_have_one_value_per_boundary(tmp_path: Path, theta: str) -> None:
    # two active members: one boundary
    message = load_error(tmp_path, with_tier_two("{small: {k: 3, l: 2}, medium: {k: 1, l: 2}}",
                                                 theta))
    assert "tier 'two'" in message and "theta" in message and "boundar" in message


@pytest.mark.parametrize("theta", ["high", "true", "{a: 1}", "[0.5, x]"])
def test_theta_of_the_wrong_type(tmp_path: Path, theta: str) -> None:
    message = load_error(tmp_path, with_tier_two("{small: {k: 3, l: 2}}", theta))
    assert "tiers['two'].theta" in message


# ---------------------------------------------------------------------------
# Unknown keys and typos


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("family:", "famly:", ["famly"]),
        ("default_tier: two", "defualt_tier: two", ["defualt_tier"]),
        ("    theta: 0.5\n", "    thetta: 0.5\n", ["thetta", "tiers['one']"]),
        ("stages: {small: {k: 1, l: 2}}", "stages: {small: {kk: 1, l: 2}}",
         ["kk", "tiers['one'].stages['small']"]),
        ("price_per_hour: 0.44}", "pric_per_hour: 0.44}", ["pric_per_hour", "family[0]"]),
        ("stages: {small: {k: 1, l: 2}}", "stages: {small: {k: one, l: 2}}",
         ["tiers['one'].stages['small'].k"]),
        ("stages: {small: {k: 1, l: 2}}", "stages: {small: {k: true, l: 2}}",
         ["tiers['one'].stages['small'].k"]),
        ("stages: {small: {k: 1, l: 2}}", "stages: {small: 1}", ["tiers['one'].stages['small']"]),
        ("    stages: {small: {k: 1, l: 2}}\n", "    stagse: {small: {k: 1, l: 2}}\n",
         ["stagse", "tiers['one']"]),
    ],
)
def test_unknown_keys_and_typos_are_named(
    tmp_path: Path, old: str, new: str, names: list[str]
) -> None:
    assert old in PLAN
    message = load_error(tmp_path, PLAN.replace(old, new, 1))
    for name in names:
        assert name in message


def test_unknown_backend_names_member_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, PLAN.replace("backend: openai", "backend: open-ai"))
    assert "family[2] (large)" in message and "backend" in message and "open-ai" in message


def test_duplicate_member_and_unknown_default_tier(tmp_path: Path) -> None:
    message = load_error(tmp_path, PLAN.replace("name: medium", "name: small"))
    assert "duplicate" in message and "(small)" in message
    message = load_error(tmp_path, PLAN.replace("default_tier: two", "default_tier: turbo"))
    assert "default_tier" in message and "turbo" in message


def test_asking_for_an_unknown_tier(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    with pytest.raises(PlanError, match=r"no tier named 'turbo' \(tiers: one, two, three\)"):
        plan.tier("turbo")


@pytest.mark.parametrize(
    "text", ["family: [\n  {name: x", "- just\n- a list\n", "", "tiers: {}\nfamily: []\n"]
)
def test_not_a_plan(tmp_path: Path, text: str) -> None:
    load_error(tmp_path, text)


def test_yaml_syntax_error_is_one_line_with_its_position(tmp_path: Path) -> None:
    message = load_error(tmp_path, PLAN.replace("default_tier: two", "default_tier: [two"))
    assert "not valid YAML at line" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan file") as info:
        load_plan(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_parse_plan_names_its_source() -> None:
    with pytest.raises(PlanError, match=r"^settings\.yaml: "):
        parse_plan("family: []\ntiers: {}\n", "settings.yaml")


def test_a_greedy_stage_may_come_before_another(tmp_path: Path) -> None:
    """docs/method.md 7.4: a non-last k = 0 stage accepts or escalates on the examples."""
    path = tmp_path / "plan.yaml"
    path.write_text(with_tier_two("{small: {k: 0, l: 0}, medium: {k: 1, l: 2}}"))
    stages = load_plan(path).tier("two").stages
    assert [(s.member.name, s.k, s.last) for s in stages] == [("small", 0, False),
                                                              ("medium", 1, True)]


def test_examples_field_is_a_strict_bool(tmp_path: Path) -> None:
    text = with_tier_two("{small: {k: 3, l: 2}}").replace(
        "  two:\n", "  two:\n    examples: 'no'\n", 1)
    assert "examples: 'no'" in text
    message = load_error(tmp_path, text)
    assert "tiers['two'].examples" in message and "bool" in message


def test_a_plan_names_the_prompt_template_it_was_calibrated_with(tmp_path: Path) -> None:
    assert load_plan(write(tmp_path, PLAN)).template is None  # not calibrated
    # Plans written before plans recorded it were calibrated with template 2.
    assert load_plan(write(tmp_path, PLAN + "calibration: {samples: 10}\n")).template == 2
    plan = load_plan(write(tmp_path, PLAN + "calibration: {template: 3}\n"))
    assert plan.template == 3
    with pytest.raises(PlanError, match=r"my-plan.yaml: calibration.template: expected an "
                                        r"integer, got 'three'"):
        load_plan(write(tmp_path, PLAN + "calibration: {template: three}\n"))
    with pytest.raises(PlanError, match=r"calibration.template: 99 is not a prompt template "
                                        r"of this version \(2, 3, 4, 5\)"):
        load_plan(write(tmp_path, PLAN + "calibration: {template: 99}\n"))
