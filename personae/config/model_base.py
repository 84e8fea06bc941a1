"""What every model of the user's files shares: strictness, field paths, printable names.

Its own module so that the scenario models (``models.py``) and the recipes' policy models
(``recipe_models.py``) build on one base without importing each other.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from personae.config.names import name_problem

# A field path inside a scenario file, e.g. ("policy", "phases", 1, "speakers", 0).
Loc = tuple[str | int, ...]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _printable_name(value: str) -> str:
    """Names are shown on terminals and in prompts: one visible line (``config/names.py``)."""
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Name = Annotated[str, AfterValidator(_printable_name)]
