"""Tasks generated offline from reasoning-gym (``rg:NAME``): procedural, seeded, no download, and
checked by the library's own scorer for that task (``score_answer``), not by ours.

reasoning-gym is the optional extra ``personae[eval]``; without it ``rg:…`` is a one-line error
saying how to install it.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from personae.errors import UserError
from personae.eval.tasks import Task, default_check

PREFIX = "rg:"
MAX_ITEMS = 10_000


def is_generated(source: str) -> bool:
    return source.startswith(PREFIX)


def generate(source: str, *, items: int, seed: int) -> list[Task]:
    """``items`` tasks of the reasoning-gym dataset named after ``rg:``, seeded by ``seed``."""
    name = source[len(PREFIX):].strip()
    try:
        rg: Any = importlib.import_module("reasoning_gym")
        factory: Any = importlib.import_module("reasoning_gym.factory")
    except ImportError:
        raise UserError(f"{source} needs reasoning-gym, which is not installed. Install it with: "
                        "pip install 'personae[eval]'") from None
    known = sorted(factory.DATASETS)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean rg:{close[0]}?" if close else ""
        raise UserError(f"{source}: reasoning-gym has no task {name!r}.{hint} It has "
                        f"{len(known)}, e.g. rg:basic_arithmetic, rg:chain_sum, rg:leg_counting.")
    if not 1 <= items <= MAX_ITEMS:
        raise UserError(f"--items {items}: generate from 1 to {MAX_ITEMS} tasks.")
    dataset = rg.create_dataset(name, size=items, seed=seed)
    tasks = []
    for index, entry in enumerate(dataset):
        answer = str(entry["answer"])

        def score(said: str, entry: dict[str, Any] = entry) -> float:
            return float(dataset.score_answer(said, entry))

        tasks.append(Task(f"{name}-{seed}-{index}", str(entry["question"]), answer,
                          default_check(answer, ()), score=score))
    return tasks
