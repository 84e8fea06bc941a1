"""Pydantic models of the YAML a user writes: personas and scenarios.

They are the contract between a user's files and the orchestrator, so they forbid unknown keys
(a typo must be an error with a did-you-mean, never a silently ignored setting) and carry
descriptions, which ``personae schema`` exports for editor autocompletion.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import regex
from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from personae.config.model_base import Loc as Loc
from personae.config.model_base import Name, Strict
from personae.config.names import HUMAN, canonical_name, is_reserved, quoted_name
from personae.config.recipe_models import (
    ChainPolicy,
    RankingConfig,
    SelfAskPolicy,
    TaskLoopPolicy,
)
from personae.config.template import check_template
from personae.config.variables import VarTable
from personae.limits import INT32_MAX, INT64_MAX, MAX_NUM_CTX, MAX_TURNS, SEED_MAX


class GenerationOptions(Strict):
    """Sampling options, in Ollama's names; other backends translate them."""

    temperature: float | None = Field(None, ge=0, le=5)
    num_predict: int | None = Field(
        None, ge=1, le=INT32_MAX, description="Maximum tokens of one reply."
    )
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=INT32_MAX)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0)
    stop: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Persona(Strict):
    """One subpersonality. The same model plays every persona; only these instructions change."""

    name: Name = Field(min_length=1, max_length=64, pattern=r"^[^\s:][^:\n]*$")
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
        None,
        description="JSON Schema (an object) for structured replies: constrained decoding, "
        "validated, stored as JSON; fields claims/decisions/questions feed the memory graph.",
    )

    output_template: str | None = Field(
        None,
        description="How a structured reply reads to the others: a Jinja template over its "
        "fields (rendered in a sandbox), e.g. `FINAL DECISION: {{ decision }}`.",
    )

    @field_validator("output_template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @field_validator("output_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # A reply is stored as a JSON object beside its rendered text, so the root is an object.
        if value is not None and (value.get("type") != "object" or "properties" not in value):
            raise ValueError(
                "output_schema must be an object schema: `type: object` with `properties:`"
            )
        if value is not None:
            from personae.config.output_schema import check_output_schema

            check_output_schema(value)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if is_reserved(value):
            raise ValueError(
                f"the name {quoted_name(value)} is reserved for {HUMAN}, the person taking part (scripted "
                "`inputs:` and --interactive lines); name the persona something else"
            )
        return value


class Phase(Strict):
    """One stage of a deliberation: its speakers in turn for `rounds` rounds, or any policy."""

    name: Name = Field(min_length=1, pattern=r"^[^/\n]+$")
    speakers: list[str] | None = Field(
        None, min_length=1, description="Who speaks, in this order, each round."
    )
    rounds: int = Field(1, ge=1, le=10_000)
    policy: Policy | None = Field(
        None, description="Any policy (router, reflect, phases, round_robin) instead of speakers."
    )
    mode: str | None = Field(
        None,
        description="Instructions added on top of each speaker's persona in this phase: a "
        "built-in mode (plan, critique, debate, brainstorm, review, conclude) or one of `modes:`.",
    )
    turns: int | None = Field(
        None, ge=1, le=MAX_TURNS, description="At most this many turns in the phase."
    )

    @model_validator(mode="after")
    def _speakers_or_policy(self) -> Phase:
        if (self.speakers is None) == (self.policy is None):
            raise ValueError(
                f"phase '{self.name}' needs either `speakers:` or `policy:` (exactly one of them)"
            )
        if self.policy is not None and "rounds" in self.model_fields_set:
            raise ValueError(
                f"phase '{self.name}': `rounds:` goes with `speakers:`; with `policy:` use `turns:`"
            )
        return self

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        for j, speaker in enumerate(self.speakers or []):
            yield ("speakers", j), speaker
        if self.policy is not None:
            for loc, name in self.policy.persona_refs():
                yield ("policy", *loc), name


class RoundRobinPolicy(Strict):
    """Every persona speaks in roster order (or `speakers` order), again and again."""

    type: Literal["round_robin"] = "round_robin"
    speakers: list[str] | None = Field(None, description="Defaults to the scenario's roster.")

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        for j, speaker in enumerate(self.speakers or []):
            yield ("speakers", j), speaker


class PhasesPolicy(Strict):
    """Ordered phases; in each, its speakers take turns for `rounds` rounds, or its own policy
    runs until it is done (or has used the phase's `turns`)."""

    type: Literal["phases"]
    phases: list[Phase] = Field(min_length=1)
    repeat: bool = Field(False, description="Start again from the first phase after the last.")

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        for i, phase in enumerate(self.phases):
            for loc, name in phase.persona_refs():
                yield ("phases", i, *loc), name


class RouteWhen(Strict):
    """What the message just said must look like. Every condition given must hold."""

    persona: str | list[str] | None = Field(None, description="Who said it (User for input).")
    contains: str | list[str] | None = Field(
        None, description="Any of these words or phrases (case-insensitive)."
    )
    regex: str | None = Field(None, description="A Python regular expression it must match.")
    phase: str | None = Field(None, description="The phase it was said in.")

    @model_validator(mode="after")
    def _some_condition(self) -> RouteWhen:
        if not self.model_fields_set:
            raise ValueError("`when:` needs at least one of persona, contains, regex, phase")
        if self.regex is not None:
            try:  # the engine the router matches with (orchestrator/policies/router.py)
                regex.compile(self.regex)
            except regex.error as exc:
                raise ValueError(f"invalid regular expression {self.regex!r}: {exc}") from None
        return self


class RouteRule(Strict):
    when: RouteWhen
    next: str = Field(description="The persona who speaks next when `when` holds.")


class RouterPolicy(Strict):
    """Rules map what was just said to who speaks next; the model may choose where none match."""

    type: Literal["router"]
    speakers: list[str] | None = Field(None, description="Defaults to the scenario's roster.")
    rules: list[RouteRule] = Field(default_factory=list, description="First match wins.")
    selector: Literal["llm", "none"] = Field(
        "none", description="llm: the model picks the next speaker where no rule matches."
    )
    default: str | None = Field(
        None,
        description="Speaker when no rule matches and there is no selector or its answer is "
        "invalid. Defaults to the first speaker.",
    )
    start: str | None = Field(None, description="Who opens; otherwise the rules decide.")
    allow_repeat: bool = Field(False, description="May a persona speak twice in a row?")
    allowed_transitions: dict[str, list[str]] | None = Field(
        None,
        description="Who may follow whom: {Planner: [Critic, Analyst]}. A persona not listed "
        "may be followed by anyone.",
    )

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        for j, speaker in enumerate(self.speakers or []):
            yield ("speakers", j), speaker
        for i, rule in enumerate(self.rules):
            yield ("rules", i, "next"), rule.next
        if self.default is not None:
            yield ("default",), self.default
        if self.start is not None:
            yield ("start",), self.start
        for source, targets in (self.allowed_transitions or {}).items():
            yield ("allowed_transitions", source), source
            for j, target in enumerate(targets):
                yield ("allowed_transitions", source, j), target


class ReflectPolicy(Strict):
    """Self-Refine: the author drafts, the critic answers with a verdict {approve, issues}, the
    author revises; until the critic approves or `max_rounds` verdicts were given."""

    type: Literal["reflect"]
    author: str
    critic: str
    max_rounds: int = Field(3, ge=1, le=100, description="At most this many verdicts.")

    @model_validator(mode="after")
    def _two_people(self) -> ReflectPolicy:
        if self.author == self.critic:
            raise ValueError("the author and the critic must be different personas")
        return self

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        yield ("author",), self.author
        yield ("critic",), self.critic


Policy = Annotated[
    RoundRobinPolicy | PhasesPolicy | RouterPolicy | ReflectPolicy
    | ChainPolicy | SelfAskPolicy | TaskLoopPolicy,  # the recipes (config/recipe_models.py)
    Field(discriminator="type"),
]


class CollapseConfig(Strict):
    """When and how older turns are collapsed into memory (summaries, facts, decisions)."""

    at_fraction: float = Field(
        0.6, gt=0, le=0.95, description="Collapse when the next prompt would pass this share "
        "of the window."
    )
    keep_recent: int = Field(
        4, ge=0, le=MAX_TURNS, description="Messages kept verbatim after a collapse."
    )
    summarizer: str = Field("Summarizer", description="The persona that writes the collapse.")
    every_turns: int | None = Field(
        None, ge=1, le=MAX_TURNS, description="Also collapse after this many turns since the last collapse."
    )
    on_phase_end: bool = Field(False, description="Also collapse when a phase ends.")
    fan_in: int = Field(
        4, ge=2, le=MAX_TURNS, description="When a level holds more summaries than this, merge them one up."
    )
    max_tokens: int = Field(
        320, ge=48, le=4096, description="Reply budget of one collapse call; the sizes of the "
        "summary and of each item derive from it."
    )


class MemoryConfig(Strict):
    num_ctx: int | None = Field(
        None, ge=256, le=MAX_NUM_CTX,
        description="The window actually served; default: the model's metadata.",
    )
    collapse: CollapseConfig | None = CollapseConfig()
    ranking: RankingConfig = Field(
        default_factory=RankingConfig,
        description="How the rebuild ranks memory items for the block: bm25 (default) or "
        "generative (recency x importance x relevance, as in Generative Agents).",
    )


DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$"


def _seconds(value: Any) -> Any:
    """``90``, ``"90s"``, ``"5m"``, ``"1h"`` -> seconds."""
    if isinstance(value, bool):  # YAML's `yes`/`true` is no duration, though Python counts it 1
        raise ValueError(f"{value!r} is not a duration; write seconds, or e.g. 90s, 5m, 1h")
    if isinstance(value, str):
        match = re.fullmatch(DURATION_PATTERN[1:-1], value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write seconds, or e.g. 90s, 5m, 1h")
        return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    return value


# Seconds, or a string with a unit. The JSON Schema says so too (a plain ``float`` field with a
# converting validator told editors that ``timeout: 30m`` was wrong while the loader took it).
Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    Field(gt=0),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": DURATION_PATTERN},
        ]
    }),
]


class ConsensusConfig(Strict):
    personas: list[str] | None = Field(None, description="Who must agree; default: the roster.")
    marker: str = Field(
        "I AGREE",
        min_length=1,
        description="Text that marks agreement (case-insensitive); a structured reply agrees "
        "with `agree: true` or `approve: true`.",
    )


class _StopRules(Strict):
    """The stop rules. Several in one mapping: whichever holds first stops the run."""

    stop_phrase: str | None = Field(None, min_length=1, description="Stop when a message has it.")
    approved: bool | None = Field(None, description="Stop when a reflect critic approves.")
    consensus: bool | ConsensusConfig | None = Field(
        None, description="Stop when every listed persona's last message agrees."
    )
    token_budget: int | None = Field(
        None, ge=1, le=INT64_MAX, description="Stop at this many evaluated tokens."
    )
    timeout: Duration | None = Field(
        None, description="Stop after this long in one process: seconds, or 90s, 5m, 1h."
    )
    any: list[StopCondition] | None = Field(
        None, min_length=1, description="Stop when any of these holds (one rule per item)."
    )
    all: list[StopCondition] | None = Field(
        None, min_length=1, description="Stop when all of these hold (one rule per item)."
    )

class StopCondition(_StopRules):
    """One item of an `any:` or `all:` list: exactly one rule."""

    max_turns: int | None = Field(None, ge=1, le=MAX_TURNS)

    @model_validator(mode="after")
    def _one_rule(self) -> StopCondition:
        if len(self.model_fields_set) != 1:
            given = ", ".join(sorted(self.model_fields_set)) or "nothing"
            raise ValueError(
                f"each item of any:/all: holds exactly one rule (got {given}); "
                "split it into one item per rule"
            )
        return self


class TerminationConfig(_StopRules):
    """When a run stops. `max_turns` always applies; the other rules stop it earlier."""

    max_turns: int = Field(12, ge=1, le=MAX_TURNS, description="Turns taken by personas.")


class GuardConfig(Strict):
    """The reply guard: a reply that is empty, copied or in another persona's voice is asked for
    again (another seed, a stronger repetition penalty, a note of what was wrong), at most
    `retries` times; every attempt is stored, the best one is kept."""

    enabled: bool = Field(True, description="Check each persona reply before others see it.")
    retries: int = Field(2, ge=0, le=10, description="Extra attempts for one turn, at most.")
    copy_threshold: float = Field(
        0.5, gt=0, le=1,
        description="Share of a reply's word 4-grams already said (or given in the prompt) "
        "that makes it a copy.",
    )
    min_words: int = Field(5, ge=0, le=1000, description="Fewer words than this is empty.")


class ScenarioInput(Strict):
    """A message from the user, committed before the persona turn `at_turn`."""

    at_turn: int = Field(ge=1, le=MAX_TURNS, description="Before the persona turn with this number (1-based).")
    from_: Literal["User"] = Field("User", alias="from", description="Inputs come from User.")
    text: str = Field(min_length=1)
    pin: bool = Field(False, description="Keep it in memory as a fact that collapse never drops.")


class Scenario(Strict):
    """A deliberation: the goal, who takes part, who speaks when, memory and stop rules."""

    name: Name = Field(min_length=1, max_length=200)
    goal: str = Field(min_length=1)
    context: str = ""
    documents: list[str] = Field(
        default_factory=list, description="Markdown or text files, relative to the scenario file."
    )
    personas: list[str | Persona] = Field(
        min_length=1, description="Names of personas, or inline persona definitions."
    )
    model: str | None = Field(None, description="Model name (Ollama) or a .gguf path (embedded).")
    layout: Literal["named", "transcript", "cache_friendly", "classic"] = Field(
        "named",
        description="How turns are laid out in the prompt: named (default) and transcript end "
        "with the speaker's cue; cache_friendly and classic are kept for comparison and replay.",
    )
    policy: Policy = RoundRobinPolicy()
    memory: MemoryConfig = MemoryConfig()
    termination: TerminationConfig = TerminationConfig()
    options: GenerationOptions = Field(
        GenerationOptions(), description="Defaults for every persona; a persona's own win."
    )
    language: str | None = Field(None, description="Language personas should answer in, e.g. ru.")
    modes: dict[str, str] = Field(
        default_factory=dict,
        description="Phase modes of your own, or new wording for built-in ones: name -> "
        "instructions added on top of the persona.",
    )
    inputs: list[ScenarioInput] = Field(
        default_factory=list, description="Scripted messages from User at given turns."
    )
    vars: VarTable = Field(
        default_factory=dict,
        description="Variables: name -> default (null: each run must give it, --var NAME=VALUE). "
        "{name} in goal, context, inputs, modes and persona system/description is replaced; "
        "{{ }} are braces.",
    )
    guard: GuardConfig = Field(
        default_factory=GuardConfig,
        description="Re-ask for replies that are empty, copied or in another persona's voice.",
    )

    @field_validator("personas")
    @classmethod
    def _unique_roster(cls, value: list[str | Persona]) -> list[str | Persona]:
        # Names a reader cannot tell apart (Critic, CRITIC, Crit\u200bic) are one persona.
        names = [p if isinstance(p, str) else p.name for p in value]
        keys = [canonical_name(n) for n in names]
        dupes = sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"persona listed twice: {', '.join(map(quoted_name, dupes))}")
        reserved = [n for n in names if is_reserved(n)]
        if reserved:
            raise ValueError(
                f"{quoted_name(reserved[0])} cannot take part as a persona: {HUMAN} is the person taking "
                "part (scripted `inputs:` and --interactive lines); remove it from `personas:`"
            )
        return value

    @property
    def roster(self) -> list[str]:
        return [p if isinstance(p, str) else p.name for p in self.personas]


# Models that refer to each other (a phase may hold any policy; stop rules nest).
Phase.model_rebuild()
PhasesPolicy.model_rebuild()
StopCondition.model_rebuild()
TerminationConfig.model_rebuild()
Scenario.model_rebuild()
