"""`personae import crewai`: a CrewAI crew's YAML becomes personas and a phases scenario that
loads, takes its placeholders as variables, and runs (scripted backend here; CrewAI's own template
on the real model in test_import_crewai_template.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from personae.config import load_scenario, validate_file
from personae.errors import ConfigError, UserError
from personae.importers.crewai import import_project
from personae.importers.files import write_converted
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.repo import Store

AGENTS = """\
planner:
  role: >
    {product} Launch Planner
  goal: >
    Plan the launch of {product} in {market-region}
  backstory: >
    You have shipped ten launches. You keep {{braces}} and {"json": 1} as they are.
  llm: ollama/llama3.2
  tools: [SerperDevTool]
  allow_delegation: true
critic:
  role: Risk Critic
  goal: Find what would make the {product} launch fail
  backstory: You were burned once.
idle_helper:
  role: Helper
  goal: Help
  backstory: Rarely needed.
"""
TASKS = """\
plan_task:
  description: >
    Write a launch plan for {product}.
  expected_output: >
    Five steps, each with an owner.
  agent: planner
  output_file: plan.md
review_task:
  description: Attack the plan.
  expected_output: The three biggest risks, ranked.
  agent: critic
  context: [plan_task]
  async_execution: true
"""


def project(tmp_path: Path, agents: str = AGENTS, tasks: str = TASKS) -> Path:
    config = tmp_path / "crew" / "src" / "launch_crew" / "config"
    config.mkdir(parents=True)
    (config / "agents.yaml").write_text(agents, encoding="utf-8")
    (config / "tasks.yaml").write_text(tasks, encoding="utf-8")
    (config.parent / "crew.py").write_text("# the crew in Python\n", encoding="utf-8")
    return tmp_path / "crew"


def test_agents_become_personas_and_tasks_phases_in_order(tmp_path: Path) -> None:
    converted = import_project(project(tmp_path))
    written, summary = write_converted(converted, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "personas/planner.yaml", "personas/critic.yaml", "personas/idle_helper.yaml",
        "scenarios/launch-crew.yaml",
    ]
    assert summary == (
        "scenario 'launch-crew': 2 personas, 2 variables (product, market_region given with --var "
        "when run)"
    )
    scenario = yaml.safe_load(written[-1].read_text(encoding="utf-8"))
    assert scenario["personas"] == ["Planner", "Critic"]
    assert scenario["vars"] == {"product": None, "market_region": None}
    assert [(p["name"], p["speakers"], p["mode"]) for p in scenario["policy"]["phases"]] == [
        ("plan_task", ["Planner"], "plan_task"), ("review_task", ["Critic"], "review_task"),
    ]
    assert scenario["modes"]["review_task"] == (
        "Your task now (review_task): Attack the plan.\nExpected output: The three biggest risks, "
        "ranked.\nBuild on what was said in: plan_task.\n"
    )
    planner = yaml.safe_load(written[0].read_text(encoding="utf-8"))
    assert planner["system"] == (
        "You are {product} Launch Planner.\nYou have shipped ten launches. You keep {{{{braces}}}} "
        'and {"json": 1} as they are.\nYour personal goal is: Plan the launch of {product} in '
        "{market_region}\n"
    )

    loaded = load_scenario(written[-1], variables={"product": "Nimbus", "market_region": "EU"})
    assert loaded.personas["Planner"].system.splitlines() == [
        "You are Nimbus Launch Planner.",
        'You have shipped ten launches. You keep {{braces}} and {"json": 1} as they are.',
        "Your personal goal is: Plan the launch of Nimbus in EU",
    ]
    assert loaded.scenario.modes["plan_task"].startswith("Your task now (plan_task): Write a launch plan for Nimbus.")


def test_what_cannot_be_carried_over_is_listed(tmp_path: Path) -> None:
    notes = import_project(project(tmp_path)).notes
    assert notes == [
        "placeholder {market-region} is the variable market_region (no '-' in Personae names)",
        "agent planner: `llm` not carried over (one model plays every persona: choose it with "
        "`model:` or --model)",
        "agent planner: `tools` not carried over (Personae personas have no tools; give them what a "
        "tool would fetch as `documents:`)",
        "agent planner: `allow_delegation` not carried over (delegation is not modelled: each "
        "phase gives its task to one persona)",
        "task plan_task: `output_file` not carried over (write it from the run: personae show RUN "
        "--format md)",
        "task review_task: `async_execution` not carried over (turns run one after another)",
        "agent idle_helper: no task names it; its persona file is written, but it is not in the "
        "scenario's roster",
        "crew.py is not read: tools, the process, callbacks and the kickoff inputs set in Python "
        "are not carried over (give the inputs with --var)",
    ]


def test_the_imported_crew_runs_each_task_with_its_agent(tmp_path: Path) -> None:
    written, _ = write_converted(import_project(project(tmp_path)), tmp_path / "out")
    loaded = load_scenario(written[-1], variables={"product": "Nimbus", "market_region": "EU"})
    backend = ScriptedBackend([
        "Step one for Nimbus: book the venue in March.", "Risk one: the venue may cancel on us.",
    ])
    store = Store.open(tmp_path / "r.db")
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    list(Orchestrator(loaded, backend, store, settings).run(run_id))
    messages = store.messages(run_id)
    assert [(m.persona, m.phase) for m in messages] == [("Planner", "plan_task"), ("Critic", "review_task")]
    assert store.run(run_id).stop_reason != "max_turns"
    first, second = (r.messages[-1].content for r in backend.requests)  # no retries: 2 calls
    assert "Write a launch plan for Nimbus." in first and "{product}" not in first
    assert "Attack the plan." in second and "Build on what was said in: plan_task." in second
    assert store.run(run_id).variables == {"product": "Nimbus", "market_region": "EU"}


@pytest.mark.parametrize(
    ("agents", "tasks", "expected"),
    [
        (AGENTS, TASKS.replace("agent: critic", "agent: critc"),
         r"tasks\.yaml, line 11, column 10, at review_task\.agent: unknown agent 'critc' — did you mean 'critic'\?"),
        (AGENTS, TASKS.replace("context: [plan_task]", "context: [plan_tsk]"),
         r"tasks\.yaml, line 12, column 12, at review_task\.context: unknown task 'plan_tsk' — did you mean 'plan_task'\?"),
        (AGENTS.replace("  role: Risk Critic\n", ""), TASKS,
         r"agents\.yaml, line 12, column 3, at critic\.role: agent 'critic' has no `role`, which CrewAI requires\."),
        ("- a\n- b\n", TASKS, r"agents\.yaml, line 1, column 1: the file should map each agent's key"),
        (AGENTS, "plan_task: [a]\n", r"tasks\.yaml, line 1, column 12, at plan_task: task 'plan_task' should be a mapping"),
        (AGENTS, "plan_task:\n  description: [a\n", r"tasks\.yaml, line 3, column 1: YAML syntax error"),
    ],
)
def test_bad_crew_files_are_one_message_at_their_line(
    tmp_path: Path, agents: str, tasks: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        import_project(project(tmp_path, agents, tasks))


def test_bad_folders_and_existing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such folder"):
        import_project(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"No agents.yaml under .*src/<name>/config/"):
        import_project(tmp_path / "empty")
    converted = import_project(project(tmp_path))
    config = tmp_path / "crew" / "src" / "launch_crew" / "config"
    assert import_project(config / "tasks.yaml").scenario.data == converted.scenario.data
    (config / "tasks.yaml").unlink()
    with pytest.raises(UserError, match=r"agents\.yaml has no tasks\.yaml beside it"):
        import_project(tmp_path / "crew")
    write_converted(converted, tmp_path / "out")
    (tmp_path / "out" / "personas" / "critic.yaml").write_text("name: Mine\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"Not overwriting .*critic\.yaml.*--force"):
        write_converted(converted, tmp_path / "out")
    assert (tmp_path / "out" / "personas" / "critic.yaml").read_text() == "name: Mine\n"
    write_converted(converted, tmp_path / "out", force=True)
    assert validate_file(tmp_path / "out" / "personas" / "critic.yaml") == "persona 'Critic'"
    (tmp_path / "out" / "personas" / "mine.yaml").write_text("name: critic\nsystem: Mine.\n")
    with pytest.raises(UserError, match=r"mine\.yaml already defines a persona named 'critic'"):
        write_converted(converted, tmp_path / "out", force=True)


def test_keys_that_slug_alike_get_files_and_modes_of_their_own(tmp_path: Path) -> None:
    agents = "a b: {role: R, goal: G, backstory: B}\na_b: {role: S, goal: H, backstory: C}\n"
    tasks = (
        "t 1: {description: D, expected_output: E, agent: a b}\n"
        "t_1: {description: F, expected_output: G, agent: a_b}\n"
    )
    converted = import_project(project(tmp_path, agents, tasks))
    assert [str(p.relative) for p in converted.personas] == ["personas/a_b.yaml", "personas/a_b_2.yaml"]
    assert list(converted.scenario.data["modes"]) == ["t_1", "t_1_2"]
    assert [p["mode"] for p in converted.scenario.data["policy"]["phases"]] == ["t_1", "t_1_2"]
    written, _ = write_converted(converted, tmp_path / "out")
    assert load_scenario(written[-1]).roster == ["A B", "A B 2"]
