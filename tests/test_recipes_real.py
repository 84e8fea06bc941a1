"""The recipes end to end on the bundled model (SmolLM2-135M, embedded): small runs that check the
structure each recipe promises, whatever the small model says."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from personae.llm.embedded import EmbeddedBackend
from personae.orchestrator.policies.self_ask import FINAL, FOLLOW_UP, INTERMEDIATE
from tests.builders import make_scenario
from tests.durable_support import run_to_end

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

WINDOW = 640


def keepers_log(folder: Path, tokens: int, backend: EmbeddedBackend) -> Path:
    """The first sections of the built-in keepers' log, just over ``tokens`` long."""
    from personae.config import builtin_dir

    lines = (builtin_dir() / "scenarios" / "docs" / "keepers-log.md").read_text().splitlines()
    end = 1
    while backend.count_text_tokens("\n".join(lines[:end])) < tokens and end < len(lines):
        end += 8
    path = folder / "log.md"
    path.write_text("\n".join(lines[:end]) + "\n", encoding="utf-8")
    return path


def test_chain_of_agents_reads_a_document_five_windows_long_without_passing_the_window(
    tmp_path: Path,
) -> None:
    backend = EmbeddedBackend(num_ctx=WINDOW)
    try:
        document = keepers_log(tmp_path, 5 * WINDOW, backend)
        assert backend.count_text_tokens(document.read_text()) >= 5 * WINDOW
        text = make_scenario(
            "policy: {type: chain, worker: Worker, manager: Manager}\n",
            name="chain-real", goal="Which ships did the keepers sight?",
            personas="personas:\n"
            "  - {name: Worker, description: reads, system: Keep notes., options: {num_predict: 32}}\n"
            "  - {name: Manager, description: answers, system: Answer., options: {num_predict: 32}}\n",
            extra=f"documents: [log.md]\nmemory: {{num_ctx: {WINDOW}, collapse: null}}\n"
            "termination: {max_turns: 60}\noptions: {temperature: 0}\n",
        )
        store, run_id = run_to_end(tmp_path / "real.db", text, backend, seed=1)
    finally:
        backend.close()
    chunks = store.memory_nodes(run_id, ["chunk"])
    messages = store.messages(run_id)
    assert [m.meta.get("node") for m in messages[:-1]] == [c.id for c in chunks]
    assert messages[-1].persona == "Manager" and store.run(run_id).stop_reason == "answered"
    sizes, cited = prompt_sizes_and_citations(tmp_path / "real.db", run_id)
    assert len(sizes) == len(chunks) + 1 and max(sizes) <= WINDOW
    assert cited == len(chunks)


def test_self_ask_and_task_loop_on_the_real_model(tmp_path: Path) -> None:
    (tmp_path / "facts.md").write_text(
        "# Station\n\n## Bell\n\nThe fog bell was repaired by Hugh Mackay.\n\n"
        "## Dates\n\nThe repair was finished on 3 May 1910.\n", encoding="utf-8",
    )
    ask = make_scenario(
        "policy: {type: self_ask, asker: Asker, answerer: Retriever, max_follow_ups: 1}\n",
        name="self-ask-real", goal="Who repaired the fog bell, and when?",
        personas="personas:\n"
        "  - {name: Asker, description: asks, system: Ask., options: {num_predict: 80}}\n"
        "  - {name: Retriever, description: answers, system: Answer., options: {num_predict: 80}}\n",
        extra="documents: [facts.md]\nmemory: {num_ctx: 1024, collapse: null}\n"
        "termination: {max_turns: 6}\noptions: {temperature: 0}\n",
    )
    tasks = make_scenario(
        "policy: {type: task_loop, planner: Planner, executor: Executor, prioritizer: Prioritizer, max_tasks: 1}\n",
        name="task-loop-real", goal="Order paraffin for the winter.",
        personas="personas:\n"
        "  - {name: Planner, description: plans, system: List tasks., options: {num_predict: 64}}\n"
        "  - {name: Executor, description: does, system: Do the task., options: {num_predict: 24}}\n"
        "  - {name: Prioritizer, description: orders, system: Order tasks., options: {num_predict: 24}}\n",
        extra="memory: {num_ctx: 1024, collapse: null}\ntermination: {max_turns: 4}\noptions: {temperature: 0}\n",
    )
    backend = EmbeddedBackend(num_ctx=1024)
    try:
        store, asked = run_to_end(tmp_path / "real.db", ask, backend, seed=1)
        _, planned = run_to_end(tmp_path / "real.db", tasks, backend, seed=1)
    finally:
        backend.close()
    said = store.messages(asked)
    steps = [m.content.split(":")[0] for m in said]
    # Constrained decoding keeps the format: a follow-up, its answer, then the final answer.
    assert steps[:2] in ([FOLLOW_UP, INTERMEDIATE], [FINAL]) and steps[-1] == FINAL
    assert all(m.meta.get("node") for m in said if m.meta.get("self_ask") == "answer")
    task_nodes = store.memory_nodes(planned, ["task"])
    worked = [m for m in store.messages(planned) if m.meta.get("task_loop") == "execute"]
    assert len(task_nodes) == 1 and len(worked) == 1  # max_tasks: 1 — created, worked, closed
    assert task_nodes[0].valid_to == worked[0].turn
    assert store.run(planned).stop_reason in ("tasks_done", "max_turns")


def test_generative_ranking_rates_items_on_the_real_model(tmp_path: Path) -> None:
    text = make_scenario(
        name="ranking-real", goal="Choose a paraffin supplier for the winter.",
        personas="personas:\n"
        "  - {name: Planner, description: plans, system: Plan., options: {num_predict: 32}}\n"
        "  - {name: Critic, description: doubts, system: Doubt., options: {num_predict: 32}}\n"
        "  - {name: Summarizer, description: sums up, system: Sum up., options: {num_predict: 32}}\n",
        extra="policy: {type: round_robin, speakers: [Planner, Critic]}\n"
        "memory:\n  num_ctx: 1024\n  collapse: {every_turns: 3, keep_recent: 1, max_tokens: 160}\n"
        "  ranking: {type: generative, recency: 1, importance: 2, relevance: 1}\n"
        "termination: {max_turns: 5}\noptions: {temperature: 0}\n",
    )
    backend = EmbeddedBackend(num_ctx=1024)
    try:
        store, run_id = run_to_end(tmp_path / "real.db", text, backend, seed=1)
    finally:
        backend.close()
    items = [n for n in store.memory_nodes(run_id) if n.kind in ("fact", "decision", "question")]
    rated = store.calls(run_id, "importance")
    assert items and len(rated) == len(items)
    scores = [(n.data or {}).get("importance") for n in items]
    assert all(s is None or 1 <= s <= 10 for s in scores) and any(s is not None for s in scores)


def test_the_shipped_chain_example_is_over_five_windows_long() -> None:
    from personae.config import builtin_dir, load_scenario

    loaded = load_scenario(builtin_dir() / "scenarios" / "chain-of-agents.yaml")
    window = loaded.scenario.memory.num_ctx
    assert window is not None and loaded.scenario.memory.collapse is None
    backend = EmbeddedBackend(num_ctx=window)
    try:
        tokens = backend.count_text_tokens(loaded.documents[0].read_text())
    finally:
        backend.close()
    assert tokens >= 5 * window


def prompt_sizes_and_citations(db_path: Path, run_id: int) -> tuple[list[int], int]:
    """Every call's prompt tokens, and how many chunks the run's messages cite (derived_from),
    read with plain SQL: what a user would check in the database."""
    with sqlite3.connect(db_path) as db:
        sizes = [r[0] for r in db.execute("select prompt_tokens from llm_calls where run_id = ?", (run_id,))]
        cited = db.execute(
            "select count(*) from memory_edges e join memory_nodes n on n.id = e.src "
            "where e.kind = 'derived_from' and n.kind = 'message' and e.run_id = ?", (run_id,)
        ).fetchone()[0]
    return sizes, int(cited)
