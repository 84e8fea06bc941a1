"""Persona and scenario loading: each user mistake gets one clear ConfigError; predictable lookup.

Fast unit tests: no model, no database. Each test writes the files it needs under ``tmp_path`` and
runs from an empty current folder, so a ``personas/`` folder in the repo never leaks in.
"""

from __future__ import annotations

import re

import json
from pathlib import Path

import pytest

from personae.config import (
    LoadedScenario,
    Phase,
    PhasesPolicy,
    builtin_dir,
    builtin_personas,
    json_schema,
    load_persona_file,
    load_scenario,
    load_scenario_text,
    validate_file,
)
from personae.errors import ConfigError

MINIMAL = "name: demo\ngoal: Decide something.\npersonas: [Critic, Planner]\n"


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message.strip(), "one paragraph"
    return message


# ------------------------------------------------------------------------------- built-ins


# The recipes (issue 19) are not deliberations of eight to twelve turns: a chain walks every
# chunk of its document, a long run collapses many times. tests/test_recipes*.py hold them.
RECIPES = ("chain-of-agents", "chain-of-sections", "generative-memory", "self-ask", "task-loop")


def builtin_scenarios() -> list[Path]:
    """The built-in deliberations (the recipes have their own contract, below)."""
    return [p for p in sorted((builtin_dir() / "scenarios").glob("*.yaml")) if p.stem not in RECIPES]


@pytest.mark.parametrize("name", RECIPES)
def test_builtin_recipe_loads_with_its_documents_and_ends_by_itself_or_a_budget(name: str) -> None:
    path = builtin_dir() / "scenarios" / f"{name}.yaml"
    loaded = load_scenario(path)
    assert loaded.scenario.name == name and loaded.scenario.model is None
    assert all(doc.is_file() and doc.is_absolute() for doc in loaded.documents)
    assert loaded.scenario.termination.max_turns <= 60
    assert validate_file(path).startswith(f"scenario '{name}'")


def phase_turns(phase: Phase) -> int:
    """The most turns a phase can take: speakers x rounds, its `turns`, or a reflect's rounds."""
    if phase.speakers is not None:
        return len(phase.speakers) * phase.rounds
    return phase.turns or 2 * getattr(phase.policy, "max_rounds", 1)


def possible_turns(loaded: LoadedScenario) -> int:
    policy, cap = loaded.scenario.policy, loaded.scenario.termination.max_turns
    if isinstance(policy, PhasesPolicy) and not policy.repeat:
        return min(cap, sum(phase_turns(p) for p in policy.phases))
    return cap


def test_there_are_at_least_three_builtin_scenarios() -> None:
    names = {p.stem for p in builtin_scenarios()}
    assert {"cache-review", "incident-postmortem", "zapusk-produkta"} <= names


@pytest.mark.parametrize("path", builtin_scenarios(), ids=lambda p: p.stem)
def test_builtin_scenario_loads_and_can_run_eight_turns_by_four_personas(path: Path) -> None:
    loaded = load_scenario(path)
    scenario = loaded.scenario
    assert scenario.name == path.stem
    assert scenario.model is None
    assert 8 <= scenario.termination.max_turns <= 12
    assert scenario.termination.stop_phrase
    assert scenario.memory.num_ctx is not None and scenario.memory.num_ctx <= 4096
    assert len(loaded.roster) >= 4
    assert possible_turns(loaded) >= 8
    assert all(name in loaded.personas for name in loaded.roster)
    assert all(doc.is_file() and doc.is_absolute() for doc in loaded.documents)
    summary = f"scenario '{scenario.name}': {len(loaded.roster)} personas"
    assert validate_file(path).startswith(summary)


def test_cache_review_has_its_document() -> None:
    loaded = load_scenario(builtin_dir() / "scenarios" / "cache-review.yaml")
    assert [d.name for d in loaded.documents] == ["orders-api.md"]
    assert loaded.roster == ["Planner", "Analyst", "Critic", "Summarizer"]
    assert set(loaded.persona_sources.values()) == {"builtin"}


def test_russian_scenario_is_all_inline_and_russian() -> None:
    loaded = load_scenario(builtin_dir() / "scenarios" / "zapusk-produkta.yaml")
    assert set(loaded.persona_sources.values()) == {"inline"}
    assert loaded.scenario.language == "ru"
    for persona in loaded.personas.values():  # Russian instructions; the cue asks for Russian
        assert persona.system and re.search("[а-яё]{4}", persona.system)
    assert loaded.scenario.memory.collapse is not None
    assert loaded.scenario.memory.collapse.summarizer in loaded.roster


def test_builtin_personas_are_short_distinct_roles() -> None:
    personas = builtin_personas()
    assert list(personas) == ["Analyst", "Critic", "Planner", "Summarizer"]
    systems = {p.system for p in personas.values()}
    assert len(systems) == 4
    for persona in personas.values():
        assert persona.description
        # short and concrete, for small models: a few lines, a reply that fits its num_predict
        assert persona.system and 2 <= len(persona.system.strip().splitlines()) <= 4
        assert persona.options.num_predict is not None and 120 <= persona.options.num_predict <= 300
        assert persona.options.temperature is not None
        assert validate_file(builtin_dir() / "personas" / f"{persona.name.lower()}.yaml") == (
            f"persona '{persona.name}'"
        )


# ---------------------------------------------------------------------------- error messages


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "name: demo\ngoal: [unclosed\npersonas: [Critic]\n")
    message = error_of(path)
    assert "broken.yaml, line 3, column 9" in message
    assert "YAML syntax error" in message


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.yaml", "name: demo\ngoall: x\npersonas: [Critic]\n")
    message = error_of(path)
    assert "typo.yaml, line 2, column 1, at goall" in message
    assert "unknown key 'goall' — did you mean 'goal'?" in message
    assert "more problem" not in message  # the missing 'goal' is the same slip


def test_unknown_nested_key_gives_the_keys_allowed_there(tmp_path: Path) -> None:
    text = MINIMAL + "termination:\n  max_turn: 5\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "line 5, column 3, at termination.max_turn" in message
    assert "did you mean 'max_turns'?" in message
    assert "max_turns, stop_phrase" in message


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    text = MINIMAL + "termination: {max_turns: lots}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "line 4, column 26, at termination.max_turns" in message
    assert "'lots'" in message and "integer" in message


def test_wrong_literal_suggests_the_allowed_value(tmp_path: Path) -> None:
    text = MINIMAL + "policy: {type: phase, phases: [{name: a, speakers: [Critic]}]}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "at policy" in message and "did you mean 'phases'?" in message


def test_error_inside_an_inline_persona_points_at_it(tmp_path: Path) -> None:
    text = "name: demo\ngoal: g\npersonas:\n  - Critic\n  - name: Bob\n    thinking: hiden\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "line 6, column 15, at personas[1].thinking" in message
    assert "did you mean 'hidden'?" in message
    assert "more problem" not in message  # the 'not a string' branch of str | Persona is noise


def test_persona_name_with_colon_is_rejected(tmp_path: Path) -> None:
    text = "name: demo\ngoal: g\npersonas:\n  - {name: 'Bad: name'}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "at personas[0].name" in message and "may not contain ':'" in message


def test_unknown_persona_suggests_and_lists_where_it_looked(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "name: demo\ngoal: g\npersonas: [Planner, Critc]\n")
    message = error_of(path)
    assert "s.yaml, line 3, column 21, at personas[1]" in message
    assert "unknown persona 'Critc' — did you mean 'Critic'?" in message
    assert str(tmp_path / "personas") in message and "built-in personas" in message


def test_phase_speaker_must_be_in_the_roster(tmp_path: Path) -> None:
    text = MINIMAL + (
        "policy:\n  type: phases\n  phases:\n"
        "    - {name: a, speakers: [Planner]}\n"
        "    - {name: b, speakers: [Critc]}\n"
    )
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "line 8, column 28, at policy.phases[1].speakers[0]" in message
    assert "did you mean 'Critic'?" in message and "Critic, Planner" in message


def test_round_robin_speaker_must_be_in_the_roster(tmp_path: Path) -> None:
    text = MINIMAL + "policy: {type: round_robin, speakers: [Planner, Analyst]}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "at policy.speakers[1]" in message and "'Analyst'" in message


def test_extends_cycle_is_named(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "a.yaml", "name: A\nsystem: a\nextends: B\n")
    write(tmp_path / "personas" / "b.yaml", "name: B\nsystem: b\nextends: A\n")
    message = error_of(write(tmp_path / "s.yaml", "name: demo\ngoal: g\npersonas: [A]\n"))
    assert "extends cycle: A -> B -> A" in message
    assert "b.yaml, line 3, column 10, at extends" in message


def test_inline_extends_cycle_is_named(tmp_path: Path) -> None:
    text = "name: demo\ngoal: g\npersonas:\n  - {name: A, extends: B}\n  - {name: B, extends: A}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "extends cycle: A -> B -> A" in message and "at personas[1].extends" in message


def test_unknown_extends_parent(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "tough.yaml", "name: Tough\nextends: Critik\n")
    message = error_of(write(tmp_path / "s.yaml", "name: demo\ngoal: g\npersonas: [Tough]\n"))
    assert "tough.yaml, line 2, column 10, at extends" in message
    assert "did you mean 'Critic'?" in message


def test_missing_scenario_file(tmp_path: Path) -> None:
    write(tmp_path / "cache-review.yaml", MINIMAL)
    message = error_of(tmp_path / "cache-reveiw.yaml")
    assert "cache-reveiw.yaml" in message and "not found" in message
    assert "cache-review.yaml'?" in message
    assert "did you mean" not in error_of(tmp_path / "other.yaml").lower()


def test_a_folder_is_not_a_scenario(tmp_path: Path) -> None:
    assert "is a folder" in error_of(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    message = error_of(write(tmp_path / "empty.yaml", text))
    assert "empty.yaml" in message and "empty" in message


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("just words\n", "a single value"), ("42\n", "42")]
)
def test_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "s.yaml, line 1, column 1" in message and "mapping" in message and kind in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: demo\ngoal: café\npersonas: [Critic]\n".encode("latin-1"))
    message = error_of(path)
    assert "latin1.yaml, line 2, column 10" in message and "UTF-8" in message


def test_missing_document(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "orders-api.md", "# doc\n")
    text = MINIMAL + "documents:\n  - docs/orders-api.md\n  - docs/order-api.md\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "s.yaml, line 6, column 5, at documents[1]" in message
    assert "'docs/order-api.md' not found" in message and "orders-api.md'?" in message


def test_document_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    message = error_of(write(tmp_path / "s.yaml", MINIMAL + "documents: [docs]\n"))
    assert "at documents[0]" in message and "not a file" in message


def test_documents_resolve_relative_to_the_scenario_not_the_cwd(tmp_path: Path) -> None:
    doc = write(tmp_path / "project" / "docs" / "a.md", "# a\n")
    path = write(tmp_path / "project" / "s.yaml", MINIMAL + "documents: [docs/a.md]\n")
    assert load_scenario(path).documents == (doc.resolve(),)


def test_collapse_summarizer_must_exist(tmp_path: Path) -> None:
    text = MINIMAL + "memory:\n  collapse: {summarizer: Sumariser}\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "at memory.collapse.summarizer" in message and "did you mean 'Summarizer'?" in message
    assert "line 5" in message


def test_collapse_summarizer_outside_the_roster_is_resolved_after_it(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path / "s.yaml", MINIMAL))
    assert loaded.roster == ["Critic", "Planner"]
    assert list(loaded.personas) == ["Critic", "Planner", "Summarizer"]
    assert loaded.persona_sources["Summarizer"] == "builtin"


def test_no_collapse_needs_no_summarizer(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path / "s.yaml", MINIMAL + "memory: {collapse: null}\n"))
    assert list(loaded.personas) == ["Critic", "Planner"]


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.yaml", MINIMAL + "goal: again\n"))
    assert "line 4, column 1" in message and "key 'goal' appears twice (first on line 2)" in message


def test_yaml_cannot_build_objects(tmp_path: Path) -> None:
    text = "name: demo\ngoal: !!python/object/apply:os.system [echo hi]\npersonas: [Critic]\n"
    message = error_of(write(tmp_path / "s.yaml", text))
    assert "line 2" in message and "not allowed" in message


def test_control_character_is_located(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\ngoal: a\x01b\npersonas: [Critic]\n", encoding="utf-8")
    message = error_of(path)
    assert "s.yaml, line 2, column 8" in message and "#x0001" in message


def test_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_scenario(path).scenario.name == "demo"


def test_schema_comment_is_fine(tmp_path: Path) -> None:
    text = "# yaml-language-server: $schema=./scenario.schema.json\n" + MINIMAL
    assert load_scenario(write(tmp_path / "s.yaml", text)).scenario.name == "demo"


def test_errors_carry_structured_location(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_scenario(write(tmp_path / "s.yaml", "name: demo\ngoall: x\npersonas: [Critic]\n"))
    error = caught.value
    assert (error.line, error.column, error.field) == (2, 1, "goall")  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------- lookup


CRITIC = "name: Critic\ndescription: {where}\nsystem: from {where}\n"


def test_lookup_order_inline_then_beside_then_cwd_then_builtin(
    tmp_path: Path, empty_cwd: Path
) -> None:
    project = tmp_path / "project"
    write(empty_cwd / "personas" / "critic.yaml", CRITIC.format(where="cwd"))
    write(project / "personas" / "critic.yaml", CRITIC.format(where="beside"))
    inline = "name: demo\ngoal: g\npersonas:\n  - {name: Critic, system: from inline}\n"

    loaded = load_scenario(write(project / "inline.yaml", inline))
    assert loaded.personas["Critic"].system == "from inline"
    assert loaded.persona_sources["Critic"] == "inline"

    loaded = load_scenario(write(project / "s.yaml", "name: demo\ngoal: g\npersonas: [Critic]\n"))
    assert loaded.personas["Critic"].system == "from beside"
    assert loaded.persona_sources["Critic"] == str((project / "personas" / "critic.yaml").resolve())

    (project / "personas" / "critic.yaml").unlink()
    loaded = load_scenario(project / "s.yaml")
    assert loaded.personas["Critic"].system == "from cwd"

    (empty_cwd / "personas" / "critic.yaml").unlink()
    loaded = load_scenario(project / "s.yaml")
    assert loaded.persona_sources["Critic"] == "builtin"
    assert loaded.personas["Critic"] == builtin_personas()["Critic"]


def test_personas_folder_beside_the_scenarios_folder_is_searched(tmp_path: Path) -> None:
    write(tmp_path / "project" / "personas" / "x.yaml", "name: Scout\nsystem: look around\n")
    text = "name: d\ngoal: g\npersonas: [Scout]\n"
    path = write(tmp_path / "project" / "scenarios" / "s.yaml", text)
    assert load_scenario(path).personas["Scout"].system == "look around"


def test_lookup_matches_the_name_inside_not_the_file_name(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "critic.yaml", "name: Reviewer\nsystem: not the critic\n")
    write(tmp_path / "personas" / "my-skeptic.yml", "name: Critic\nsystem: the skeptic\n")
    text = "name: d\ngoal: g\npersonas: [Critic, Reviewer]\n"
    loaded = load_scenario(write(tmp_path / "s.yaml", text))
    assert loaded.personas["Critic"].system == "the skeptic"
    assert loaded.personas["Reviewer"].system == "not the critic"


def test_lookup_is_case_sensitive(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.yaml", "name: d\ngoal: g\npersonas: [critic]\n"))
    assert "unknown persona 'critic' — did you mean 'Critic'?" in message


def test_an_invalid_unrelated_persona_file_does_not_block_others(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "junk.yaml", "name: [unclosed\n")
    loaded = load_scenario(write(tmp_path / "s.yaml", MINIMAL))
    assert loaded.persona_sources["Critic"] == "builtin"


def test_an_invalid_file_named_after_the_persona_reports_its_own_error(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "scout.yaml", "name: Scout\nsystem: x\nthinking: loud\n")
    message = error_of(write(tmp_path / "s.yaml", "name: d\ngoal: g\npersonas: [Scout]\n"))
    assert "scout.yaml, line 3, column 11, at thinking" in message


def test_two_files_with_the_same_persona_name_are_an_error(tmp_path: Path) -> None:
    write(tmp_path / "personas" / "a.yaml", "name: Scout\n")
    write(tmp_path / "personas" / "b.yaml", "name: Scout\n")
    message = error_of(write(tmp_path / "s.yaml", "name: d\ngoal: g\npersonas: [Scout]\n"))
    assert "b.yaml" in message and "also defined in" in message and "a.yaml" in message


# --------------------------------------------------------------------------------- extends


def test_extends_inherits_then_overrides_and_merges_options(tmp_path: Path) -> None:
    write(
        tmp_path / "personas" / "tough.yaml",
        "name: Tough\nextends: Critic\noptions: {temperature: 0.9, seed: 7}\n",
    )
    loaded = load_scenario(write(tmp_path / "s.yaml", "name: d\ngoal: g\npersonas: [Tough]\n"))
    tough, critic = loaded.personas["Tough"], builtin_personas()["Critic"]
    assert tough.name == "Tough" and tough.extends == "Critic"
    assert tough.system == critic.system and tough.description == critic.description
    assert tough.options.temperature == 0.9 and tough.options.seed == 7
    assert tough.options.num_predict == critic.options.num_predict


def test_extends_chain_of_three(tmp_path: Path) -> None:
    text = (
        "name: d\ngoal: g\npersonas:\n"
        "  - {name: C, extends: B, options: {seed: 3}}\n"
        "  - {name: B, extends: Planner, system: plan fast, options: {temperature: 1.0}}\n"
    )
    loaded = load_scenario(write(tmp_path / "s.yaml", text))
    c = loaded.personas["C"]
    assert c.system == "plan fast"
    assert (c.options.seed, c.options.temperature) == (3, 1.0)
    assert c.options.num_predict == builtin_personas()["Planner"].options.num_predict


def test_a_persona_extending_its_own_name_extends_the_next_definition(tmp_path: Path) -> None:
    write(
        tmp_path / "personas" / "critic.yaml",
        "name: Critic\nextends: Critic\noptions: {temperature: 0.0}\n",
    )
    loaded = load_scenario(write(tmp_path / "s.yaml", "name: d\ngoal: g\npersonas: [Critic]\n"))
    critic = loaded.personas["Critic"]
    assert critic.options.temperature == 0.0
    assert critic.system == builtin_personas()["Critic"].system
    assert loaded.persona_sources["Critic"].endswith("critic.yaml")


def test_load_persona_file_is_raw(tmp_path: Path) -> None:
    path = write(tmp_path / "tough.yaml", "name: Tough\nextends: Critic\n")
    persona = load_persona_file(path)
    assert persona.extends == "Critic" and persona.system is None


# ------------------------------------------------------------------ text, unicode, validate


RUSSIAN = """\
name: запуск
goal: Решить, запускать ли продукт в мае.
personas:
  - name: Критик
    system: Ты Критик. Найди слабое место.
  - name: Итоговый
    system: Подведи итог.
memory:
  collapse: {summarizer: Итоговый}
"""


def test_russian_round_trip(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path / "запуск.yaml", RUSSIAN))
    assert loaded.roster == ["Критик", "Итоговый"]
    assert loaded.scenario.goal == "Решить, запускать ли продукт в мае."
    assert loaded.source_yaml == RUSSIAN
    again = load_scenario_text(loaded.source_yaml, path=loaded.path)
    assert again.scenario == loaded.scenario and again.personas == loaded.personas


def test_russian_error_message(tmp_path: Path) -> None:
    text = RUSSIAN + "policy: {type: round_robin, speakers: [Критк]}\n"
    message = error_of(write(tmp_path / "запуск.yaml", text))
    assert "запуск.yaml" in message and "did you mean 'Критик'?" in message


def test_load_scenario_text_without_a_path(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.md", "# a\n")
    loaded = load_scenario_text(MINIMAL + "documents: [docs/a.md]\n", base_dir=tmp_path)
    assert loaded.path is None and loaded.documents[0].name == "a.md"
    with pytest.raises(ConfigError, match=r"<scenario>, line 2, column 1, at goall"):
        load_scenario_text("name: x\ngoall: y\npersonas: [Critic]\n")


def test_validate_file_tells_persona_from_scenario(tmp_path: Path) -> None:
    assert validate_file(write(tmp_path / "s.yaml", MINIMAL)) == "scenario 'demo': 2 personas"
    persona = write(tmp_path / "p.yaml", "name: Tough\nextends: Critic\n")
    assert validate_file(persona) == "persona 'Tough' (extends 'Critic')"
    bad_parent = write(tmp_path / "q.yaml", "name: Tough\nextends: Critik\n")
    with pytest.raises(ConfigError, match="did you mean 'Critic'"):
        validate_file(bad_parent)
    with pytest.raises(ConfigError, match="neither a persona nor a scenario"):
        validate_file(write(tmp_path / "n.yaml", "colour: blue\n"))


def test_validate_file_on_a_persona_reports_persona_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"p\.yaml, line 2, column 1, at systme: unknown key"):
        validate_file(write(tmp_path / "p.yaml", "name: X\nsystme: hi\n"))


# ------------------------------------------------------------------------------ JSON schema


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("persona", {"name", "system", "extends", "options"}),
        ("scenario", {"goal", "personas", "policy"}),
    ],
)
def test_json_schema(kind: str, fields: set[str]) -> None:
    schema = json.loads(json.dumps(json_schema(kind)))  # type: ignore[arg-type]
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert fields <= set(schema["properties"])
    assert schema["additionalProperties"] is False
