"""``personae validate``'s turn plan for the recipes: the chain walks the chunks its documents
would import, self-ask takes every follow-up it may, the task loop works as many tasks as the
Planner may list — and the isolated worker turns raise no "twice in a row" note."""

from __future__ import annotations

from pathlib import Path

from personae.config import builtin_dir, load_scenario
from personae.memory.documents import split_document
from personae.orchestrator.plan import plan_lines, turn_plan
from tests.cli_batch import run_batch

SCENARIOS = builtin_dir() / "scenarios"


def test_a_chain_is_planned_over_the_chunks_of_its_documents() -> None:
    loaded = load_scenario(SCENARIOS / "chain-of-agents.yaml")
    [document] = loaded.documents
    chunks = split_document(document.read_text(encoding="utf-8"), document.name).meta["chunks"]
    plan = turn_plan(loaded)
    speakers = [m.speaker for m in plan.messages]
    assert speakers == ["Worker"] * chunks + ["Manager"]
    assert plan.ends == "answered"
    assert not any("twice in a row" in w for w in plan.warnings), plan.warnings
    assert plan_lines(plan) == [
        f"chunk 1/{chunks} … chunk {chunks}/{chunks}: Worker 1–{chunks}",
        f"answer: Manager {chunks + 1}",
        "ends: answered",
    ]


def test_a_chain_by_sections_is_planned_a_section_a_turn_and_says_that_is_the_least() -> None:
    plan = turn_plan(load_scenario(SCENARIOS / "chain-of-sections.yaml"))
    workers = [m for m in plan.messages if m.speaker == "Worker"]
    assert 1 < len(workers) < 34 and plan.messages[-1].speaker == "Manager"
    assert all(m.phase and m.phase.startswith("section ") for m in workers)
    assert any("the least" in w for w in plan.warnings), plan.warnings


def test_self_ask_is_planned_with_every_follow_up_it_may_ask() -> None:
    loaded = load_scenario(SCENARIOS / "self-ask.yaml")
    follow_ups = loaded.scenario.policy.max_follow_ups  # type: ignore[union-attr]
    plan = turn_plan(loaded)
    assert [m.speaker for m in plan.messages] == ["Asker", "Retriever"] * follow_ups + ["Asker"]
    assert plan.ends == "answered"


def test_a_task_loop_is_planned_with_as_many_tasks_as_the_planner_may_list() -> None:
    loaded = load_scenario(SCENARIOS / "task-loop.yaml")
    plan = turn_plan(loaded, max_turns=200)
    executed = [m.phase for m in plan.messages if m.speaker == "Executor"]
    max_tasks = loaded.scenario.policy.max_tasks  # type: ignore[union-attr]
    assert executed == [f"task {n}" for n in range(1, max_tasks + 1)]
    assert plan.messages[0].speaker == "Planner" and plan.ends == "tasks_done"


def test_validate_prints_a_chain_plan_on_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    [result] = run_batch([["validate", str(SCENARIOS / "chain-of-agents.yaml")]], cli_env, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any(line.startswith("chunk 1/") and ": Worker 1–" in line for line in lines), lines
    assert "twice in a row" not in result.stderr


def test_the_longest_value_numbers_integer_items_and_keeps_booleans() -> None:
    from personae.orchestrator.plan import longest

    schema = {"type": "object", "properties": {"items": {
        "type": "array", "minItems": 1, "maxItems": 3,
        "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "done": {"type": "boolean"}, "step": {"enum": ["a", "b"]},
        }},
    }}}
    assert longest(schema) == {"items": [{"id": n, "done": False, "step": "a"} for n in (1, 2, 3)]}
