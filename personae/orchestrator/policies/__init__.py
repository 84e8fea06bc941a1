"""Who speaks next. A policy is one method over the committed transcript, so it needs no state of
its own and a resumed run continues exactly where it stopped.

``next_speaker(history, since)`` sees the whole transcript; a policy nested in a phase owns only
``history[since:]`` (its scope) but may read what came before — a router's rules look at the last
message whoever wrote it. Policies never call a model: where a router leaves the choice to the
model it returns the candidates (``TurnPlan.choices``) and the run loop asks the selector.

One module a policy (``round_robin``, ``phases``, ``router``, ``reflect``, and the recipes ``chain``,
``self_ask``, ``task_loop``); ``make_policy`` turns a scenario's ``policy:`` into one. The recipes
that read documents get the run's passages (``passages.py``) from the run loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from personae.config.models import (
    ChainPolicy,
    PhasesPolicy,
    ReflectPolicy,
    RoundRobinPolicy,
    RouterPolicy,
    SelfAskPolicy,
    TaskLoopPolicy,
)
from personae.config.models import (
    Policy as PolicyConfig,
)
from personae.orchestrator.policies.chain import Chain
from personae.orchestrator.policies.passages import Passage
from personae.orchestrator.policies.phases import Phases, slots_for
from personae.orchestrator.policies.protocol import Policy
from personae.orchestrator.policies.reflect import Reflect
from personae.orchestrator.policies.round_robin import RoundRobin
from personae.orchestrator.policies.router import Router
from personae.orchestrator.policies.self_ask import SelfAsk
from personae.orchestrator.policies.task_loop import TaskLoop
from personae.orchestrator.state import TurnPlan

__all__ = ["Policy", "make_policy", "reads_documents"]


def make_policy(
    config: PolicyConfig,
    roster: Sequence[str],
    modes: Mapping[str, str] | None = None,
    passages: Sequence[Passage] = (),
    fits: Callable[[TurnPlan], bool] | None = None,
) -> Policy:
    """``modes``: mode name -> instructions (``config.modes.mode_table``) for phases with a mode;
    ``passages``: the run's document chunks, for the policies that read them; ``fits``: does an
    isolated turn's prompt fit the window (``window.TurnFit``), for a chain that packs sections."""
    if isinstance(config, PhasesPolicy):
        stages: list[Policy] = [
            slots_for(phase) if phase.speakers is not None
            else make_policy(phase.policy, roster, modes, passages, fits)  # type: ignore[arg-type]
            for phase in config.phases
        ]
        return Phases(config, stages, modes)
    if isinstance(config, ChainPolicy):
        return Chain(config, passages, fits) if fits is not None else Chain(config, passages)
    if isinstance(config, SelfAskPolicy):
        return SelfAsk(config, passages)
    if isinstance(config, TaskLoopPolicy):
        return TaskLoop(config)
    if isinstance(config, RouterPolicy):
        return Router(config, roster)
    if isinstance(config, ReflectPolicy):
        return Reflect(config)
    assert isinstance(config, RoundRobinPolicy)
    return RoundRobin(config.speakers or roster)


def reads_documents(config: PolicyConfig) -> bool:
    """Does the policy (or one nested in its phases) read the run's documents?"""
    if isinstance(config, PhasesPolicy):
        return any(p.policy is not None and reads_documents(p.policy) for p in config.phases)
    return isinstance(config, ChainPolicy | SelfAskPolicy)
