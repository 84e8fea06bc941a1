"""Persona and scenario files: the validated models, loading with line numbers, JSON Schema.

The names below load on first use (PEP 562): ``personae.config.names`` and the other light
modules are imported by commands that must start fast (``personae runs``), and importing this
package must not pull pydantic, YAML and Jinja in for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from personae.config.builtin import builtin_dir
    from personae.config.loader import (
        LoadedScenario,
        builtin_personas,
        load_persona_file,
        load_scenario,
        load_scenario_text,
        validate_file,
    )
    from personae.config.models import (
        CollapseConfig,
        ConsensusConfig,
        GenerationOptions,
        GuardConfig,
        MemoryConfig,
        Persona,
        Phase,
        PhasesPolicy,
        Policy,
        ReflectPolicy,
        RoundRobinPolicy,
        RouterPolicy,
        RouteRule,
        RouteWhen,
        Scenario,
        ScenarioInput,
        StopCondition,
        TerminationConfig,
    )
    from personae.config.schema import json_schema

_HOME = {
    "builtin_dir": "personae.config.builtin",
    "LoadedScenario": "personae.config.loader",
    "builtin_personas": "personae.config.loader",
    "load_persona_file": "personae.config.loader",
    "load_scenario": "personae.config.loader",
    "load_scenario_text": "personae.config.loader",
    "validate_file": "personae.config.loader",
    "CollapseConfig": "personae.config.models",
    "ConsensusConfig": "personae.config.models",
    "GenerationOptions": "personae.config.models",
    "GuardConfig": "personae.config.models",
    "MemoryConfig": "personae.config.models",
    "Persona": "personae.config.models",
    "Phase": "personae.config.models",
    "PhasesPolicy": "personae.config.models",
    "Policy": "personae.config.models",
    "ReflectPolicy": "personae.config.models",
    "RoundRobinPolicy": "personae.config.models",
    "RouterPolicy": "personae.config.models",
    "RouteRule": "personae.config.models",
    "RouteWhen": "personae.config.models",
    "Scenario": "personae.config.models",
    "ScenarioInput": "personae.config.models",
    "StopCondition": "personae.config.models",
    "TerminationConfig": "personae.config.models",
    "json_schema": "personae.config.schema",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "CollapseConfig",
    "ConsensusConfig",
    "GenerationOptions",
    "GuardConfig",
    "LoadedScenario",
    "MemoryConfig",
    "Persona",
    "Phase",
    "PhasesPolicy",
    "Policy",
    "ReflectPolicy",
    "RoundRobinPolicy",
    "RouteRule",
    "RouteWhen",
    "RouterPolicy",
    "Scenario",
    "ScenarioInput",
    "StopCondition",
    "TerminationConfig",
    "builtin_dir",
    "builtin_personas",
    "json_schema",
    "load_persona_file",
    "load_scenario",
    "load_scenario_text",
    "validate_file",
]
