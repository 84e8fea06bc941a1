"""Scenario YAML for tests, written in one place: one roster, and ``make_scenario`` around it.

Tests differ in the words their personas say (a router test asserts a description appears in the
selector's prompt; a layout test counts tokens of the system prompts), so the roster keeps one
default wording per persona and each test file passes what it says differently as arguments. To
drive a run, use ``tests.durable_support``: ``run_events`` / ``run_to_end`` / ``start``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    system: str


ROSTER = (
    Persona("Planner", "plans", "Plan concretely."),
    Persona("Analyst", "numbers", "Bring numbers."),
    Persona("Critic", "flaws", "Attack the weakest claim."),
    Persona("Summarizer", "sums up", "Sum up."),
)
# The one-word instructions many policy tests use: short prompts, the same turn order.
TERSE = {"Planner": "Plan.", "Analyst": "Count.", "Critic": "Attack.", "Summarizer": "Sum up."}


def roster(
    names: Sequence[str] = tuple(p.name for p in ROSTER),
    *,
    systems: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    described: bool = True,
    options: str | None = None,
) -> str:
    """The ``personas:`` block for ``names`` of ``ROSTER``, one flow mapping per line;
    ``systems`` / ``descriptions`` replace the roster's words for some personas, ``described``
    False leaves descriptions out, ``options`` (a YAML flow mapping) is given to every persona."""
    by_name = {p.name: p for p in ROSTER}
    lines = []
    for name in names:
        person = by_name[name]
        fields = [f"name: {name}"]
        if described:
            fields.append(f"description: {(descriptions or {}).get(name, person.description)}")
        fields.append(f"system: {(systems or {}).get(name, person.system)}")
        if options is not None:
            fields.append(f"options: {options}")
        lines.append("  - {" + ", ".join(fields) + "}\n")
    return "personas:\n" + "".join(lines)


def make_scenario(
    policy: str = "",
    *,
    name: str = "test",
    goal: str = "Decide on a cache.",
    context: str | None = None,
    personas: str | None = None,
    guard: bool = False,
    extra: str = "",
) -> str:
    """A scenario as YAML text: name, goal, the guard off (``guard`` True leaves it at its
    default), ``context``, ``personas`` (default: the whole roster), then ``policy`` and ``extra``
    (termination, memory, inputs ...) as given, each ending in a newline."""
    return (
        f"name: {name}\ngoal: {goal}\n"
        + ("" if guard else "guard: {enabled: false}\n")
        + (f"context: {context}\n" if context is not None else "")
        + (personas if personas is not None else roster())
        + policy
        + extra
    )
