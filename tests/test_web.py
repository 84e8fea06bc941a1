"""The viewer in-process (Starlette's test client) over a run of the real orchestrator on a
scripted model (tests/web_support.py): every page and its JSON, escaping, the security headers,
the token beyond loopback, read-only serving, the prompt diff, the graph, search, the one-file
export and the Datasette metadata. The browser and the real model: test_web_browser.py.
"""

from __future__ import annotations

import base64
from html import unescape
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from personae.memory.graph import EDGE_KINDS, NODE_KINDS
from personae.store.repo import Store
from personae.web.access import CONTENT_POLICY
from personae.web.app import make_app
from personae.web.datasette import QUERIES, metadata
from personae.web.export import run_html
from tests.web_support import PAYLOAD, USER_TEXT, counts, crafted_run

LOOPBACK = "http://127.0.0.1"


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    db = tmp_path_factory.mktemp("web") / "crafted.db"
    return db, crafted_run(db)


@pytest.fixture(scope="module")
def store(crafted: tuple[Path, int]) -> Iterator[Store]:
    with Store.open_readonly(crafted[0]) as opened:
        yield opened


@pytest.fixture(scope="module")
def client(store: Store) -> TestClient:
    return TestClient(make_app(store), base_url=LOOPBACK)


def pages(run_id: int) -> list[str]:
    return [
        "/", f"/runs/{run_id}", f"/runs/{run_id}/memory", "/search?q=eviction",
        *(f"/runs/{run_id}/turns/{t}" for t in (1, 2, 3, 4, 5)),
    ]


def test_every_page_and_its_json(client: TestClient, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    for path in pages(run_id):
        html = client.get(path)
        assert html.status_code == 200, path
        assert html.headers["content-type"].startswith("text/html")
        joiner = "&" if "?" in path else "?"
        data = client.get(f"{path}{joiner}format=json")
        assert data.status_code == 200 and data.headers["content-type"] == "application/json", path
    run = client.get(f"/runs/{run_id}?format=json").json()
    assert [m["turn"] for m in run["messages"]] == list(range(1, 14))
    by_turn = {m["turn"]: m for m in run["messages"]}
    assert (by_turn[1]["attempts"], by_turn[1]["kept_attempt"]) == (2, 2)  # the empty reply retried
    assert by_turn[1]["retry_reasons"] == ["empty"]
    assert by_turn[2]["user"] and by_turn[2]["colour"] == "user" and by_turn[2]["content"] == USER_TEXT
    assert by_turn[3]["cut"].startswith("Planner: I was never asked.")
    assert by_turn[4]["thinking"] and PAYLOAD in by_turn[4]["thinking"]
    assert len({m["colour"] for m in run["messages"] if not m["user"]}) == 3
    later = client.get(f"/runs/{run_id}?format=json&after=11").json()
    assert [m["turn"] for m in later["messages"]] == [12, 13] and later["live"] is False


def test_model_text_is_escaped_everywhere(client: TestClient, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    for path in pages(run_id) + ["/search?q=pwned", f"/runs/{run_id}/turns/4"]:
        text = client.get(path).text
        assert "<script>window" not in text and "<img src=x" not in text, path
        assert 'href="javascript:' not in text and "<img src=y" not in text, path
    transcript = client.get(f"/runs/{run_id}").text
    assert "&lt;script&gt;window.__pwned" in transcript
    memory = client.get(f"/runs/{run_id}/memory").text
    block = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', memory, re.S)
    assert block and "<" not in block.group(1) and "\\u003cscript\\u003e" in block.group(1)


def test_headers_forbid_inline_script_on_every_response(client: TestClient, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    for path in [*pages(run_id), "/runs/999", "/static/app.css", "/static/vendor/cytoscape.min.js"]:
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert policy == CONTENT_POLICY and "script-src 'self';" in policy and "unsafe-inline';" not in policy.split("style-src")[0]
        assert response.headers["x-content-type-options"] == "nosniff"
        if response.headers["content-type"].startswith("text/html"):
            for tag in re.findall(r"<script\b[^>]*>", response.text):
                assert "src=" in tag or 'type="application/json"' in tag, (path, tag)


def test_unknown_runs_and_turns_are_404_with_the_stores_sentence(client: TestClient) -> None:
    missing = client.get("/runs/999")
    assert missing.status_code == 404 and "No run 999" in missing.text
    assert client.get("/runs/999?format=json").json()["error"].startswith("No run 999")
    assert client.get("/runs/1/turns/99").status_code == 404
    assert client.get("/runs/99999999999999999999999").status_code == 404
    assert client.get("/runs/1/memory/../../etc").status_code == 404


def test_read_only_nothing_but_get_and_the_file_unchanged(crafted: tuple[Path, int]) -> None:
    db, run_id = crafted
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with Store.open_readonly(db) as store:
        client = TestClient(make_app(store), base_url=LOOPBACK)
        for path in pages(run_id):
            assert client.get(path).status_code == 200
            assert client.post(path).status_code == 405
            assert client.delete(path).status_code == 405
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert counts(db, run_id)["messages"] == 13


def test_loopback_answers_loopback_names_only(client: TestClient) -> None:
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"host": "[::1]:8765"}).status_code == 200
    rebound = client.get("/", headers={"host": "evil.example:8765"})
    assert rebound.status_code == 403 and "loopback only" in rebound.text


def test_beyond_loopback_every_address_needs_the_token(store: Store, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    token = "s3cret-token"
    client = TestClient(make_app(store, token=token), base_url="http://192.0.2.7")
    addresses = [*pages(run_id), "/static/app.css", "/static/live.js", "/runs/999", "/nowhere"]
    for path in addresses:
        missing = client.get(path)
        assert missing.status_code == 401, path
        assert "content-security-policy" in missing.headers
        assert client.get(path, headers={"authorization": "Bearer wrong"}).status_code == 403, path
        assert client.get(path, headers={"cookie": "personae_token=wrong"}).status_code == 403, path
        allowed = client.get(path, headers={"authorization": f"Bearer {token}"})
        assert allowed.status_code == (404 if path in ("/runs/999", "/nowhere") else 200), path
    assert client.get("/?token=nope").status_code == 403
    signed = client.get(f"/runs/{run_id}?format=json&token={token}", follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == f"/runs/{run_id}?format=json"
    assert "HttpOnly" in signed.headers["set-cookie"]
    assert client.get(f"/runs/{run_id}?format=json").status_code == 200  # the cookie now


def test_turn_page_sections_and_diff(client: TestClient, store: Store, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    page = client.get(f"/runs/{run_id}/turns/5?format=json").json()
    kept = [c for c in page["calls"] if c["kept"]]
    assert len(kept) == 1 and kept[0]["persona"] == "Planner"
    stored = next(c for c in store.calls(run_id) if c.id == kept[0]["id"])
    assert [s["section"] for s in kept[0]["sections"]] == [e["section"] for e in stored.manifest]
    assert kept[0]["cached_tokens"] + kept[0]["evaluated_tokens"] == stored.prompt_tokens
    diff = page["diff"]
    assert diff["against_turn"] == 4
    transcript = next(s for s in diff["sections"] if s["section"] == "transcript")
    assert transcript["status"] == "changed" and 4 in transcript["turns_added"]
    assert any(line["kind"] == "add" for line in diff["lines"])
    first = client.get(f"/runs/{run_id}/turns/1?format=json").json()
    assert first["diff"]["against_turn"] is None
    assert {s["status"] for s in first["diff"]["sections"]} == {"added"}
    assert [(c["purpose"], c["kept"]) for c in first["calls"]] == [("turn", False), ("retry", True)]
    user = client.get(f"/runs/{run_id}/turns/2?format=json").json()
    assert user["calls"] == [] and user["diff"] is None


def test_memory_page_has_the_graph_personae_graph_loads(client: TestClient, crafted: tuple[Path, int]) -> None:
    db, run_id = crafted
    page = client.get(f"/runs/{run_id}/memory?format=json").json()
    graph = page["graph"]
    numbers = counts(db, run_id)
    assert len(graph["nodes"]) == numbers["nodes"] and len(graph["edges"]) == numbers["edges"]
    assert {n["kind"] for n in graph["nodes"]} <= set(NODE_KINDS)
    assert {e["kind"] for e in graph["edges"]} <= set(EDGE_KINDS)
    assert {"summary", "fact", "message", "persona"} <= {n["kind"] for n in graph["nodes"]}
    fact = page["memory"]["facts"][0]
    assert fact["turns"] and PAYLOAD in fact["text"]
    html = client.get(f"/runs/{run_id}/memory").text
    assert f'data-nodes="{numbers["nodes"]}"' in html


def test_search_is_personae_search(client: TestClient, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    found = client.get("/search?q=eviction&format=json").json()
    assert found["messages"] and all(h["run_id"] == run_id for h in found["messages"])
    html = client.get("/search?q=eviction").text
    turn = found["messages"][0]["turn"]
    assert f'href="/runs/{run_id}/turns/{turn}"' in html
    assert client.get("/search?q=%22unbalanced&format=json").status_code == 200  # not FTS5: plain words
    assert client.get("/search?format=json").json()["messages"] == []


def test_runs_page_filters_quality_and_lineage(client: TestClient, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    listed = client.get("/?format=json").json()
    row = listed["runs"][0]
    assert row["id"] == run_id and row["status"] == "completed" and row["layout"] == "named"
    assert row["quality"] is not None and 0 <= row["quality"] <= 1
    assert row["parent_run_id"] is None and row["forks"] == []
    assert client.get("/?status=failed&format=json").json()["runs"] == []
    assert len(client.get("/?scenario=EDGE&format=json").json()["runs"]) == 1
    assert client.get("/?model=nomodel&format=json").json()["runs"] == []


def test_export_is_one_file_whose_policy_pins_its_scripts(store: Store, crafted: tuple[Path, int]) -> None:
    _db, run_id = crafted
    html = run_html(store, run_id)
    found = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert found
    policy = unescape(found.group(1))  # the attribute as the browser reads it
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 2  # cytoscape, then the graph
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "'unsafe-inline'" not in policy.split("style-src")[0]
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from the network
    assert '<link rel="stylesheet"' not in html and "<style>" in html
    assert "<script>window" not in html and "&lt;script&gt;window.__pwned" in html
    assert "/runs/" not in html.split('id="graph-data"')[0]  # no links to a server that is not there


def test_datasette_metadata_describes_every_column_and_its_queries_run(crafted: tuple[Path, int]) -> None:
    db, run_id = crafted
    meta = metadata("crafted")
    tables = meta["databases"]["crafted"]["tables"]
    assert tables["messages"]["columns"]["cut"].startswith("text removed")
    assert tables["llm_calls"]["columns"]["evaluated_tokens"].startswith("prompt tokens the server")
    assert tables["messages"]["fts_table"] == "messages_fts"
    with sqlite3.connect(db) as connection:
        results = {name: connection.execute(q["sql"]).fetchall() for name, q in QUERIES.items()}
    assert {r[1] for r in results["tokens_per_persona"]} >= {"Planner", "Critic", "Summarizer"}
    assert all(r[7] == r[5] - r[6] for r in results["cache_reuse_per_call"])
    assert [r[3] for r in results["facts_still_valid"] if r[2] == "fact"] == [PAYLOAD and f"p99 is 900 ms {PAYLOAD}"]


def test_the_fts_indexes_are_declared_as_datasette_and_sqlite_utils_detect(crafted: tuple[Path, int]) -> None:
    import sqlite_utils

    db, _run_id = crafted
    database = sqlite_utils.Database(db)
    assert database["messages"].detect_fts() == "messages_fts"  # type: ignore[union-attr]
    assert database["memory_nodes"].detect_fts() == "memory_fts"  # type: ignore[union-attr]
    hits = list(database["messages"].search("eviction"))  # type: ignore[union-attr]
    assert len(hits) == 12  # every persona reply; the User line does not say it
    def indexed(word: str) -> set[str]:
        sql = "select n.kind from memory_fts join memory_nodes n on n.id = memory_fts.rowid where memory_fts match ?"
        return {row[0] for row in database.execute(sql, [word])}

    assert indexed("pwned") == {"summary", "fact"} and indexed("LRU") == {"decision"}
    assert indexed("eviction") == {"decision"} and indexed("Planner") == set()  # no message or persona node
