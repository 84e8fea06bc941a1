"""The recipes on the scripted backend: the structure each promises, turn by turn.

Chain of agents: chunks visited in order, each worker prompt holding its chunk and the previous
note only, every note citing its chunk, no prompt above the window. Self-ask: follow-ups, each
answered from a retrieved passage, until the final answer. Task loop: tasks created, worked and
closed, as task nodes in the graph. All three resume where they stopped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import pytest

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


ASKERS = """personas:
  - {name: Asker, description: asks, system: Ask.}
  - {name: Retriever, description: answers, system: Answer from the passage.}
"""


def self_ask_scenario(max_follow_ups: int = 3, min_follow_ups: int | None = None) -> str:
    least = "" if min_follow_ups is None else f", min_follow_ups: {min_follow_ups}"
    return make_scenario(
        f"policy: {{type: self_ask, asker: Asker, answerer: Retriever, max_follow_ups: {max_follow_ups}{least}}}\n",
        name="self-ask", goal="Who repaired the bell, and when?", personas=ASKERS,
        extra="documents: [facts.md]\nmemory: {num_ctx: 2048, collapse: null}\n"
        "termination: {max_turns: 30}\n",
    )


def facts_document(folder: Path) -> None:
    (folder / "facts.md").write_text(
        "# Station\n\n## Bell\n\nThe fog bell was repaired by Hugh Mackay.\n\n"
        "## Dates\n\nThe repair was finished on 3 May 1910.\n\n"
        "## Stores\n\nThe store held ninety cans of paraffin.\n",
        encoding="utf-8",
    )


def test_self_ask_answers_each_follow_up_from_a_retrieved_passage(tmp_path: Path) -> None:
    facts_document(tmp_path)
    asks = iter([
        {"step": "Follow up", "text": "Who repaired the fog bell?"},
        {"step": "Follow up", "text": "When was the repair finished?"},
        {"step": "So the final answer is", "text": "Hugh Mackay, on 3 May 1910."},
    ])

    def reply(request: ChatRequest) -> str:
        if "step" in json.dumps(request.schema):
            return json.dumps(next(asks))
        passage = request.messages[-1].content.split("):\n", 1)[1].split("\n")[0]
        return json.dumps({"answer": passage})

    backend = ScriptedBackend(default=reply)
    store, run_id, _ = run_events(tmp_path / "t.db", self_ask_scenario(), backend)
    messages = store.messages(run_id)
    assert [m.content.split(":")[0] for m in messages] == [
        "Follow up", "Intermediate answer", "Follow up", "Intermediate answer", "So the final answer is"
    ]
    assert messages[1].content == "Intermediate answer: The fog bell was repaired by Hugh Mackay."
    assert messages[3].content == "Intermediate answer: The repair was finished on 3 May 1910."
    assert store.run(run_id).stop_reason == "answered"
    chunks = {c.id: c.text for c in store.memory_nodes(run_id, ["chunk"])}
    answers = [m for m in messages if m.meta["self_ask"] == "answer"]
    assert [chunks[m.meta["node"]] for m in answers] == [
        "The fog bell was repaired by Hugh Mackay.", "The repair was finished on 3 May 1910."
    ]
    assert [m.meta["answers"] for m in answers] == [messages[0].id, messages[2].id]
    with sqlite3.connect(tmp_path / "t.db") as db:
        cited = db.execute(
            "select n.message_id, e.dst from memory_edges e join memory_nodes n on n.id = e.src "
            "where e.kind = 'derived_from' and e.run_id = ?", (run_id,)
        ).fetchall()
    assert sorted(cited) == sorted((m.id, m.meta["node"]) for m in answers)
    # The asker sees its follow-ups and their answers; the answerer only its question and passage.
    asker_prompt = "\n".join(m.content for m in backend.requests[-1].messages)
    assert "Intermediate answer: The fog bell was repaired by Hugh Mackay." in asker_prompt
    answer_prompt = "\n".join(m.content for m in backend.requests[3].messages)
    assert "Who repaired the fog bell?" not in answer_prompt and "When was the repair" in answer_prompt


def stepping(schemas: list[list[str]], pick: int) -> Callable[[ChatRequest], str]:
    """A model that takes step ``pick`` of those its schema offers (recorded in ``schemas``)
    and answers every follow-up the same."""

    def reply(request: ChatRequest) -> str:
        steps = (request.schema or {}).get("properties", {}).get("step", {}).get("enum")
        if steps is None:
            return json.dumps({"answer": "Hugh Mackay."})
        schemas.append(steps)
        return json.dumps({"step": steps[pick], "text": "Who repaired the bell?"})

    return reply


def test_self_ask_must_answer_after_max_follow_ups(tmp_path: Path) -> None:
    facts_document(tmp_path)
    schemas: list[list[str]] = []
    reply = stepping(schemas, 0)
    store, run_id, _ = run_events(tmp_path / "t.db", self_ask_scenario(2), ScriptedBackend(default=reply))
    assert schemas == [["Follow up", "So the final answer is"]] * 2 + [["So the final answer is"]]
    assert store.messages(run_id)[-1].content == "So the final answer is: Who repaired the bell?"


TASKERS = """personas:
  - {name: Planner, description: plans, system: Plan.}
  - {name: Executor, description: does, system: Do.}
  - {name: Prioritizer, description: orders, system: Order.}
"""


def task_scenario(max_tasks: int = 3, max_turns: int = 40) -> str:
    return make_scenario(
        f"policy: {{type: task_loop, planner: Planner, executor: Executor, prioritizer: Prioritizer, max_tasks: {max_tasks}}}\n",
        name="tasks", goal="Ready the station for winter.", personas=TASKERS,
        extra=f"memory: {{num_ctx: 4096, collapse: null}}\ntermination: {{max_turns: {max_turns}}}\n",
    )


def tasks(*items: tuple[int, str, str]) -> str:
    return json.dumps({"tasks": [{"id": i, "text": t, "status": s} for i, t, s in items]})


def test_task_loop_creates_works_and_closes_tasks_in_the_graph(tmp_path: Path) -> None:
    plans = iter([
        tasks((1, "Order paraffin", "open"), (2, "Fix the bell rope", "open")),
        # Task 1 stays "open" here: worked tasks are done whatever a list says. A third task comes.
        tasks((1, "Order paraffin", "open"), (2, "Fix the bell rope", "open"), (3, "Repair the landing", "open")),
        tasks((2, "Fix the bell rope", "open"), (3, "Repair the landing", "open"),
              (4, "Paint the rail", "open")),  # a fourth task is over max_tasks: never taken up
        tasks((2, "Fix the bell rope", "done")),
    ])

    def reply(request: ChatRequest) -> str:
        schema = json.dumps(request.schema)
        if '"tasks"' in schema:
            return next(plans)
        if '"order"' in schema:
            return json.dumps({"order": [3, 2]})
        return "Done: " + request.messages[-1].content.split("Work on task ")[1].split("\n")[0]

    store, run_id, _ = run_events(tmp_path / "t.db", task_scenario(), ScriptedBackend(default=reply))
    messages = store.messages(run_id)
    assert [(m.persona, m.meta.get("task")) for m in messages] == [
        ("Planner", None), ("Executor", 1), ("Planner", None), ("Prioritizer", None),
        ("Executor", 3), ("Planner", None), ("Prioritizer", None), ("Executor", 2),
        ("Planner", None),
    ]
    assert store.run(run_id).stop_reason == "tasks_done"
    assert messages[0].content == "- [ ] 1. Order paraffin\n- [ ] 2. Fix the bell rope"
    nodes = store.memory_nodes(run_id, ["task"])
    assert [(n.data["id"], n.text, n.valid_to) for n in nodes] == [
        (1, "Order paraffin", messages[1].turn),
        (2, "Fix the bell rope", messages[7].turn),
        (3, "Repair the landing", messages[4].turn),
    ]
    with sqlite3.connect(tmp_path / "t.db") as db:
        made = db.execute(
            "select t.text, m.turn from memory_edges e join memory_nodes t on t.id = e.src "
            "join memory_nodes m on m.id = e.dst where e.kind = 'derived_from' and t.kind = 'task'"
        ).fetchall()
        worked = db.execute(
            "select m.turn, t.text from memory_edges e join memory_nodes m on m.id = e.src "
            "join memory_nodes t on t.id = e.dst where e.kind = 'derived_from' and t.kind = 'task'"
        ).fetchall()
    assert sorted(made) == [("Fix the bell rope", 1), ("Order paraffin", 1), ("Repair the landing", 3)]
    assert sorted(worked) == [(2, "Order paraffin"), (5, "Repair the landing"), (8, "Fix the bell rope")]


def test_task_loop_stops_at_its_budget_with_tasks_open(tmp_path: Path) -> None:
    def reply(request: ChatRequest) -> str:
        if '"tasks"' in json.dumps(request.schema):
            return tasks((1, "One", "open"), (2, "Two", "open"))
        return json.dumps({"order": [2, 1]}) if request.schema else "Worked."

    backend = ScriptedBackend(default=reply)
    store, run_id, _ = run_events(tmp_path / "t.db", task_scenario(max_turns=3), backend)
    assert store.run(run_id).stop_reason.startswith("max_turns")
    # The first list may hold open tasks only; later lists may close them.
    statuses = [r.schema["properties"]["tasks"]["items"]["properties"]["status"]["enum"]
                for r in backend.requests if r.schema and "tasks" in r.schema["properties"]]
    assert statuses == [["open"], ["open", "done"]]
    assert [n.valid_to for n in store.memory_nodes(run_id, ["task"])] == [2, None]


def test_self_ask_asks_min_follow_ups_before_it_may_answer(tmp_path: Path) -> None:
    """A small model answers at once when it may (it then never reads the documents):
    ``min_follow_ups`` takes the final answer out of the first asks' schema."""
    facts_document(tmp_path)
    schemas: list[list[str]] = []
    reply = stepping(schemas, -1)  # answers as soon as it may
    store, run_id, _ = run_events(tmp_path / "t.db", self_ask_scenario(3, 2), ScriptedBackend(default=reply))
    assert schemas == [["Follow up"]] * 2 + [["Follow up", "So the final answer is"]]
    assert [m.content.split(":")[0] for m in store.messages(run_id)] == [
        "Follow up", "Intermediate answer", "Follow up", "Intermediate answer", "So the final answer is"
    ]


def test_recipe_config_errors_name_the_field_and_the_fix() -> None:
    from personae.config import load_scenario_text
    from personae.errors import ConfigError

    cases = [
        (chain_scenario(400).replace("manager: Manager", "manager: Worker"), "worker and the manager must be different"),
        (chain_scenario(400).replace("worker: Worker", "worker: Wroker"), "did you mean 'Worker'"),
        (self_ask_scenario().replace("max_follow_ups: 3", "max_follow_ups: 0"), "max_follow_ups"),
        (self_ask_scenario(2, 3), "min_follow_ups \\(3\\) is more than max_follow_ups \\(2\\)"),
        (task_scenario().replace("executor: Executor", "executor: Planner"), "must be different personas"),
        (task_scenario().replace("collapse: null", "collapse: null, ranking: {type: cosine}"), "ranking"),
    ]
    for text, expected in cases:
        with pytest.raises(ConfigError, match=expected) as caught:
            load_scenario_text(text)
        assert "line" in str(caught.value)


def test_recipe_runs_replay_identically(tmp_path: Path) -> None:
    """Prompts are a pure function of the stored run: replay re-executes each recipe byte for byte."""
    from personae.orchestrator.replay import replay_run

    long_document(tmp_path, sections=2)
    facts_document(tmp_path)
    asks = [{"step": "Follow up", "text": "Who repaired the fog bell?"},
            {"step": "So the final answer is", "text": "Hugh Mackay."}]

    def reply(request: ChatRequest) -> str:
        schema = json.dumps(request.schema)
        if '"step"' in schema:
            return json.dumps(asks.pop(0))
        if '"tasks"' in schema:
            return tasks((1, "Order paraffin", "open"))
        return noted(request) if request.schema else "Worked."

    backend = ScriptedBackend(default=reply, num_ctx=400)
    db = tmp_path / "t.db"
    for text in (chain_scenario(400), self_ask_scenario(), task_scenario()):
        store, run_id, _ = run_events(db, text, backend)
        assert store.run(run_id).status == "completed"
        report = replay_run(store, run_id)
        assert report.identical and report.turns == len(store.messages(run_id)), report
