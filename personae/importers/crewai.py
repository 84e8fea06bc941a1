"""`personae import crewai`: a CrewAI crew as Personae persona files and a `phases` scenario.

What maps, and how:

- each agent becomes a persona: its ``name`` from the agent's key (``reporting_analyst`` ->
  "Reporting Analyst"), its ``system`` the words CrewAI itself builds an agent's prompt from
  ("You are {role}. {backstory} Your personal goal is: {goal}"), its ``description`` the goal;
- each task becomes a phase, in file order (CrewAI's sequential process), spoken by the task's
  agent, with the task's description and expected output as that phase's mode (instructions added
  on top of the persona); ``context`` is named in them (every turn is visible to later ones anyway);
- CrewAI's ``{placeholders}`` become the scenario's ``vars:`` (no defaults: each run gives them
  with ``--var``), so an unset one is the loader's clear message rather than a literal ``{topic}``.

What does not (tools, delegation, llm settings, output files, callbacks …) is listed in
``Converted.notes``, one line each, for the command to print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personae.config.names import canonical_name, is_reserved, name_problem
from personae.importers.crewai_source import CrewProject, Entry, read_project, unknown_reference

# CrewAI's own placeholder rule (crewai/utilities/string_utils.py): a name of letters, digits,
# _ and -. Personae's variable names have no '-': such a name is renamed with '_'.
_CREW_TEXT = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_\-]*)\}")

_AGENT_FIELDS = {"role", "goal", "backstory"}
_TASK_FIELDS = {"description", "expected_output", "agent", "context", "name"}
_WHY = {
    "tools": "Personae personas have no tools; give them what a tool would fetch as `documents:`",
    "llm": "one model plays every persona: choose it with `model:` or --model",
    "function_calling_llm": "one model plays every persona",
    "allow_delegation": "delegation is not modelled: each phase gives its task to one persona",
    "max_iter": "each task is one turn",
    "max_rpm": "there is no rate limit",
    "memory": "Personae's memory is the scenario's `memory:` (collapse -> rebuild)",
    "knowledge_sources": "use the scenario's `documents:`",
    "output_file": "write it from the run: personae show RUN --format md",
    "output_json": "give the persona an `output_schema`",
    "output_pydantic": "give the persona an `output_schema`",
    "async_execution": "turns run one after another",
    "human_input": "take part with `personae run --interactive`, or script `inputs:`",
    "guardrail": "the reply guard checks replies; task guardrails are not carried over",
    "callback": "Python callbacks are not carried over",
    "verbose": "every turn is stored and streamed anyway",
}


@dataclass(frozen=True)
class OutputFile:
    relative: Path  # inside the output folder
    data: dict[str, Any]
    comment: str


@dataclass
class Converted:
    scenario: OutputFile
    personas: list[OutputFile]
    variables: list[str]  # the placeholders found, as Personae variable names
    notes: list[str] = field(default_factory=list)


def import_project(root: Path) -> Converted:
    return convert(read_project(root))


def convert(project: CrewProject) -> Converted:
    notes: list[str] = []
    found: dict[str, None] = {}  # placeholder names, in order of first use
    names = _persona_names([a.key for a in project.agents])

    def text(raw: str) -> str:
        return _as_personae_text(raw, found, notes)

    agent_keys = [a.key for a in project.agents]
    files = _unique({a.key: _slug(a.key) for a in project.agents})
    mode_keys = _unique({t.key: _slug(t.key) for t in project.tasks})
    phase_names = _unique({t.key: _phase_name(t.key) for t in project.tasks})
    task_keys = [t.key for t in project.tasks]
    personas, speakers, phases, modes = [], [], [], {}
    for agent in project.agents:
        role, goal = agent.require("role", "agent"), agent.require("goal", "agent")
        backstory = agent.require("backstory", "agent")
        personas.append(OutputFile(
            Path("personas") / f"{files[agent.key]}.yaml",
            {
                "name": names[agent.key],
                "description": text(_one_line(goal)),
                "system": text(f"You are {role}.\n{backstory}\nYour personal goal is: {goal}") + "\n",
            },
            f"CrewAI agent '{agent.key}' of {project.name}, imported by `personae import crewai`.",
        ))
        notes += _left_out(agent, _AGENT_FIELDS, "agent")
    for task in project.tasks:
        description = task.require("description", "task")
        expected = task.require("expected_output", "task")
        agent_key = task.text("agent")
        if agent_key is None:
            agent_key = agent_keys[0]
            notes.append(f"task {task.key}: no `agent` (set in Python, or a hierarchical crew); "
                         f"given to {names[agent_key]}")
        elif agent_key not in names:
            raise unknown_reference(task, "agent", agent_key, agent_keys, "agent")
        context = _context(task, task_keys)
        words = f"Your task now ({task.key}): {description}\nExpected output: {expected}"
        if context:
            words += f"\nBuild on what was said in: {', '.join(context)}."
        modes[mode_keys[task.key]] = text(words) + "\n"
        phases.append({
            "name": phase_names[task.key], "speakers": [names[agent_key]], "mode": mode_keys[task.key],
        })
        if names[agent_key] not in speakers:
            speakers.append(names[agent_key])
        notes += _left_out(task, _TASK_FIELDS, "task")
    for agent in project.agents:
        if names[agent.key] not in speakers:
            notes.append(f"agent {agent.key}: no task names it; its persona file is written, but it "
                         "is not in the scenario's roster")
    notes += _python_notes(project)

    last = project.tasks[-1]
    order = " -> ".join(t.key for t in project.tasks)
    goal = text(f"Carry out the crew's tasks in order ({order}) and deliver: "
                f"{_one_line(last.require('expected_output', 'task'))}")
    scenario = {
        "name": _slug(project.name).replace("_", "-"),
        "goal": goal,
        "vars": {name: None for name in found},
        "personas": speakers,
        "modes": modes,
        "policy": {"type": "phases", "phases": phases},
    }
    if len(phases) > 12:  # the default max_turns would stop it before its last task
        scenario["termination"] = {"max_turns": len(phases)}
    comment = (
        f"CrewAI crew {project.name} ({project.folder}), imported by `personae import crewai`.\n"
        "Each task is a phase spoken by its agent; run it with a value for each variable:\n"
        "  personae run THIS_FILE " + " ".join(f"--var {n}=..." for n in found)
    )
    return Converted(
        OutputFile(Path("scenarios") / f"{scenario['name']}.yaml", scenario, comment),
        personas, list(found), notes,
    )


def _as_personae_text(raw: str, found: dict[str, None], notes: list[str]) -> str:
    """CrewAI text -> Personae text: a literal `{{` or `}}` doubled (so it stays as written),
    each placeholder kept as a variable (a name with '-' renamed with '_')."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0) * 2
        renamed = name.replace("-", "_")
        if renamed != name and renamed not in found:
            notes.append(f"placeholder {{{name}}} is the variable {renamed} (no '-' in Personae names)")
        found.setdefault(renamed, None)
        return "{" + renamed + "}"

    return _CREW_TEXT.sub(one, raw)


def _persona_names(keys: list[str]) -> dict[str, str]:
    """Agent key -> persona name: words of the key, capitalised; unique, printable, not User."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for index, key in enumerate(keys, 1):
        words = re.sub(r"[\W_]+", " ", key).split()  # letters of any script, digits
        base = " ".join(w[:1].upper() + w[1:] for w in words) or f"Agent {index}"
        if is_reserved(base) or name_problem(base):
            base = f"{base} Agent" if not name_problem(f"{base} Agent") else f"Agent {index}"
        name, n = base[:60], 2
        while canonical_name(name) in taken:
            name, n = f"{base[:56]} {n}", n + 1
        taken.add(canonical_name(name))
        names[key] = name
    return names


def _context(task: Entry, task_keys: list[str]) -> list[str]:
    given = task.fields.get("context")
    if given is None or given.value is None:
        return []
    items = given.value if isinstance(given.value, list) else [given.value]
    earlier = task_keys[: task_keys.index(task.key)]
    for item in items:
        if str(item) not in task_keys:
            raise unknown_reference(task, "context", str(item), task_keys, "task")
    late = [str(i) for i in items if str(i) not in earlier]
    if late:
        raise unknown_reference(task, "context", late[0], earlier or ["(none before it)"], "earlier task")
    return [str(i) for i in items]


def _left_out(entry: Entry, carried: set[str], what: str) -> list[str]:
    notes = []
    for name, value in entry.fields.items():
        if name in carried or value.value in (None, False, [], {}):
            continue
        why = _WHY.get(name, "Personae has no such setting")
        notes.append(f"{what} {entry.key}: `{name}` not carried over ({why})")
    return notes


def _python_notes(project: CrewProject) -> list[str]:
    notes = []
    for script in ("crew.py", "main.py"):
        if (project.folder.parent / script).is_file():
            notes.append(
                f"{script} is not read: tools, the process, callbacks and the kickoff inputs set in "
                "Python are not carried over (give the inputs with --var)"
            )
            break
    return notes


def _unique(by_key: dict[str, str]) -> dict[str, str]:
    """Keys that differ only in characters a slug drops (`a-b`, `a_b`) still get their own."""
    seen: set[str] = set()
    out = {}
    for key, value in by_key.items():
        chosen, n = value, 2
        while chosen.casefold() in seen:
            chosen, n = f"{value}_{n}", n + 1
        seen.add(chosen.casefold())
        out[key] = chosen
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _slug(key: str) -> str:
    slug = re.sub(r"[^0-9A-Za-z_-]+", "_", key).strip("_-").lower()
    return slug[:80] or "crew"


def _phase_name(key: str) -> str:
    return _one_line(key).replace("/", "_")[:80] or "task"
