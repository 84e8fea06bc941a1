"""Crew scenarios for ``crew`` and ``vote``: a scenario file with a ``question`` variable, loaded
once per task with the task's question as that variable (``vars:`` in the scenario).

A task with documents hands them to a crew whose scenario has none, so that no method answers a
question about a document it never sees: the scenario is loaded with the task's files as its
``documents:`` and, if its ``memory.collapse`` is off, collapse on at the largest
``at_fraction`` — the memory block, where retrieval puts the passages, is part of collapse→
rebuild — unless its policy reads the documents itself (``chain``, ``self_ask``: they walk or
retrieve the run's chunks). A scenario with documents of its own (``chain-of-agents``,
``self-ask``) reads those.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from personae.config.loader import LoadedScenario, load_scenario, load_scenario_text
from personae.eval.methods import RETRIEVAL_AT_FRACTION, Method
from personae.eval.runner import ScenarioLoader
from personae.eval.task_documents import named_from
from personae.orchestrator.policies import reads_documents
from personae.eval.tasks import Task

VARIABLE = "question"


def load_crew(method: Method, task: Task, allowed_dirs: Sequence[Path] = ()) -> LoadedScenario:
    """The crew scenario of ``method`` with ``task``'s question as its ``question`` variable
    (and the task's documents, when the scenario has none). ``allowed_dirs``: ``--allow-dir``."""
    assert method.scenario is not None, "crew and vote methods always name a scenario"
    loaded = load_scenario(method.scenario, variables={VARIABLE: task.question},
                           allowed_dirs=allowed_dirs)
    if loaded.documents or not task.documents:
        return loaded
    data: dict[str, Any] = yaml.safe_load(loaded.source_yaml)
    base = method.scenario.expanduser().resolve().parent
    data["documents"] = named_from(base, task.documents)
    memory = data.setdefault("memory", {})
    if memory.get("collapse", {}) is None and not reads_documents(loaded.scenario.policy):
        memory["collapse"] = {"at_fraction": RETRIEVAL_AT_FRACTION}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return load_scenario_text(text, path=method.scenario, variables={VARIABLE: task.question},
                              allowed_dirs=[*allowed_dirs, *sorted({d.parent for d in task.documents})])


def crew_loader(methods: Sequence[Method], tasks: Sequence[Task], *, default_num_ctx: int,
                allowed_dirs: Sequence[Path] = ()) -> tuple[ScenarioLoader, int]:
    """The loader, and the window the model must serve: every crew scenario is loaded once now
    with the first question, so a broken one is an error before any model loads."""
    load = partial(load_crew, allowed_dirs=tuple(allowed_dirs))
    num_ctx = default_num_ctx
    for method in methods:
        if method.deliberates and tasks:
            loaded = load(method, tasks[0])
            num_ctx = max(num_ctx, loaded.scenario.memory.num_ctx or 0)
    return load, num_ctx
