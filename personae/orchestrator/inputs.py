"""Messages from User: the scenario's scripted ``inputs`` and a person typing (--interactive).

Both become ordinary messages with persona ``User``, committed before the persona turn they
precede, so every persona sees them and the database holds them like any turn. Policies count only
persona turns, so input never shifts who speaks next. Which scripted inputs were delivered is read
back from ``messages.meta["input"]``, so a resumed run neither repeats nor skips one. ``pin`` is
kept in meta for the memory graph (a pinned input becomes a fact that collapse keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import compress
from operator import attrgetter
from typing import Any

from personae.config.models import ScenarioInput
from personae.orchestrator.state import HUMAN, RunState, Utterance, persona_turns, utterance_of
from personae.store.repo import Store, TurnRecord

# Called between turns with the run so far; returns a line typed by the user, or None/"" to pass.
AskUser = Callable[[RunState], str | None]


def due_inputs(
    inputs: Sequence[ScenarioInput], history: Sequence[Utterance]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Scripted inputs whose persona turn comes next (or passed, in a resumed run), in order."""
    if not inputs:  # most scenarios: spare the walk over the whole transcript every turn
        return
    upcoming = persona_turns(history) + 1
    if all(item.at_turn > upcoming for item in inputs):
        return
    # User's messages picked out at C speed: a long run must not walk its transcript per turn.
    humans = compress(history, map(HUMAN.__eq__, map(attrgetter("persona"), history)))
    delivered = {(u.meta or {}).get("input") for u in humans}
    for index, item in enumerate(inputs):
        if item.at_turn <= upcoming and index not in delivered:
            meta = {"source": "inputs", "input": index, "at_turn": item.at_turn, "pin": item.pin}
            yield item.text.strip(), meta


def user_messages(
    inputs: Sequence[ScenarioInput], state: RunState, ask: AskUser | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from due_inputs(inputs, state.history)
    if ask is not None:
        line = (ask(state) or "").strip()
        if line:
            yield line, {"source": "interactive"}


def commit_user_message(
    store: Store, run_id: int, turn: int, text: str, meta: dict[str, Any]
) -> Utterance:
    record = TurnRecord(turn=turn, persona=HUMAN, phase=None, content=text, meta=meta)
    message_id = store.commit_turn(run_id, record, []).message_id
    return utterance_of(record, message_id)
