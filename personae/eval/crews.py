"""Crew scenarios for ``crew`` and ``vote``: a scenario file with a ``question`` variable, loaded
once per task with the task's question as that variable (``vars:`` in the scenario)."""

from __future__ import annotations

from collections.abc import Sequence

from personae.config.loader import LoadedScenario, load_scenario
from personae.eval.methods import Method
from personae.eval.runner import ScenarioLoader
from personae.eval.tasks import Task

VARIABLE = "question"


def load_crew(method: Method, task: Task) -> LoadedScenario:
    """The crew scenario of ``method`` with ``task``'s question as its ``question`` variable."""
    assert method.scenario is not None, "crew and vote methods always name a scenario"
    return load_scenario(method.scenario, variables={VARIABLE: task.question})


def crew_loader(methods: Sequence[Method], tasks: Sequence[Task], *,
                default_num_ctx: int) -> tuple[ScenarioLoader, int]:
    """The loader, and the window the model must serve: every crew scenario is loaded once now
    with the first question, so a broken one is an error before any model loads."""
    num_ctx = default_num_ctx
    for method in methods:
        if method.deliberates and tasks:
            loaded = load_crew(method, tasks[0])
            num_ctx = max(num_ctx, loaded.scenario.memory.num_ctx or 0)
    return load_crew, num_ctx
