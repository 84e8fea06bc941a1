"""Helpers shared by the tests that start and drive runs (orchestrator, policies, collapse, and
the durable-runs tests: resume, replay, faults, concurrency, kills)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from personae.config import load_scenario, load_scenario_text
from personae.config.loader import LoadedScenario
from personae.llm.base import Backend
from personae.orchestrator.inputs import AskUser
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.orchestrator.state import Event
from personae.store.repo import Store
from tests.builders import make_scenario, roster

DESCRIPTIONS = {"Planner": "plans the work", "Analyst": "brings numbers", "Critic": "finds flaws"}


def scenario_text(extra: str = "", *, num_predict: int = 8, name: str = "durable") -> str:
    """A small scenario with inline personas, so the tests do not depend on persona files."""
    personas = roster(
        ["Planner", "Analyst", "Critic"], descriptions=DESCRIPTIONS, options=f"{{num_predict: {num_predict}}}"
    )
    return make_scenario(
        name=name, goal="Decide whether to add a cache.", context="p99 is 900 ms.", personas=personas,
        extra="options: {temperature: 0}\n" + extra,
    )


def write_scenario(folder: Path, text: str, name: str = "scenario.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def start(
    db: Path, scenario: str | Path, backend: Backend, ask_user: AskUser | None = None, **overrides: Any
) -> tuple[Store, int, Orchestrator]:
    """A run row and its orchestrator, not yet driven. A scenario given as text finds its
    documents and persona files beside ``db``."""
    loaded: LoadedScenario = (
        load_scenario(scenario) if isinstance(scenario, Path) else load_scenario_text(scenario, base_dir=db.parent)
    )
    store = Store.open(db)
    settings = settings_for(loaded, backend, **overrides)
    run_id = start_run(store, loaded, backend, settings)
    return store, run_id, Orchestrator(loaded, backend, store, settings, ask_user=ask_user)


def run_events(
    db: Path, scenario: str | Path, backend: Backend, **overrides: Any
) -> tuple[Store, int, list[Event]]:
    """A run driven to its end, with every event it yielded."""
    store, run_id, orchestrator = start(db, scenario, backend, **overrides)
    return store, run_id, list(orchestrator.run(run_id))


def run_to_end(db: Path, scenario: str | Path, backend: Backend, **overrides: Any) -> tuple[Store, int]:
    store, run_id, _events = run_events(db, scenario, backend, **overrides)
    return store, run_id


def transcript(db: Path, run_id: int) -> list[tuple[Any, ...]]:
    """(turn, persona, phase, content, raw) of every message, read with plain SQL."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "select turn, persona, phase, content, raw from messages where run_id = ? order by turn",
            (run_id,),
        ).fetchall()


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        names = [
            r[0]
            for r in connection.execute(
                "select name from sqlite_master where type = 'table' and name not like '%fts%' "
                "and name not like 'sqlite_%'"
            )
        ]
        return {n: connection.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def speaker_of(request: Any) -> str:
    """Whose turn a scripted request asks for, in any layout: the speaker-last cue ("Now it is
    Critic's turn.") or the cache-friendly one ("It is your turn. You are Critic.")."""
    last = request.messages[-1].content
    if "Now it is " in last:
        return last.rsplit("Now it is ", 1)[1].split("'s turn.", 1)[0]
    return last.split("You are ", 1)[1].split(".", 1)[0]
