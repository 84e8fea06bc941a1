"""Does the scenario fit the window it will be served in? Checked before the first turn.

Every prompt repeats a fixed part (the layout's header — goal, context, roster — and the speaker's
persona and instructions), and every call reserves room for the longest reply. When those two
alone exceed ``num_ctx``, an HTTP server truncates the prompt without a word and the embedded
backend fails mid-run; when they leave next to nothing, every prompt drops the whole transcript
(or collapses before every turn). Both are refused up front, naming the numbers and the fix.

The fixed part is measured by building the real prompt — ``build_prompt`` with an empty history,
the layout's own code — so the check follows any change of layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from personae.config.loader import LoadedScenario
from personae.errors import UserError
from personae.llm.base import Backend
from personae.orchestrator.prompts import build_prompt
from personae.orchestrator.state import TurnPlan
from personae.orchestrator.turns import prepare

MIN_TRANSCRIPT_TOKENS = 64  # below this, no reply of another persona fits next to the header


def transcript_room_floor(num_ctx: int) -> int:
    """The least room a prompt must leave for the transcript: a sixteenth of the window, at
    least ``MIN_TRANSCRIPT_TOKENS``."""
    return max(MIN_TRANSCRIPT_TOKENS, num_ctx // 16)


def check_window(
    loaded: LoadedScenario,
    backend: Backend,
    *,
    layout: str,
    num_ctx: int,
    reply_tokens: Mapping[str, int],
) -> None:
    """Raise ``UserError`` (exit 2) when some persona's prompt cannot fit ``num_ctx``:
    ``reply_tokens`` is each roster persona's ``num_predict``."""
    scenario = loaded.scenario
    reserve = max(reply_tokens.values())
    widest = max(reply_tokens, key=lambda name: reply_tokens[name])
    fixed, heaviest = 0, scenario.roster[0]
    for name in scenario.roster:
        prompt = build_prompt(
            scenario=scenario, personas=loaded.personas, history=(), speaker=TurnPlan(name),
            layout=layout, backend=backend, max_prompt_tokens=num_ctx,
        )
        if prompt.full_tokens > fixed:
            fixed, heaviest = prompt.full_tokens, name
    where = f"scenario {loaded.path}" if loaded.path else f"scenario {scenario.name!r}"
    if fixed + reserve > num_ctx:
        raise UserError(
            f"The prompts of {where} do not fit the model's window: the part every prompt "
            f"repeats (goal, context, roster, and {heaviest!r}'s persona and instructions) is "
            f"{fixed} tokens, and replies may take up to {reserve} more (num_predict of "
            f"{widest!r}): {fixed + reserve} > memory.num_ctx {num_ctx}. Shorten the goal and "
            "context (long material belongs in `documents:`, which are retrieved in pieces), "
            "lower num_predict, or raise memory.num_ctx if the model supports it."
        )
    room = num_ctx - reserve - fixed
    floor = transcript_room_floor(num_ctx)
    if room < floor:
        raise UserError(
            f"Replies in {where} may take up to {reserve} tokens (num_predict of {widest!r}) of "
            f"a {num_ctx}-token window (memory.num_ctx); with the {fixed} tokens every prompt "
            f"repeats, only {room} are left for the deliberation itself, so every prompt would "
            f"drop the transcript (or collapse before every turn). Lower num_predict to at most "
            f"{num_ctx - fixed - floor}, or raise memory.num_ctx."
        )


def reply_budgets(roster: list[str], options: Callable[[str], dict[str, Any]]) -> dict[str, int]:
    """Each persona's ``num_predict`` as its options give it."""
    return {name: int(options(name)["num_predict"]) for name in roster}


@dataclass(frozen=True)
class TurnFit:
    """Does an isolated turn's prompt, as it will be sent, leave room for its persona's reply?

    A chain by sections asks this of each candidate packing (``policies/chain.py``): the prompt
    is built by the layout's own code with the turn's schema hint (``prepare``) and counted by
    the backend's counter — the model's tokenizer and chat template on the embedded engine, the
    recorded run's counter on replay — so what fits here is what is sent, and a replay packs
    the same chunks. ``slack`` is kept free besides the reply (a retry note, when the reply
    guard may ask again)."""

    loaded: LoadedScenario
    backend: Backend
    layout: str
    num_ctx: int
    reply_tokens: Mapping[str, int]  # each roster persona's num_predict
    slack: int = 0

    def __call__(self, plan: TurnPlan) -> bool:
        if not plan.isolated:  # a transcript turn's prompt depends on the run so far
            raise ValueError("TurnFit measures isolated turns only")
        prompt = build_prompt(
            scenario=self.loaded.scenario, personas=self.loaded.personas, history=(),
            speaker=prepare(plan, self.loaded.personas[plan.persona]), layout=self.layout,
            backend=self.backend, max_prompt_tokens=self.num_ctx,
        )
        return prompt.full_tokens + self.reply_tokens[plan.persona] + self.slack <= self.num_ctx
