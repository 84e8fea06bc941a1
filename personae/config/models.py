"""Pydantic models of the YAML a user writes: personas and scenarios.

They are the contract between a user's files and the orchestrator, so they forbid unknown keys
(a typo must be an error with a did-you-mean, never a silently ignored setting) and carry
descriptions, which ``personae schema`` exports for editor autocompletion.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationOptions(Strict):
    """Sampling options, in Ollama's names; other backends translate them."""

    temperature: float | None = Field(None, ge=0, le=5)
    num_predict: int | None = Field(None, ge=1, description="Maximum tokens of one reply.")
    seed: int | None = None
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0)
    stop: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Persona(Strict):
    """One subpersonality. The same model plays every persona; only these instructions change."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\s:][^:\n]*$")
    description: str = Field(
        "", description="One line on what this persona contributes; routers and selectors read it."
    )
    system: str | None = Field(None, description="The persona's instructions for its own turns.")
    extends: str | None = Field(None, description="Name of a persona to inherit fields from.")
    options: GenerationOptions = GenerationOptions()
    thinking: Literal["hidden", "visible"] = Field(
        "hidden",
        description="hidden: <thinking>…</thinking> is stored but not shown to other personas.",
    )
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema for structured replies (constrained decoding)."
    )


class Phase(Strict):
    name: str = Field(min_length=1)
    speakers: list[str] = Field(min_length=1)
    rounds: int = Field(1, ge=1, le=10_000)


class RoundRobinPolicy(Strict):
    """Every persona speaks in roster order (or `speakers` order), again and again."""

    type: Literal["round_robin"] = "round_robin"
    speakers: list[str] | None = Field(None, description="Defaults to the scenario's roster.")


class PhasesPolicy(Strict):
    """Ordered phases; in each, its speakers take turns for `rounds` rounds."""

    type: Literal["phases"]
    phases: list[Phase] = Field(min_length=1)
    repeat: bool = Field(False, description="Start again from the first phase after the last.")


Policy = Annotated[RoundRobinPolicy | PhasesPolicy, Field(discriminator="type")]


class CollapseConfig(Strict):
    at_fraction: float = Field(0.6, gt=0, le=0.95)
    keep_recent: int = Field(4, ge=0)
    summarizer: str = "Summarizer"
    every_turns: int | None = Field(None, ge=1)
    on_phase_end: bool = False
    fan_in: int = Field(4, ge=2)


class MemoryConfig(Strict):
    num_ctx: int | None = Field(
        None, ge=256, description="The window actually served; default: the model's metadata."
    )
    collapse: CollapseConfig | None = CollapseConfig()


class TerminationConfig(Strict):
    max_turns: int = Field(12, ge=1, le=100_000)
    stop_phrase: str | None = Field(None, min_length=1)


class Scenario(Strict):
    """A deliberation: the goal, who takes part, who speaks when, memory and stop rules."""

    name: str = Field(min_length=1, max_length=200)
    goal: str = Field(min_length=1)
    context: str = ""
    documents: list[str] = Field(
        default_factory=list, description="Markdown or text files, relative to the scenario file."
    )
    personas: list[str | Persona] = Field(
        min_length=1, description="Names of personas, or inline persona definitions."
    )
    model: str | None = Field(None, description="Model name (Ollama) or a .gguf path (embedded).")
    layout: Literal["cache_friendly", "classic"] = "cache_friendly"
    policy: Policy = RoundRobinPolicy()
    memory: MemoryConfig = MemoryConfig()
    termination: TerminationConfig = TerminationConfig()
    options: GenerationOptions = Field(
        GenerationOptions(), description="Defaults for every persona; a persona's own win."
    )
    language: str | None = Field(None, description="Language personas should answer in, e.g. ru.")

    @field_validator("personas")
    @classmethod
    def _unique_roster(cls, value: list[str | Persona]) -> list[str | Persona]:
        names = [p if isinstance(p, str) else p.name for p in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"persona listed twice: {', '.join(dupes)}")
        return value

    @property
    def roster(self) -> list[str]:
        return [p if isinstance(p, str) else p.name for p in self.personas]
