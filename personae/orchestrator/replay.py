"""Re-executing a stored run without a model, and forking a run at a turn.

``replay_run`` drives the ordinary run loop with a ``ReplayBackend`` into a scratch database in a
temporary folder (the user's database only gains rows when forking), and reports whether every
prompt the current code builds hashes as the recorded one — and, since the replies are the
recorded ones, whether each turn parses to the same message. This is how a change to the code, or
to a persona (``scenario_file``), that alters what the model is asked is caught before it costs a
run.

``fork_run`` creates a new run linked to its parent (``parent_run_id``, ``fork_turn``) whose first
``N`` turns are the parent's, re-executed the same way into the user's database, after which the
given live backend takes over.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from personae.config.loader import LoadedScenario
from personae.errors import UserError
from personae.llm.base import Backend
from personae.llm.recorded import (
    Answered,
    Divergence,
    ReplayBackend,
    ReplayDiverged,
    ReplayExhausted,
    ThenLive,
    replay_backend_for,
)
from personae.orchestrator.inputs import AskUser, due_inputs
from personae.orchestrator.resume import reload_scenario, run_settings
from personae.orchestrator.run import Orchestrator, start_run
from personae.orchestrator.state import HUMAN, RunState, TurnDone
from personae.store.models import Message
from personae.store.repo import Store


@dataclass(frozen=True)
class ContentChange:
    """A turn whose reply parses differently now (same recorded reply, different message)."""

    turn: int
    persona: str
    recorded: str
    replayed: str


@dataclass
class ReplayReport:
    run_id: int
    status: str  # the original run's
    recorded_turns: int
    turns: int = 0  # turns the replay re-executed
    answered: list[Answered] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)
    content_changes: list[ContentChange] = field(default_factory=list)
    problem: str | None = None  # the run as a whole went differently (stopped early or late)

    @property
    def identical(self) -> bool:
        return not (self.divergences or self.content_changes or self.problem)

    @property
    def first_difference(self) -> int | None:
        """The first turn that differs, for the user and for scripts."""
        turns = [d.turn for d in self.divergences if d.turn is not None]
        turns += [c.turn for c in self.content_changes]
        return min(turns) if turns else None


def replay_run(
    store: Store, run_id: int, *, scenario_file: Path | None = None, keep_going: bool = False
) -> ReplayReport:
    """Re-execute run ``run_id`` against its recorded replies; nothing is written to ``store``."""
    run = store.run(run_id)
    recorded = {m.turn: m for m in store.messages(run_id)}
    loaded = reload_scenario(store, run, scenario_file=scenario_file)
    replay = replay_backend_for(store.calls(run_id), strict=not keep_going)
    report = ReplayReport(run_id, run.status, recorded_turns=len(recorded))
    with tempfile.TemporaryDirectory(prefix="personae-replay-") as folder:
        scratch = Store.open(Path(folder) / "replay.db")
        try:
            settings = run_settings(run, loaded, replay)
            scratch_id = start_run(scratch, loaded, replay, settings)
            orchestrator = Orchestrator(
                loaded, replay, scratch, settings, ask_user=typed_inputs(loaded, recorded.values())
            )
            try:
                for event in orchestrator.run(scratch_id):
                    if isinstance(event, TurnDone):
                        report.turns += 1
                        _compare(report, event, recorded)
                if not replay.exhausted:
                    nxt = replay.remaining[0]
                    report.problem = (
                        f"the replay stopped after turn {report.turns}, but the original went on "
                        f"(its next call was the {nxt.purpose} call of turn {nxt.turn}): the stop "
                        "rules or the policy now decide differently"
                    )
            except ReplayDiverged:
                pass  # recorded in replay.divergences
            except ReplayExhausted:
                if run.status == "completed":
                    report.problem = (
                        f"the replay asked for a model call after turn {report.turns}, where the "
                        f"original stopped ({run.stop_reason}): the stop rules or the policy now "
                        "decide differently"
                    )
                # Otherwise the original was cut short (interrupted, failed, killed): everything
                # it recorded has been checked.
        finally:
            scratch.close()
    report.answered = list(replay.answered)
    report.divergences = list(replay.divergences)
    return report


def _compare(report: ReplayReport, event: TurnDone, recorded: dict) -> None:
    utterance = event.utterance
    original = recorded.get(utterance.turn)
    if original is None:
        return
    if (original.content, original.persona) != (utterance.content, utterance.persona):
        report.content_changes.append(
            ContentChange(utterance.turn, utterance.persona, original.content, utterance.content)
        )


@dataclass
class Fork:
    run_id: int
    parent_run_id: int
    fork_turn: int
    orchestrator: Orchestrator
    replay: ReplayBackend


def fork_run(
    store: Store, parent_id: int, fork_turn: int, live: Backend, *, max_turns: int | None = None
) -> Fork:
    """Create the fork's run row; driving ``Fork.orchestrator.run(Fork.run_id)`` copies messages
    1..``fork_turn`` (User's included) from the parent (no model call) and continues live."""
    parent = store.run(parent_id)
    if not 0 <= fork_turn <= parent.turns:
        raise UserError(
            f"--fork-at {fork_turn} is outside run {parent_id}, which has messages 1 to "
            f"{parent.turns}. Choose a message in that range (0 starts afresh with the same "
            "scenario)."
        )
    messages = {m.turn: m for m in store.messages(parent_id)}
    copied_turns = sum(1 for t, m in messages.items() if t <= fork_turn and m.persona != HUMAN)
    calls = store.calls(parent_id)
    last_id: int | None = None
    if fork_turn:
        message = messages[fork_turn]
        linked = [c.id for c in calls if c.message_id == message.id]
        within = [c.id for c in calls if c.turn is not None and c.turn <= fork_turn]
        last_id = max(linked or within or [0]) or None
    loaded = reload_scenario(store, parent)
    replay = replay_backend_for(calls, strict=False, upto_id=last_id or 0)
    backend = ThenLive(replay, live, last_id)
    settings = run_settings(parent, loaded, live, max_turns=max_turns)
    if settings.max_turns < copied_turns:
        raise UserError(
            f"--max-turns {settings.max_turns} is below the {copied_turns} turns that messages "
            f"1 to {fork_turn} hold; a fork keeps the turns it copies. Raise --max-turns."
        )
    run_id = start_run(store, loaded, live, settings, parent_run_id=parent_id, fork_turn=fork_turn)
    typed = typed_inputs(loaded, [m for t, m in messages.items() if t <= fork_turn])
    orchestrator = Orchestrator(loaded, backend, store, settings, ask_user=typed)
    return Fork(run_id, parent_id, fork_turn, orchestrator, replay)


def typed_inputs(loaded: LoadedScenario, messages: Iterable[Message]) -> AskUser:
    """Give back, at the same points, what a person typed into the original run (--interactive);
    scripted ``inputs`` need no help, the run loop re-derives them from the scenario."""
    queue = deque(
        sorted(
            (m for m in messages if m.persona == HUMAN and (m.meta or {}).get("source") == "interactive"),
            key=lambda m: m.turn,
        )
    )

    def ask(state: RunState) -> str | None:
        scripted = sum(1 for _ in due_inputs(loaded.scenario.inputs, state.history))
        if queue and queue[0].turn <= state.turn + 1 + scripted:
            return queue.popleft().content
        return None

    return ask
