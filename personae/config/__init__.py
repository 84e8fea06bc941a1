"""Persona and scenario files: the validated models, loading with line numbers, JSON Schema."""

from personae.config.loader import (
    LoadedScenario,
    builtin_dir,
    builtin_personas,
    load_persona_file,
    load_scenario,
    load_scenario_text,
    validate_file,
)
from personae.config.models import (
    CollapseConfig,
    GenerationOptions,
    MemoryConfig,
    Persona,
    Phase,
    PhasesPolicy,
    Policy,
    RoundRobinPolicy,
    Scenario,
    TerminationConfig,
)
from personae.config.schema import json_schema

__all__ = [
    "CollapseConfig",
    "GenerationOptions",
    "LoadedScenario",
    "MemoryConfig",
    "Persona",
    "Phase",
    "PhasesPolicy",
    "Policy",
    "RoundRobinPolicy",
    "Scenario",
    "TerminationConfig",
    "builtin_dir",
    "builtin_personas",
    "json_schema",
    "load_persona_file",
    "load_scenario",
    "load_scenario_text",
    "validate_file",
]
