"""Option overrides for one run (`personae run -o temperature 0.2 -o num_predict 250`).

As ``llm -o`` does, a value arrives as text and is typed by the option it names (a number for
``temperature``, a whole number for ``num_predict``; ``stop`` takes one string per ``-o``, repeated
for more). An override wins over the scenario's ``options:`` and over every persona's own, so it
is applied to both; the personas stored with the run carry it, and the run row keeps the
overrides themselves, so ``resume`` and ``replay`` honour them without the flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from personae.config.messages import did_you_mean, show_value
from personae.config.models import GenerationOptions, Persona, Scenario
from personae.errors import ConfigError

LIST_OPTIONS = {"stop"}


def typed_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each override checked and typed by its option, in the order given; a clear error for an
    unknown option or a value it cannot take."""
    typed: dict[str, Any] = {}
    fields = list(GenerationOptions.model_fields)
    for key, value in (given or {}).items():
        if key not in fields:
            guess = did_you_mean(key, fields)
            raise ConfigError(
                f"-o {key}: unknown option" + (f" — did you mean '{guess}'?" if guess else ".")
                + f" Options: {', '.join(fields)} (Ollama's names; every backend translates them)."
            )
        if key in LIST_OPTIONS and isinstance(value, str):
            value = [value]
        try:
            checked = GenerationOptions.model_validate({key: value})
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            reason = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"-o {key} {show_value(_shown(value))}: {reason[:1].lower()}{reason[1:]}. "
                f"{_hint(key)}"
            ) from None
        typed[key] = getattr(checked, key)
    return typed


def apply_options(
    scenario: Scenario, personas: dict[str, Persona], overrides: dict[str, Any]
) -> tuple[Scenario, dict[str, Persona]]:
    """The scenario's defaults and every persona's options with ``overrides`` on top."""
    if not overrides:
        return scenario, personas

    def merged(options: GenerationOptions) -> GenerationOptions:
        return GenerationOptions.model_validate({**options.as_dict(), **overrides})

    scenario = scenario.model_copy(update={"options": merged(scenario.options)})
    personas = {
        name: persona.model_copy(update={"options": merged(persona.options)})
        for name, persona in personas.items()
    }
    return scenario, personas


def _shown(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _hint(key: str) -> str:
    field = GenerationOptions.model_fields[key]
    bounds = [
        f"{word} {getattr(m, attr)}" for m in field.metadata
        for attr, word in (("ge", "at least"), ("gt", "above"), ("le", "at most"))
        if getattr(m, attr, None) is not None
    ]
    kind = {"num_predict": "a whole number", "top_k": "a whole number", "seed": "a whole number",
            "stop": "text (one -o stop per string)"}.get(key, "a number")
    return f"{key} takes {kind}" + (f", {' and '.join(bounds)}" if bounds else "") + "."
