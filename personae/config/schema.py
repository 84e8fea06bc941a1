"""JSON Schema of the persona and scenario files, for editors and for `personae schema`.

Editors that speak JSON Schema (VS Code's YAML extension, JetBrains) autocomplete and check a file
as it is typed, which catches most mistakes before ``personae validate`` ever runs. The schema is
derived from the pydantic models, so it can never drift from what the loader accepts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from personae.config.models import Persona, Scenario
from personae.errors import UserError

_MODELS: dict[str, type[BaseModel]] = {"persona": Persona, "scenario": Scenario}


def json_schema(kind: Literal["persona", "scenario"]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a persona or a scenario file."""
    model = _MODELS.get(kind)
    if model is None:
        raise UserError(f"Unknown schema kind {kind!r}: use 'persona' or 'scenario'.")
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
