"""The task loop policy (BabyAGI, Nakajima 2023): plan, execute, re-plan, prioritise.

The planner keeps the task list as a structured reply (JSON Schema: tasks with id, text,
status); the executor works the first open task; the planner then updates the list with what
the result calls for, the prioritizer re-orders the open tasks, and the executor takes the next.
A task the executor has worked is done, whatever a later list says (BabyAGI pops it), and at
most ``max_tasks`` distinct tasks are ever taken up, so the loop ends: when no task is open, or
earlier at the scenario's budget (``max_turns``, ``token_budget``).

The list is re-derived from the committed transcript (``task_list``), never kept in memory, so a
resumed run continues with the same list. The run loop writes it into the memory graph as
``task`` nodes (``orchestrator/recipe_graph.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from personae.config.models import TaskLoopPolicy
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance

TASK_TEXT_CHARS = 160
TASK_TEMPLATE = (
    "{% for t in tasks %}- [{{ 'x' if t.status == 'done' else ' ' }}] {{ t.id }}. {{ t.text }}\n"
    "{% endfor %}"
)
ORDER_TEMPLATE = "Priority: {{ order | join(', ') }}"


def tasks_schema(max_tasks: int, statuses: tuple[str, ...] = ("open", "done")) -> dict[str, Any]:
    """The task list; the first list may only hold open tasks (a small model otherwise marks
    its new tasks done and the loop ends before any work)."""
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_tasks,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer", "minimum": 1, "maximum": 999},
                        "text": {"type": "string", "maxLength": TASK_TEXT_CHARS},
                        "status": {"type": "string", "enum": list(statuses)},
                    },
                    "required": ["id", "text", "status"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["tasks"],
        "additionalProperties": False,
    }


def order_schema(max_tasks: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "order": {
                "type": "array", "maxItems": max_tasks,
                "items": {"type": "integer", "minimum": 1, "maximum": 999},
            }
        },
        "required": ["order"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Task:
    id: int
    text: str
    done: bool
    made_at: int  # the turn whose list first held it


def role(u: Utterance) -> str | None:
    return (u.meta or {}).get("task_loop")


def task_list(history: Sequence[Utterance], max_tasks: int) -> list[Task]:
    """The list as the transcript leaves it: done tasks first, then the open ones by priority."""
    tasks: dict[int, Task] = {}
    order: list[int] = []
    for u in history:
        kind, data = role(u), u.structured or {}
        if kind == "plan" and isinstance(data.get("tasks"), list):
            for item in data["tasks"]:
                task_id, text = item.get("id"), str(item.get("text", "")).strip()
                if not isinstance(task_id, int) or not text:
                    continue
                if task_id in tasks:  # a later list may close a task, never reopen one
                    if item.get("status") == "done" and not tasks[task_id].done:
                        tasks[task_id] = Task(task_id, tasks[task_id].text, True, tasks[task_id].made_at)
                elif len(tasks) < max_tasks:
                    tasks[task_id] = Task(task_id, text, item.get("status") == "done", u.turn)
                    order.append(task_id)
        elif kind == "execute":
            task_id = (u.meta or {}).get("task")
            if task_id in tasks:
                tasks[task_id] = Task(task_id, tasks[task_id].text, True, tasks[task_id].made_at)
        elif kind == "prioritize" and isinstance(data.get("order"), list):
            wanted = [i for i in dict.fromkeys(data["order"]) if i in tasks]
            order = wanted + [i for i in order if i not in wanted]
    listed = [tasks[i] for i in order]
    return [t for t in listed if t.done] + [t for t in listed if not t.done]


def first_open(tasks: Sequence[Task]) -> Task | None:
    return next((t for t in tasks if not t.done), None)


class TaskLoop:
    def __init__(self, config: TaskLoopPolicy) -> None:
        self.planner = config.planner
        self.executor = config.executor
        self.prioritizer = config.prioritizer
        self.max_tasks = config.max_tasks

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        own = [u for u in history[since:] if u.persona != HUMAN]
        tasks = task_list(own, self.max_tasks)
        last = role(own[-1]) if own else None
        if last is None:
            return self._plan(
                f"Break the goal into at most {self.max_tasks} concrete tasks, each one short "
                "sentence, numbered from 1, every status open.",
                statuses=("open",),
            )
        if last == "execute":
            worked = (own[-1].meta or {}).get("task")
            return self._plan(
                f"Task {worked} is done; its result is the last message. Write the whole task "
                f"list again: the tasks so far with their status (task {worked} done), plus new "
                "tasks only if the result shows the goal needs them, with new numbers."
            )
        nxt = first_open(tasks)
        if nxt is None:
            return None
        executed_before = any(role(u) == "execute" for u in own)
        if last == "plan" and executed_before:
            return TurnPlan(
                self.prioritizer,
                phase="prioritize",
                instructions="Order the open tasks by what the goal needs first: "
                + "; ".join(f"{t.id}. {t.text}" for t in tasks if not t.done)
                + ". Reply with their numbers, most urgent first.",
                schema=order_schema(self.max_tasks),
                template=ORDER_TEMPLATE,
                meta={"task_loop": "prioritize"},
            )
        return TurnPlan(
            self.executor,
            phase=f"task {nxt.id}",
            instructions=f"Work on task {nxt.id}: {nxt.text}\nDo the task now and write its "
            "result in at most three sentences.",
            meta={"task_loop": "execute", "task": nxt.id},
        )

    def _plan(self, instructions: str, statuses: tuple[str, ...] = ("open", "done")) -> TurnPlan:
        return TurnPlan(
            self.planner,
            phase="plan",
            instructions=instructions,
            schema=tasks_schema(self.max_tasks, statuses),
            template=TASK_TEMPLATE,
            meta={"task_loop": "plan", "max_tasks": self.max_tasks},
        )

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        return "tasks_done"
