"""Give a scenario's variables their values and put them in its texts, pointing at the line of
any mistake.

The values a run uses are settled first (``settle_values``: the declared defaults, then the given
values; a name not declared or a variable left unset is an error), then the texts that reach
prompts are filled (``fill_scenario``: goal, context, inputs, modes; ``fill_persona``: a persona's
``system``). The text rules themselves are ``variables.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from personae.config.messages import Problems, config_error, did_you_mean, format_path
from personae.config.models import Loc, Persona, Scenario
from personae.config.variables import fill, is_name, placeholders, value_problem
from personae.config.yaml_source import Source, node_at
from personae.errors import ConfigError


@dataclass(frozen=True)
class Spot:
    """Where a text was written, for messages: the file's label, its node and field path."""

    label: str
    node: yaml.Node | None
    loc: Loc


def uses_variables(scenario: Scenario) -> bool:
    """Only a scenario with a ``vars:`` key (even an empty one) is substituted at all."""
    return "vars" in scenario.model_fields_set


def settle_values(
    scenario: Scenario, src: Source | None, values_given: Mapping[str, str] | None, *,
    require: bool = True,
) -> dict[str, str]:
    """The value of every declared variable: the given one, else its default; in declared order.
    ``require`` False (checking or listing a file, not running it) lets a variable without a
    default stand for itself: its placeholder ``{name}`` stays in the texts."""
    given: dict[str, object] = dict(values_given or {})
    label = src.label if src is not None else "<scenario>"
    root = src.node if src is not None else None
    declared = scenario.vars
    if not uses_variables(scenario):
        if given:
            names = ", ".join(sorted(given))
            first = sorted(given)[0]
            raise config_error(
                label, None, "vars",
                f"a value was given for {names}, but the scenario declares no variables.",
                f"Declare them in the scenario (`vars: {{{first}: null}}`) and write {{{first}}} "
                "where the value goes, or leave the value out.",
            )
        return {}
    vars_node, _ = node_at(root, ("vars",))
    problems = Problems(label)  # every wrong or missing value, not only the first
    rejected: set[str] = set()
    for name, value in list(given.items()):
        if name not in declared:
            guess = did_you_mean(name, list(declared))
            problem = f"a value was given for '{name}', which the scenario does not declare"
            problem += f" — did you mean '{guess}'?" if guess else "."
            known = ", ".join(declared) or "none"
            fix = (
                f"Declared variables: {known}. Fix the name, or declare it under `vars:` "
                f"(`{name}: null` to require it, or `{name}: default text`)."
            )
            if not is_name(name):
                fix = "A variable name is letters, digits and _ (not first a digit). " + fix
            problems.add(config_error(label, vars_node, "vars", problem, fix))
            rejected.add(guess or name)  # a misspelt name: its variable's "no value" is the same slip
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            given[name] = value = str(value)
        why = value_problem(value) if isinstance(value, str) else (
            f"it is {type(value).__name__}, not text"
        )
        if why:
            problems.add(config_error(
                label, vars_node, f"vars.{name}", f"the value given for '{name}' cannot be used: "
                f"{why}.", "Give the value as UTF-8 text.",
            ))
            rejected.add(name)
    values: dict[str, str] = {}
    for name, default in declared.items():
        if name in rejected:  # said above
            continue
        chosen = given.get(name, default)
        assert chosen is None or isinstance(chosen, str)  # checked above
        if chosen is None and not require:
            chosen = "{" + name + "}"
        if chosen is None:
            node, _ = node_at(root, ("vars", name))
            problems.add(config_error(
                label, node, f"vars.{name}",
                f"variable '{name}' has no default and no value was given.",
                f"Give it when running: `--var {name}=VALUE` (library: variables={{'{name}': ...}}), "
                f"or write a default here: `{name}: some text`.",
            ))
            continue
        values[name] = chosen
    problems.raise_all()
    return values


def fill_scenario(scenario: Scenario, src: Source | None, values: dict[str, str]) -> Scenario:
    """The scenario with its goal, context, inputs and modes filled in (unchanged without `vars:`)."""
    if not uses_variables(scenario):
        return scenario
    label = src.label if src is not None else "<scenario>"
    root = src.node if src is not None else None
    problems = Problems(label)  # every unknown placeholder, not only the first

    def text(value: str, loc: Loc) -> str:
        filled = problems.attempt(
            lambda: fill_text(value, values, lambda: Spot(label, node_at(root, loc)[0], loc))
        )
        return value if filled is None else filled

    inputs = [
        item.model_copy(update={"text": text(item.text, ("inputs", i, "text"))})
        for i, item in enumerate(scenario.inputs)
    ]
    goal = text(scenario.goal, ("goal",))
    update = {
        "goal": goal,
        "context": text(scenario.context, ("context",)),
        "inputs": inputs,
        "modes": {name: text(words, ("modes", name)) for name, words in scenario.modes.items()},
    }
    problems.raise_all()
    if not goal.strip():  # the one text a run cannot do without
        raise config_error(
            label, node_at(root, ("goal",))[0], "goal", "the goal is empty once its variables "
            "are filled in.", "Give the variables a value that is not empty.",
        )
    return scenario.model_copy(update=update)


def fill_persona(
    persona: Persona, values: dict[str, str], where: Callable[[str], Spot]
) -> Persona:
    """The persona with its instructions (``system``) and ``description`` (which routers and
    the roster show) filled in; ``where(field)`` finds the file and line that wrote the field,
    asked only for an error message."""
    problems = Problems(where("system").label)
    update = {
        field: problems.attempt(lambda: fill_text(text, values, lambda: where(field)))
        for field in ("system", "description")  # where() is called before `field` moves on
        if (text := getattr(persona, field))
    }
    problems.raise_all()
    return persona.model_copy(update=update) if update else persona


def fill_text(text: str, values: dict[str, str], where: Callable[[], Spot]) -> str:
    for name, _ in placeholders(text):
        if name not in values:
            raise _undeclared(name, values, where())
    return fill(text, values)


def _undeclared(name: str, values: dict[str, str], spot: Spot) -> ConfigError:
    guess = did_you_mean(name, list(values))
    problem = f"the placeholder {{{name}}} names no variable declared under `vars:`"
    problem += f" — did you mean {{{guess}}}?" if guess else "."
    fix = (
        f"Declare it in the scenario (`vars: {{{name}: null}}` to require a value), fix the "
        f"name, or write {{{{{name}}}}} for the literal text {{{name}}}."
    )
    line, column = _placeholder_mark(spot.node, name)
    node = spot.node if line is None else None
    return config_error(
        spot.label, node, format_path(spot.loc), problem, fix, line=line, column=column
    )


def _placeholder_mark(node: yaml.Node | None, name: str) -> tuple[int | None, int | None]:
    """Line and column of the placeholder in the file, found in the node's source text (PyYAML
    keeps the whole document in its marks); None when the text is not there as written."""
    if node is None or node.start_mark.buffer is None:
        return None, None
    start, end = node.start_mark.index, node.end_mark.index
    raw = node.start_mark.buffer[start:end]
    found = next((at for n, at in placeholders(raw) if n == name), None)
    if found is None:
        return None, None
    before = node.start_mark.buffer[:start + found]
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1
