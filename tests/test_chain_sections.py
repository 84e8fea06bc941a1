"""A chain of agents by sections (``policy: {type: chain, unit: section}``), on the scripted backend.

Each worker turn reads one section's chunks packed together, as many as the window leaves room
for; a section too big for one turn takes consecutive turns. What these tests hold the policy to:
sections visited in document order, every chunk read exactly once and cited (``derived_from``),
every prompt within ``num_ctx − num_predict``, packing that stops only where the next chunk would
not fit, and runs that resume and replay as they ran.
"""

from __future__ import annotations

import json
import sqlite3
from itertools import islice
from pathlib import Path

import pytest

from personae.config import builtin_dir, load_scenario_text
from personae.errors import ConfigError
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend, tokens
from personae.orchestrator.replay import replay_run
from personae.orchestrator.state import TurnDone
from personae.store.models import Message
from personae.store.repo import Store
from tests.builders import make_scenario
from tests.durable_support import run_events, start

NUM_PREDICT = 96
KEEPERS_LOG = builtin_dir() / "scenarios" / "docs" / "keepers-log.md"


def section_scenario(document: str, num_ctx: int, unit: str = "section", guard: bool = False) -> str:
    personas = (
        "personas:\n"
        f"  - {{name: Worker, description: reads, system: Read., options: {{num_predict: {NUM_PREDICT}}}}}\n"
        f"  - {{name: Manager, description: answers, system: Answer., options: {{num_predict: {NUM_PREDICT}}}}}\n"
    )
    return make_scenario(
        f"policy: {{type: chain, worker: Worker, manager: Manager, unit: {unit}}}\n",
        name="sections", goal="Which part of the lamp broke?", personas=personas, guard=guard,
        extra=f"documents: [{document}]\nmemory: {{num_ctx: {num_ctx}, collapse: null}}\n"
        "termination: {max_turns: 200}\n",
    )


def first_words(request: ChatRequest) -> str:
    """The worker's note: the first word of every paragraph it was shown (chunks start with a
    marker in the synthetic document); the manager's answer: the note it was given."""
    cue = request.messages[-1].content
    key = "notes" if '"notes"' in json.dumps(request.schema) else "answer"
    body = cue.split("):\n", 1)[-1].split(":\n", 1)[-1]
    return json.dumps({key: " ".join(p.split()[0] for p in body.split("\n\n")[:-1] if p.split())[:300]})


def huge_and_tiny(folder: Path) -> Path:
    """One section of 30 chunks among four tiny ones (and text before the first heading)."""
    parts = ["Preface text before any heading.", "", "# Tiny one", "", "tiny1 A short section.", ""]
    parts += ["# Huge", ""]
    for i in range(30):
        parts += [f"huge{i} " + " ".join(f"h{i}w{j}" for j in range(130)), ""]
    for name in ("two", "three", "four"):
        parts += [f"# Tiny {name}", "", f"tiny{name} Only a line.", ""]
    path = folder / "mixed.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def workers(store: Store, run_id: int) -> list[Message]:
    return [m for m in store.messages(run_id) if (m.meta or {}).get("chain") == "worker"]


def assert_the_walk(db: Path, store: Store, run_id: int, backend: ScriptedBackend, num_ctx: int) -> list[Message]:
    """The promises of the section walk, on any document; returns the worker messages."""
    chunks = store.memory_nodes(run_id, ["chunk"])
    order = [c.id for c in chunks]
    units = workers(store, run_id)
    read = [node for m in units for node in m.meta["chunks"]]
    assert read == order  # every chunk exactly once, in document order
    with sqlite3.connect(db) as connection:
        parent = dict(connection.execute(
            "select e.src, e.dst from memory_edges e join memory_nodes n on n.id = e.dst "
            "where e.kind = 'part_of' and e.run_id = ? and n.kind in ('section', 'document')", (run_id,)
        ).fetchall())
        cited = connection.execute(
            "select n.message_id, e.dst from memory_edges e join memory_nodes n on n.id = e.src "
            "where e.kind = 'derived_from' and n.kind = 'message' and e.run_id = ?", (run_id,)
        ).fetchall()
        sizes = [r[0] for r in connection.execute(
            "select prompt_tokens from llm_calls where run_id = ? order by id", (run_id,))]
    # A unit reads one section only, sections come in document order, each once.
    for m in units:
        assert {parent[c] for c in m.meta["chunks"]} == {m.meta["section_node"]}
    sections = [m.meta["section"] for m in units]
    assert sections == sorted(sections) and sorted(set(sections)) == list(range(1, units[0].meta["of"] + 1))
    seen_nodes = list(dict.fromkeys(m.meta["section_node"] for m in units))
    assert seen_nodes == list(dict.fromkeys(parent[c] for c in order))
    # Every note cites exactly the chunks it read.
    assert sorted(cited) == sorted((m.id, c) for m in units for c in m.meta["chunks"])
    # No prompt passes the window less the reply; the last call is the manager's.
    assert len(sizes) == len(units) + 1 and max(sizes) <= num_ctx - NUM_PREDICT
    assert store.messages(run_id)[-1].persona == "Manager" and store.run(run_id).stop_reason == "answered"
    # Each chunk's text is in its own unit's prompt and in no other.
    prompts = ["\n".join(m.content for m in r.messages) for r in backend.requests[:-1]]
    by_id = {c.id: c.text for c in chunks}
    for i, m in enumerate(units):
        for c in order:
            assert (by_id[c] in prompts[i]) == (c in m.meta["chunks"])
    # Packing stops only where the section ends or the next chunk would not fit: adding it costs
    # its words, less at most 8 of labels that a whole section does not carry ("part 1" …).
    position = {c: i for i, c in enumerate(order)}
    for m, size in zip(units, sizes):
        after = position[m.meta["chunks"][-1]] + 1
        if after < len(order) and parent[order[after]] == m.meta["section_node"]:
            assert size + len(tokens(by_id[order[after]])) - 8 > num_ctx - NUM_PREDICT, m.meta
    return units


@pytest.mark.parametrize("num_ctx", [1024, 520])
def test_the_keepers_log_by_sections(tmp_path: Path, num_ctx: int) -> None:
    (tmp_path / "log.md").write_text(KEEPERS_LOG.read_text(encoding="utf-8"), encoding="utf-8")
    backend = ScriptedBackend(default=first_words, num_ctx=num_ctx)
    db = tmp_path / "t.db"
    store, run_id, events = run_events(db, section_scenario("log.md", num_ctx), backend)
    units = assert_the_walk(db, store, run_id, backend, num_ctx)
    chunks = store.memory_nodes(run_id, ["chunk"])
    assert sum(isinstance(e, TurnDone) for e in events) == len(units) + 1
    # 17 sections hold chunks: the title's introduction and the 16 seasons (years hold none).
    if num_ctx == 1024:  # every section fits in one turn: 17 turns for 34 chunks
        assert len(chunks) == 34 and len(units) == 17 and all(m.meta["part"] == 1 for m in units)
    else:  # a tight window splits some seasons across two turns, and never mixes two
        assert 17 < len(units) < len(chunks)
        assert any(m.meta["part"] == 2 for m in units)
    # The manager reads the last note only.
    answer = "\n".join(m.content for m in backend.requests[-1].messages)
    assert units[-1].content in answer and f"all {units[0].meta['of']} sections" in answer


def test_one_huge_section_among_tiny_ones(tmp_path: Path) -> None:
    huge_and_tiny(tmp_path)
    num_ctx = 700
    backend = ScriptedBackend(default=first_words, num_ctx=num_ctx)
    db = tmp_path / "t.db"
    store, run_id, _ = run_events(db, section_scenario("mixed.md", num_ctx), backend)
    units = assert_the_walk(db, store, run_id, backend, num_ctx)
    # The preface (part of the document itself), four tiny sections one turn each, the huge one
    # in consecutive parts of several chunks.
    huge = [m for m in units if m.meta["section"] == 3]
    assert [m.meta["section"] for m in units] == [1, 2] + [3] * len(huge) + [4, 5, 6]
    assert [m.meta["part"] for m in huge] == list(range(1, len(huge) + 1))
    assert 3 <= len(huge) < 30 and all(len(m.meta["chunks"]) >= 2 for m in huge)
    assert all(len(m.meta["chunks"]) == 1 for m in units if m.meta["section"] != 3)
    cues = [r.messages[-1].content for r in backend.requests]
    assert "part 1, continued in the next turn:" in cues[2] and f"part {len(huge)}, its end:" in cues[1 + len(huge)]
    # Each note builds on the one before.
    assert [m.meta["builds_on"] for m in units] == [None] + [m.id for m in units[:-1]]


def test_a_guard_that_may_retry_keeps_room_for_its_note(tmp_path: Path) -> None:
    huge_and_tiny(tmp_path)
    num_ctx = 700
    loose, strict = (ScriptedBackend(default=first_words, num_ctx=num_ctx) for _ in range(2))
    store, run_id, _ = run_events(tmp_path / "a.db", section_scenario("mixed.md", num_ctx), loose)
    guarded = section_scenario("mixed.md", num_ctx, guard=True)  # the default guard: it may retry
    store2, run2, _ = run_events(tmp_path / "b.db", guarded, strict)
    guarded_sizes = [c.prompt_tokens for c in store2.calls(run2)]
    assert max(guarded_sizes) <= num_ctx - NUM_PREDICT - 48  # TEMPLATE_SLACK kept free
    assert len(workers(store2, run2)) >= len(workers(store, run_id))


def test_a_section_chain_resumed_midway_packs_on_from_the_last_chunk_read(tmp_path: Path) -> None:
    huge_and_tiny(tmp_path)
    text = section_scenario("mixed.md", 700)
    whole = ScriptedBackend(default=first_words, num_ctx=700)
    _, _, _ = run_events(tmp_path / "whole.db", text, whole)
    db = tmp_path / "t.db"
    store, run_id, first = start(db, text, ScriptedBackend(default=first_words, num_ctx=700))
    list(islice((e for e in first.run(run_id) if isinstance(e, TurnDone)), 4))  # then "killed"
    again = ScriptedBackend(default=first_words, num_ctx=700)
    _, _, second = start(db, text, again)
    list(second.run(run_id))
    resumed = [m.meta.get("chunks") for m in store.messages(run_id)]
    straight = [m.meta.get("chunks") for m in Store.open(tmp_path / "whole.db").messages(1)]
    assert resumed == straight and len(resumed) > 5
    assert [r.messages for r in again.requests] == [r.messages for r in whole.requests[4:]]


def test_a_section_run_replays_identically(tmp_path: Path) -> None:
    """The replay packs again, with the recorded backend's counter: the same chunks a turn.
    (The chunk walk's replay is tests/test_recipes.py's.)"""
    huge_and_tiny(tmp_path)
    backend = ScriptedBackend(default=first_words, num_ctx=700)
    store, run_id, _ = run_events(tmp_path / "t.db", section_scenario("mixed.md", 700), backend)
    report = replay_run(store, run_id)
    assert report.identical and report.turns == len(store.messages(run_id)) == 16, report


def test_the_default_unit_is_the_chunk_walk_stored_runs_were_made_with(tmp_path: Path) -> None:
    """No `unit:` is `unit: chunk`: the same prompts, byte for byte, as before the option."""
    huge_and_tiny(tmp_path)
    requests = []
    for unit in ("chunk", None):
        text = section_scenario("mixed.md", 700, unit or "chunk")
        if unit is None:
            text = text.replace(", unit: chunk", "")
        backend = ScriptedBackend(default=first_words, num_ctx=700)
        store, run_id, _ = run_events(tmp_path / f"{unit}.db", text, backend)
        requests.append([r.messages for r in backend.requests])
    chunks = store.memory_nodes(run_id, ["chunk"])
    assert requests[0] == requests[1] and len(requests[0]) == len(chunks) + 1
    assert requests[1][0][-1].content.startswith(
        "Now it is Worker's turn.\nRead.\nGoal: Which part of the lamp broke?\n"
        "Reply as Worker, in your own words; say something new.\nCurrent phase: chunk 1/"
        f"{len(chunks)}.\nYou read part 1 of {len(chunks)} of the documents. Notes so far:\n"
        "(none yet: this is the first chunk)\n\nPart 1 (mixed.md):\nPreface text before any heading."
    )


def test_an_unknown_unit_is_one_paragraph_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "mixed.md").write_text("# One\n\nA line.\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario_text(section_scenario("mixed.md", 700, unit="sectoin"), base_dir=tmp_path)
    message = str(caught.value)
    assert "policy.unit" in message and "did you mean 'section'?" in message and "line 7" in message
    assert "chunk, section" in message and "\n" not in message.strip()
