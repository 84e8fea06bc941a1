"""Long runs stay fast (issue 21, item 5): with collapse on, the work of one turn must not grow
with the transcript or the memory graph.

Time is too noisy on a shared machine to assert on, so the work is counted instead: the Python
function calls the run makes in a stretch of turns (``sys.setprofile``; a generator resumed per
stored turn counts each time) and the memory rows it reads back from the database. A stretch late
in the run may not cost more than an early one. The real loop runs against the scripted backend,
on a real SQLite file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from personae.config import load_scenario_text
from personae.llm.scripted import ScriptedBackend
from personae.memory.view import MemoryView
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.orchestrator.state import Collapsed, TurnDone
from personae.store import reads
from personae.store.repo import Store
from tests.builders import make_scenario

REPLY = (
    "The cache pays off only if the hit rate stays above sixty percent: at 1,200 requests per "
    "second that removes about 700 reads from the primary. Measure first, then decide."
)


def long_scenario(turns: int) -> str:
    return make_scenario(
        extra=(
            "memory: {num_ctx: 1024, collapse: {keep_recent: 4}}\n"
            f"termination: {{max_turns: {turns}}}\n"
        ),
    )


class Counter:
    """Python calls and memory rows read, per turn, while the run loop runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.rows = 0
        original = reads.Reader._rows

        def counted(reader: Any, query: Any) -> list[Any]:
            found = original(reader, query)
            self.rows += len(found)
            return found

        monkeypatch.setattr(reads.Reader, "_rows", counted)

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1


def run_counted(path: Path, turns: int, counter: Counter) -> Iterator[tuple[object, int, int]]:
    loaded = load_scenario_text(long_scenario(turns), base_dir=path.parent)
    backend = ScriptedBackend(default=REPLY, num_ctx=1024)
    with Store.open(path) as store:
        settings = settings_for(loaded, backend)
        run_id = start_run(store, loaded, backend, settings)
        events = Orchestrator(loaded, backend, store, settings).run(run_id)
        while True:
            sys.setprofile(counter.profile)
            try:
                event = next(events)
            except StopIteration:
                return
            finally:
                sys.setprofile(None)
            yield event, counter.calls, counter.rows


@pytest.mark.slow
def test_per_turn_work_does_not_grow_with_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter(monkeypatch)
    turns = 360
    at: dict[int, tuple[int, int]] = {}
    collapses = []
    for event, calls, rows in run_counted(tmp_path / "long.db", turns, counter):
        if isinstance(event, TurnDone):
            at[event.utterance.turn] = (calls, rows)
        elif isinstance(event, Collapsed):
            collapses.append(event.turn)
    assert len(at) == turns and len(collapses) >= 10, collapses  # collapse on, and often

    def stretch(first: int, last: int) -> tuple[int, int]:
        (c0, r0), (c1, r1) = at[first], at[last]
        return c1 - c0, r1 - r0

    early_calls, early_rows = stretch(60, 160)
    late_calls, late_rows = stretch(260, 360)
    # Flat: 100 late turns cost what 100 early ones cost (10% for collapses falling unevenly).
    assert late_calls <= early_calls * 1.1, (early_calls, late_calls)
    assert late_rows <= early_rows * 1.1 + 20, (early_rows, late_rows)


@pytest.mark.slow
def test_the_collapser_view_is_the_database_view(tmp_path: Path) -> None:
    """The collapser keeps its memory view between collapses and reads only what each collapse
    wrote; that view must be the one a fresh read of the database gives — same nodes in the same
    order, same edges — or prompts (and replayed hashes) would change."""
    path = tmp_path / "view.db"
    loaded = load_scenario_text(long_scenario(120), base_dir=tmp_path)
    backend = ScriptedBackend(default=REPLY, num_ctx=1024)
    with Store.open(path) as store:
        settings = settings_for(loaded, backend)
        run_id = start_run(store, loaded, backend, settings)
        orchestrator = Orchestrator(loaded, backend, store, settings)
        collapsed = 0
        for event in orchestrator.run(run_id):
            if isinstance(event, Collapsed):
                collapsed += 1
                kept = orchestrator.collapser._views[run_id]  # type: ignore[union-attr]
                fresh = MemoryView.load(store, run_id)
                assert list(kept.nodes) == list(fresh.nodes)
                assert [(n.id, n.valid_to, n.text) for n in kept.nodes.values()] == [
                    (n.id, n.valid_to, n.text) for n in fresh.nodes.values()
                ]
                assert kept.summarized == fresh.summarized and kept.revised == fresh.revised
                assert kept.collapses() == fresh.collapses()
    assert collapsed >= 3
