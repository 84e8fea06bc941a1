"""The recipes on the scripted backend: the structure each promises, turn by turn.

Chain of agents: chunks visited in order, each worker prompt holding its chunk and the previous
note only, every note citing its chunk, no prompt above the window. Self-ask: follow-ups, each
answered from a retrieved passage, until the final answer. Task loop: tasks created, worked and
closed, as task nodes in the graph. All three resume where they stopped.
"""

from __future__ import annotations

import json
import sqlite3
from itertools import islice
from pathlib import Path

from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.state import TurnDone
from tests.builders import make_scenario
from tests.durable_support import run_events, start

WORKERS = """personas:
  - {name: Worker, description: reads, system: Read.}
  - {name: Manager, description: answers, system: Answer.}
"""


def long_document(folder: Path, sections: int = 12) -> Path:
    """A Markdown file of ``sections`` sections, each with its own marker word and two chunks."""
    parts = ["# Log", ""]
    for i in range(1, sections + 1):
        parts += [f"## Part {i}", ""]
        for half in ("a", "b"):
            parts += [f"marker{i}{half} " + " ".join(f"w{i}x{j}" for j in range(100)), ""]
    path = folder / "log.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def chain_scenario(num_ctx: int) -> str:
    return make_scenario(
        "policy: {type: chain, worker: Worker, manager: Manager}\n",
        name="chain", goal="What does part 3 say?", personas=WORKERS,
        extra=f"documents: [log.md]\nmemory: {{num_ctx: {num_ctx}, collapse: null}}\n"
        "termination: {max_turns: 100}\n",
    )


def noted(request: ChatRequest) -> str:
    """A worker writes the marker of the chunk it was shown as its note."""
    text = request.messages[-1].content
    part = text.split("):\n", 1)[1] if "):\n" in text else text
    key = "notes" if "notes" in json.dumps(request.schema) else "answer"
    return json.dumps({key: part.split()[0] if part.split() else "-"})


def test_chain_walks_every_chunk_in_order_within_the_window(tmp_path: Path) -> None:
    num_ctx = 400
    document = long_document(tmp_path)
    backend = ScriptedBackend(default=noted, num_ctx=num_ctx)
    assert backend.count_text_tokens(document.read_text()) >= 5 * num_ctx
    store, run_id, events = run_events(tmp_path / "t.db", chain_scenario(num_ctx), backend)
    chunks = store.memory_nodes(run_id, ["chunk"])
    messages = store.messages(run_id)
    workers = [m for m in messages if m.meta["chain"] == "worker"]
    assert len(chunks) == 24 and len(workers) == len(chunks)
    assert [m.meta["node"] for m in workers] == [c.id for c in chunks]  # document order
    assert messages[-1].persona == "Manager" and messages[-1].meta["chain"] == "manager"
    assert store.run(run_id).stop_reason == "answered"
    # Each worker saw its own chunk and the previous note, and no other chunk.
    for i, request in enumerate(r for r in backend.requests if "notes" in json.dumps(r.schema)):
        prompt = "\n".join(m.content for m in request.messages)
        assert chunks[i].text.split()[0] in prompt
        others = [c.text.split()[0] for j, c in enumerate(chunks) if j != i]
        assert not any(f"\n{o} " in prompt for o in others)  # a chunk's text starts with its marker
        if i:
            assert f"Notes so far:\n{workers[i - 1].content}" in prompt
    # The manager answers from the last note alone.
    last_prompt = "\n".join(m.content for m in backend.requests[-1].messages)
    assert workers[-1].content in last_prompt and workers[-2].content not in last_prompt
    # Every note cites its chunk in the graph; no prompt passed the window.
    with sqlite3.connect(tmp_path / "t.db") as db:
        cited = db.execute(
            "select n.message_id, e.dst from memory_edges e join memory_nodes n on n.id = e.src "
            "where e.kind = 'derived_from' and n.kind = 'message' and e.run_id = ?", (run_id,)
        ).fetchall()
        peak = db.execute("select max(prompt_tokens) from llm_calls where run_id = ?", (run_id,)).fetchone()[0]
    assert sorted(cited) == sorted((m.id, m.meta["node"]) for m in workers)
    assert 0 < peak <= num_ctx
    assert sum(isinstance(e, TurnDone) for e in events) == len(chunks) + 1


def test_a_chain_resumed_midway_continues_at_the_next_chunk(tmp_path: Path) -> None:
    long_document(tmp_path, sections=3)
    db = tmp_path / "t.db"
    store, run_id, first = start(db, chain_scenario(400), ScriptedBackend(default=noted, num_ctx=400))
    list(islice((e for e in first.run(run_id) if isinstance(e, TurnDone)), 2))  # then "killed"
    _, _, second = start(db, chain_scenario(400), ScriptedBackend(default=noted, num_ctx=400))
    list(second.run(run_id))
    chunks = [m.meta.get("chunk") for m in store.messages(run_id)]
    assert chunks == [1, 2, 3, 4, 5, 6, None]
