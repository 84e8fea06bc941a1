"""The memory graph: its tables and migration, the nodes every turn adds, document import,
retrieval, the export formats and the CLI commands that show it."""

from __future__ import annotations

import io
import json
import random
import sqlite3
import subprocess
from pathlib import Path

import networkx as nx
import pytest

from personae.config import load_scenario_text
from personae.errors import StoreError
from personae.llm.scripted import ScriptedBackend
from personae.memory.documents import import_documents, split_document
from personae.memory.graph import EDGE_KINDS, NODE_KINDS, export, load_graph
from personae.memory.retrieval import query_terms, rank
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.db import database_url, open_engines, upgrade
from personae.store.graph_rows import EdgeSpec, GraphEdit, NodeSpec
from personae.store.repo import NewRun, Store, TurnRecord
from tests.conftest import personae_cmd

DOC = """# Orders API

Intro paragraph about the service.

## Caching

Redis would serve recent orders. A 60 s TTL keeps them fresh.

```sh
# not a heading
redis-cli ping
```

### Eviction

LRU eviction with a 2 GB limit.

## Database

PostgreSQL primary at 85% CPU.
"""


def new_run(store: Store) -> int:
    return store.create_run(NewRun(
        scenario_name="s", scenario_path=None, scenario_yaml="name: s", backend="scripted",
        model="m", layout="cache_friendly", num_ctx=2048, max_turns=4, seed=None,
    ))


def test_migration_adds_memory_tables_and_backfills_old_runs(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engines = open_engines(database_url(db), migrate=False)
    upgrade(engines, to="0001")
    with engines.write.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO runs (id, scenario_name, scenario_yaml, status, backend, model, layout, "
            "num_ctx, max_turns, started_at, turns, prompt_tokens, evaluated_tokens, "
            "completion_tokens, personae_version) VALUES (1, 's', 'y', 'completed', 'scripted', "
            "'m', 'cache_friendly', 2048, 3, '2026-01-01', 3, 0, 0, 0, '0.1')"
        )
        connection.exec_driver_sql(
            "INSERT INTO run_personas (run_id, name, source, definition) VALUES "
            "(1, 'Critic', 'builtin', '{}'), (1, 'Planner', 'builtin', '{}')"
        )
        for turn, persona in enumerate(("Planner", "Critic", "User"), start=1):
            connection.exec_driver_sql(
                "INSERT INTO messages (run_id, turn, persona, content, created_at) "
                f"VALUES (1, {turn}, '{persona}', 'said {turn}', '2026-01-01')"
            )
    engines.dispose()
    store = Store.open(db)
    from personae.store.db import head_revision

    assert store.notice and f"from 0001 to {head_revision()}" in store.notice  # 0002 and after
    connection = sqlite3.connect(db)
    columns = [r[1] for r in connection.execute("pragma table_info(memory_nodes)")]
    assert columns == ["id", "run_id", "kind", "level", "text", "data", "turn", "valid_from",
                       "valid_to", "message_id"]
    columns = [r[1] for r in connection.execute("pragma table_info(memory_edges)")]
    assert columns == ["id", "run_id", "src", "dst", "kind", "turn"]
    graph = load_graph(store, 1)
    kinds = sorted(a["kind"] for _, a in graph.nodes(data=True))
    assert kinds == ["message"] * 3 + ["persona"] * 3
    edges = sorted((graph.nodes[s]["text"], graph.nodes[d]["text"], a["kind"])
                   for s, d, a in graph.edges(data=True))
    assert ("said 3", "User", "authored_by") in edges
    assert ("said 2", "said 1", "replies_to") in edges and len(edges) == 5
    # The next turn of the old run continues the chain.
    store.commit_turn(1, TurnRecord(4, "Critic", None, "said 4"), [])
    assert load_graph(store, 1).number_of_edges() == 7


def test_every_turn_adds_its_message_node_in_the_same_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "Critic", None, "Redis helps reads."), [])
    extra = GraphEdit(
        (NodeSpec("claim", "fact", "Reads dominate.", turn=1, valid_from=1),),
        (EdgeSpec("claim", "message", "derived_from", 1),),
    )
    store.commit_turn(run_id, TurnRecord(2, "Planner", None, "Add Redis."), [], graph=extra)
    # A failed turn leaves no node behind either.
    with pytest.raises(StoreError, match="Another process wrote"):
        store.commit_turn(run_id, TurnRecord(2, "Planner", None, "dup"), [], graph=extra)
    graph = load_graph(store, run_id)
    assert sorted(a["kind"] for _, a in graph.nodes(data=True)) == [
        "fact", "message", "message", "persona", "persona"
    ]
    assert sorted(a["kind"] for *_, a in graph.edges(data=True)) == [
        "authored_by", "authored_by", "derived_from", "replies_to"
    ]
    with pytest.raises(ValueError, match="unknown node key"):
        store.add_graph(run_id, GraphEdit(edges=(EdgeSpec("nope", 1, "supports"),)))
    assert load_graph(store, run_id).number_of_edges() == 4


def test_markdown_splits_into_document_section_chunk_tree() -> None:
    edit = split_document(DOC, "orders.md")
    kinds = [n.kind for n in edit.nodes]
    assert kinds.count("document") == 1 and kinds.count("section") == 4
    sections = {n.key: n for n in edit.nodes if n.kind == "section"}
    assert [n.data["path"] for n in sections.values()] == [
        "Orders API", "Orders API › Caching", "Orders API › Caching › Eviction",
        "Orders API › Database",
    ]
    parent = {e.src: e.dst for e in edit.edges}
    assert all(e.kind == "part_of" for e in edit.edges)
    eviction = next(k for k, n in sections.items() if n.text == "Eviction")
    caching = next(k for k, n in sections.items() if n.text == "Caching")
    assert parent[eviction] == caching and parent[parent[caching]] == "doc"
    chunks = [n for n in edit.nodes if n.kind == "chunk"]
    code = next(c for c in chunks if "redis-cli" in c.text)
    assert "# not a heading" in code.text and code.data["path"] == "Orders API › Caching"
    plain = split_document("# not a heading in text\n\nsecond paragraph", "a.txt", markdown=False)
    assert [n.kind for n in plain.nodes] == ["document", "chunk"]


def test_a_ten_thousand_line_document_imports(tmp_path: Path) -> None:
    rng = random.Random(0)
    lines = []
    for i in range(10_000):
        if i % 40 == 0:
            lines.append(f"{'#' * (1 + i // 40 % 3)} Heading {i}")
        elif i % 8 == 0:
            lines.append("")
        else:
            lines.append(" ".join(f"w{rng.randint(0, 5000)}" for _ in range(10)))
    path = tmp_path / "big.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    chunks = import_documents(store, run_id, [path])
    assert chunks == len(store.memory_nodes(run_id, ["chunk"])) > 250
    assert len(store.memory_nodes(run_id, ["section"])) == 250
    assert import_documents(store, run_id, [path]) == 0  # a resumed run imports nothing twice


def test_retrieval_ranks_by_relevance_and_is_deterministic() -> None:
    candidates = [(1, "the database is at 85% CPU"), (2, "Redis cache with a TTL"),
                  (3, "unrelated remark"), (4, "cache eviction uses LRU in the cache")]
    assert rank("which cache eviction?", candidates) == [4, 2, 1, 3]
    assert rank("which cache eviction?", candidates) == rank("which cache eviction?", candidates)
    assert rank("", candidates) == [1, 2, 3, 4]
    assert query_terms("The cache, the CACHE and кэш!") == ["кэш", "cache"]


def test_relevant_document_chunks_enter_the_memory_block(tmp_path: Path) -> None:
    (tmp_path / "orders.md").write_text(DOC, encoding="utf-8")
    text = """name: doc-test
goal: Decide on LRU eviction for the Redis cache.
guard: {enabled: false}
documents: [orders.md]
personas:
  - {name: Planner, description: plans, system: Plan.}
  - {name: Summarizer, description: sums up, system: Sum up.}
termination: {max_turns: 2}
"""
    loaded = load_scenario_text(text, base_dir=tmp_path)
    store = Store.open(tmp_path / "d.db")
    backend = ScriptedBackend(default="A point.")
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    list(Orchestrator(loaded, backend, store, settings).run(run_id))
    first = store.calls(run_id, "turn")[0]
    documents = next(e for e in first.manifest if e["section"] == "memory/documents")
    nodes = {n.id: n for n in store.memory_nodes(run_id, ["chunk"])}
    assert "LRU eviction" in nodes[documents["node_ids"][0]].text
    assert "orders.md › Orders API › Caching › Eviction: LRU eviction" in first.prompt[0]["content"]


def graph_store(tmp_path: Path) -> tuple[Store, int]:
    store = Store.open(tmp_path / "g.db")
    run_id = new_run(store)
    for turn, (persona, said) in enumerate(
        [("Planner", 'Add "Redis" <now> #1'), ("Critic", "Risk: stale | orders")], start=1
    ):
        store.commit_turn(run_id, TurnRecord(turn, persona, "debate", said), [])
    nodes = store.message_node_ids(run_id, [1, 2])
    store.commit_collapse(run_id, GraphEdit(
        (NodeSpec("s", "summary", "They argued.", level=1, turn=2,
                  data={"collapse": 1, "span": [1, 2]}),
         NodeSpec("f", "fact", "Orders go stale.", turn=2, valid_from=2,
                  data={"turns": [2]}),
         NodeSpec("d", "decision", "Add Redis.", turn=2, valid_from=1, data={"turns": [1]}),
         NodeSpec("q", "question", "Which TTL?", turn=2, valid_from=2, data={"turns": [2]}),
         NodeSpec("s2", "summary", "All of it.", level=2, turn=2, data={"span": [1, 2]})),
        (EdgeSpec("s", nodes[1], "summarizes", 2), EdgeSpec("s", nodes[2], "summarizes", 2),
         EdgeSpec("f", nodes[2], "derived_from", 2), EdgeSpec(nodes[1], "d", "supports", 2),
         EdgeSpec("s2", "s", "summarizes", 2)),
    ), [])
    doc = tmp_path / "orders.md"
    doc.write_text(DOC, encoding="utf-8")
    import_documents(store, run_id, [doc])
    fact = store.memory_nodes(run_id, ["fact"])[0].id
    decision = store.memory_nodes(run_id, ["decision"])[0].id
    store.commit_collapse(run_id, GraphEdit(
        (NodeSpec("f2", "fact", "Orders stay fresh with a TTL.", turn=2, valid_from=2),
         NodeSpec("d2", "decision", "Do not add Redis yet.", turn=2, valid_from=2)),
        (EdgeSpec("f2", fact, "supersedes", 2), EdgeSpec("d2", decision, "contradicts", 2)),
        ((fact, 2), (decision, 2)),
    ), [])
    return store, run_id


def test_graph_exports_carry_every_node_and_edge_type(tmp_path: Path) -> None:
    store, run_id = graph_store(tmp_path)
    graph = load_graph(store, run_id)
    assert {a["kind"] for _, a in graph.nodes(data=True)} == set(NODE_KINDS)
    assert {a["kind"] for *_, a in graph.edges(data=True)} == set(EDGE_KINDS)
    back = nx.read_graphml(io.BytesIO(export(graph, "graphml").encode("utf-8")))
    assert back.number_of_nodes() == graph.number_of_nodes()
    assert back.number_of_edges() == graph.number_of_edges()
    assert {a["kind"] for _, a in back.nodes(data=True)} == set(NODE_KINDS)
    assert {a["kind"] for *_, a in back.edges(data=True)} == set(EDGE_KINDS)
    data = json.loads(export(graph, "json"))
    assert len(data["nodes"]) == graph.number_of_nodes() and data["multigraph"] is True
    mermaid = export(graph, "mermaid").splitlines()
    assert mermaid[0] == "flowchart LR"
    quoted = [line for line in mermaid if "Redis" in line and "message" in line][0]
    assert '"' not in quoted.split('["', 1)[1].rsplit('"]', 1)[0]  # quotes entity-escaped
    assert "#quot;Redis#quot; #lt;now#gt; #35;1" in quoted
    assert sum("-->|" in line for line in mermaid) == graph.number_of_edges()
    dot = export(graph, "dot")
    assert dot.startswith("digraph") and dot.count(" -> ") == graph.number_of_edges()


@pytest.mark.slow
def test_cli_graph_show_memory_and_search(tmp_path: Path, cli_env: dict[str, str]) -> None:
    store, run_id = graph_store(tmp_path)
    db = str(tmp_path / "g.db")
    target = tmp_path / "out.graphml"
    done = subprocess.run(personae_cmd("graph", str(run_id), "--format", "graphml", "-o",
                                       str(target), "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert nx.read_graphml(target).number_of_nodes() == load_graph(store, run_id).number_of_nodes()
    done = subprocess.run(personae_cmd("graph", str(run_id), "-f", "mermaid", "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("flowchart LR")
    done = subprocess.run(personae_cmd("show", str(run_id), "--memory", "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1 collapses · 2 summary levels" in out
    assert "level 1 · turns 1-2 (merged into" in out
    assert "✗ [" in out and "supersedes by [" in out and "Orders stay fresh with a TTL." in out
    assert "Open questions (1 holding, 0 closed)" in out and "orders.md: " in out
    done = subprocess.run(personae_cmd("show", str(run_id), "--memory", "-f", "json", "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    memory = json.loads(done.stdout)
    assert [s["level"] for s in memory["summaries"]] == [2, 1]
    assert memory["facts"][0]["closed_by"]["edge"] == "supersedes"
    done = subprocess.run(personae_cmd("search", "stale", "--db", db, "--run", str(run_id)),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert "message 2 · Critic: Risk: [stale]" in done.stdout
    assert "fact [" in done.stdout and "Orders go [stale]" in done.stdout
    done = subprocess.run(personae_cmd("search", "eviction", "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert "chunk [" in done.stdout and "section [" in done.stdout
    done = subprocess.run(personae_cmd("graph", "99", "--db", db),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "No run 99" in done.stderr
