"""A variant's scenario as its run uses it: variables, option overrides and roster substitutions.

A substitution (``vary: {personas: [{Critic: Skeptic}]}``) puts another persona in one's place
wherever the scenario names it (the roster, phases' speakers, router rules, the collapse
summarizer): every text value or key equal to the old name becomes the new one. The result is
loaded as YAML text by the ordinary loader, from the scenario's own folder, so the new persona is
found where `personae run` would find it, and the run stores the scenario as it ran.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from personae.batch.sweep import Variant
from personae.config.loader import LoadedScenario, load_scenario, load_scenario_text
from personae.config.yaml_source import parse_yaml, read_text
from personae.errors import UserError


def load_variant(variant: Variant) -> LoadedScenario:
    if not variant.personas:
        return load_scenario(variant.path, variables=variant.variables, options=variant.options)
    file = Path(variant.path)
    data = parse_yaml(read_text(file, variant.path), variant.path).data
    roster = [p if isinstance(p, str) else p.get("name") for p in (data or {}).get("personas") or []]
    missing = [old for old in variant.personas if old not in roster]
    if missing:
        raise UserError(
            f"The sweep puts {', '.join(f'{n!r}' for n in variant.personas.values())} in place of "
            f"{', '.join(repr(m) for m in missing)}, but the scenario {variant.path} has no such "
            f"persona (its roster: {', '.join(map(str, roster))}). Fix `vary.personas` in the sweep."
        )
    text = yaml.safe_dump(_swap(data, variant.personas), sort_keys=False, allow_unicode=True)
    loaded = load_scenario_text(
        text, path=file, base_dir=file.parent, variables=variant.variables, options=variant.options
    )
    return replace(loaded, path=file.resolve())


def _swap(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_swap(item, names) for item in value]
    if isinstance(value, dict):
        return {_swap(k, names): _swap(v, names) for k, v in value.items()}
    return value
