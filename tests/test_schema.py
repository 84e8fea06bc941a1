"""The JSON Schema that editors check files against must agree with the loader: every scenario and
persona that Personae ships or that the tests run validates, and values the loader refuses are
refused by the schema too. Checked with the ``jsonschema`` validator, as an editor would."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from personae.config import builtin_dir
from personae.config.loader import load_scenario_text
from tests import (
    durable_support,
    test_collapse,
    test_inputs,
    test_orchestrator,
    test_phases_modes,
    test_reflect,
    test_router,
    test_selector,
    test_structured,
)
from tests.conftest import personae_cmd


@functools.cache
def schema_of(kind: str) -> Draft202012Validator:
    """The schema exactly as `personae schema KIND` prints it (once per kind: it does not change)."""
    result = subprocess.run(
        personae_cmd("schema", kind), capture_output=True, text=True, timeout=60, check=True
    )
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def built_scenarios() -> list[tuple[str, str]]:
    """Every scenario text the test modules build with their own helpers and constants."""
    return [
        ("orchestrator", test_orchestrator.scenario("termination: {max_turns: 6, timeout: 30m}\n")),
        ("durable", durable_support.scenario_text("termination: {max_turns: 3, timeout: 90}\n")),
        ("collapse", test_collapse.scenario()),
        ("reflect", test_reflect.scenario()),
        ("router", test_router.scenario(test_router.RULES)),
        ("selector-router", test_router.scenario(test_router.SELECTOR)),
        ("phases", test_phases_modes.scenario(test_phases_modes.FOUR_PHASES)),
        ("structured", test_structured.scenario()),
        ("inputs", test_inputs.BASE + test_inputs.INPUTS),
        ("selector", test_selector.SCENARIO),
        ("nested-stop", test_orchestrator.scenario(
            "termination:\n  max_turns: 9\n  any: [{timeout: 5m}, {token_budget: 900}]\n"
        )),
    ]


def shipped(kind: str) -> list[Path]:
    return sorted((builtin_dir() / kind).glob("*.yaml"))


def test_every_shipped_and_test_scenario_validates() -> None:
    validator = schema_of("scenario")
    files = shipped("scenarios")
    assert any("timeout: 30m" in f.read_text(encoding="utf-8") for f in files)
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], path.name
    built = built_scenarios()
    assert len(built) >= 10
    for label, text in built:
        load_scenario_text(text, path=Path.cwd() / f"{label}.yaml")  # the loader takes it …
        data = yaml.safe_load(text)
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], label  # … and so does the schema


def test_every_shipped_persona_validates() -> None:
    validator = schema_of("persona")
    for path in shipped("personas"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [e.message for e in validator.iter_errors(data)] == [], path.name


@pytest.mark.parametrize("value", ["30m", "90s", "1.5h", 45, 2.5, "20"])
def test_durations_the_loader_takes_validate(value: object) -> None:
    validator = schema_of("scenario")
    text = test_orchestrator.scenario(f"termination: {{timeout: {json.dumps(value)}}}\n")
    load_scenario_text(text, path=Path.cwd() / "t.yaml")
    assert list(validator.iter_errors(yaml.safe_load(text))) == []


@pytest.mark.parametrize("value", ["5 minutes", "soon", -3, 0, True])
def test_durations_the_loader_refuses_are_refused(value: object) -> None:
    from personae.errors import ConfigError

    validator = schema_of("scenario")
    text = test_orchestrator.scenario(f"termination: {{timeout: {json.dumps(value)}}}\n")
    with pytest.raises(ConfigError):
        load_scenario_text(text, path=Path.cwd() / "t.yaml")
    assert list(validator.iter_errors(yaml.safe_load(text))) != []
