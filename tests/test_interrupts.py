"""Ctrl-C must end a run as interrupted even when the KeyboardInterrupt it raised was swallowed,
which happens when the signal lands while llama.cpp is inside its Python log callback (ctypes
prints and drops exceptions raised in callbacks)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import typer

from personae.cli.live import drive as _drive
from personae.config import load_scenario_text
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.repo import Store

SCENARIO = """name: t
goal: Decide on a cache.
guard: {enabled: false}
personas:
  - {name: Planner, system: Plan.}
  - {name: Critic, system: Attack.}
memory: {collapse: null}
termination: {max_turns: 8}
"""


def test_a_swallowed_ctrl_c_still_interrupts_the_run(tmp_path: Path) -> None:
    calls = 0

    def reply(_request: ChatRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 3:
            try:  # what a ctypes callback does with the exception
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass
        return f"Reply {calls}."

    loaded = load_scenario_text(SCENARIO, base_dir=tmp_path)
    backend = ScriptedBackend(default=reply)
    store = Store.open(tmp_path / "t.db")
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(typer.Exit) as exit_info:
            _drive(Orchestrator(loaded, backend, store, settings), store, run_id, quiet=True, db=None)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert exit_info.value.exit_code == 130
    row = store.run(run_id)
    assert (row.status, row.stop_reason) == ("interrupted", "interrupted")
    assert row.turns == 3 and calls == 3  # the turn in flight was kept, no further turn began
