"""`validate` (and `run`) report every problem in a file at once, each its own paragraph at its
line, in file order, then the count; a YAML syntax error is the one error it is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from personae.config import load_scenario, validate_file
from personae.errors import ConfigError, ConfigProblems
from tests.conftest import personae_cmd

# Six problems of five kinds: a placeholder naming no variable (line 2), an unknown roster persona
# (4), a missing document (5), an unknown key (6), a policy speaker not in the roster (10), a wrong
# type (12). The schema errors do not stop the checks that come after the schema.
BAD = """\
name: bad
goal: Decide {topc} for the cache
vars: {topic: caching}
personas: [Planner, Critc, Analyst]
documents: [nothere.md]
memroy: {num_ctx: 4096}
policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planer]}
    - {name: debate, speakers: [Analyst], rounds: 2}
termination: {max_turns: many}
"""
EXPECTED = [  # (line, field, words of the problem and its fix), in file order
    (2, "goal", "{topc}", "did you mean {topic}?"),
    (4, "personas[1]", "'Critc'", "did you mean 'Critic'?"),
    (5, "documents[0]", "'nothere.md' not found", "relative to the scenario's folder"),
    (6, "memroy", "unknown key 'memroy'", "did you mean 'memory'?"),
    (10, "policy.phases[0].speakers[0]", "'Planer'", "did you mean 'Planner'?"),
    (12, "termination.max_turns", "'many'", "integer"),
]


def test_every_problem_is_its_own_error_at_its_line_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    with pytest.raises(ConfigProblems) as caught:
        load_scenario(tmp_path / "bad.yaml")
    problems = caught.value.problems
    assert [getattr(p, "line", None) for p in problems] == [line for line, *_ in EXPECTED]
    for problem, (line, field, *words) in zip(problems, EXPECTED):
        message = str(problem)
        assert "\n" not in message, "each problem is one paragraph"
        assert f"line {line}," in message and f"at {field}:" in message, message
        for word in words:
            assert word in message, message
    assert caught.value.exit_code == 2
    assert str(caught.value).endswith(f"6 problems in {tmp_path / 'bad.yaml'}.")


def test_a_broken_section_is_left_at_its_default_and_the_rest_is_still_checked(tmp_path: Path) -> None:
    """`policy.type: phase` (a typo) fails the schema; the roster is still checked, and nothing is
    said about the default policy the check ran with instead."""
    (tmp_path / "s.yaml").write_text(
        "name: s\ngoal: g\npersonas: [Planner, Critc]\npolicy: {type: phase, phases: []}\n"
    )
    with pytest.raises(ConfigProblems) as caught:
        load_scenario(tmp_path / "s.yaml")
    fields = [getattr(p, "field", None) for p in caught.value.problems]
    assert fields == ["personas[1]", "policy"]
    assert "did you mean 'phases'?" in str(caught.value.problems[1])


def test_a_persona_file_reports_each_schema_problem(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("name: P\nsystem: s\nthinkng: hidden\noptions: {temperature: hot}\n")
    with pytest.raises(ConfigProblems) as caught:
        validate_file(file)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2
    assert "line 3" in messages[0] and "did you mean 'thinking'?" in messages[0]
    assert "line 4" in messages[1] and "options.temperature" in messages[1]


def test_one_problem_is_one_error_and_a_syntax_error_stops_the_checks(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("name: x\ngoal: y\npersonas: [Critc]\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(tmp_path / "one.yaml")
    assert not isinstance(caught.value, ConfigProblems) and "problems in" not in str(caught.value)
    (tmp_path / "syntax.yaml").write_text("name: x\ngoal: [unclosed\npersonas: [Critc]\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(tmp_path / "syntax.yaml")
    assert not isinstance(caught.value, ConfigProblems) and "Critc" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_prints_every_problem_then_the_count(
    command: str, tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    result = subprocess.run(
        personae_cmd(command, "bad.yaml"), cwd=tmp_path, env=cli_env, capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    paragraphs = re.split(r"\n(?=Error: )", result.stderr.strip())
    assert len(paragraphs) == len(EXPECTED), result.stderr
    for paragraph, (line, field, *words) in zip(paragraphs, EXPECTED):
        text = " ".join(paragraph.split())
        assert text.startswith(f"Error: bad.yaml, line {line},") and f"at {field}:" in text, text
        for word in words:
            assert word in text, text
    assert paragraphs[-1].splitlines()[-1] == "6 problems in bad.yaml."
    assert not isolated_env.exists(), "a run that never started leaves no database"


def test_every_variable_a_run_lacks_is_named(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        "name: v\ngoal: Judge {a} against {b}.\nvars:\n  a: null\n  b: null\npersonas: [Critic]\n"
    )
    with pytest.raises(ConfigProblems) as caught:
        load_scenario(tmp_path / "v.yaml")
    assert [getattr(p, "field", None) for p in caught.value.problems] == ["vars.a", "vars.b"]
    assert [getattr(p, "line", None) for p in caught.value.problems] == [4, 5]
    load_scenario(tmp_path / "v.yaml", variables={"a": "x", "b": "y"})  # given: no problem
