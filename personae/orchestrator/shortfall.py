"""How many turns a scenario's phases take, so a run that ``max_turns`` would cut short says so
before it starts instead of ending without its conclusion."""

from __future__ import annotations

from dataclasses import dataclass

from personae.config.models import Phase, PhasesPolicy, Policy


@dataclass(frozen=True)
class Shortfall:
    max_turns: int
    needed: int  # turns the phases take to the end
    phase: str  # the first phase that does not finish
    starts: bool  # whether that phase gets any turn at all

    def message(self) -> str:
        where = (
            f"stops it in phase '{self.phase}'" if self.starts else f"stops it before phase '{self.phase}'"
        )
        return (
            f"max_turns {self.max_turns} {where}: its phases take {self.needed} turns. "
            f"Raise --max-turns (or termination.max_turns) to {self.needed} to reach the end."
        )


def phase_turns(phase: Phase) -> int | None:
    """The turns a phase takes: speakers × rounds, or its `turns:` cap; None when only its
    policy knows (a router or reflect loop without `turns:`)."""
    if phase.speakers is not None:
        return len(phase.speakers) * phase.rounds
    return phase.turns


def shortfall(policy: Policy, max_turns: int) -> Shortfall | None:
    """The phase ``max_turns`` would cut, when that can be known before the run."""
    if not isinstance(policy, PhasesPolicy) or policy.repeat:
        return None
    lengths = [phase_turns(p) for p in policy.phases]
    if any(n is None for n in lengths):
        return None
    needed = sum(n for n in lengths if n is not None)
    if needed <= max_turns:
        return None
    done = 0
    for phase, n in zip(policy.phases, lengths):
        done += n or 0
        if done > max_turns:
            return Shortfall(max_turns, needed, phase.name, starts=done - (n or 0) < max_turns)
    return None
