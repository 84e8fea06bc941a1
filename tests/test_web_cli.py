"""The viewer's commands as a user runs them (subprocesses), and the same database in the two
tools SQLite users reach for: Datasette (its Python API, with the metadata `personae db metadata`
writes) and sqlite-utils (its command line), on a new database and on one migrated from
Personae's first schema."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests.test_migrations import build_first_revision
from tests.web_support import crafted_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A database the current code made, and one built at revision 0001 and upgraded."""
    folder = tmp_path_factory.mktemp("tools")
    new = folder / "personae.db"
    crafted_run(new)
    old = folder / "old.db"
    build_first_revision(old)
    Store.open(old).close()  # the upgrade, as any writing command does it
    return {"new": new, "old": old}


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def served(databases: dict[str, Path], cli_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """`personae serve --host 0.0.0.0 --port 0`: the address it printed and the token in it."""
    process = subprocess.Popen(
        personae_cmd("serve", "--db", str(databases["new"]), "--host", "0.0.0.0", "--port", "0"),
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        url = next(line.split()[1] for line in lines if line.startswith("Open "))
        assert "?token=" in url and "token" in lines[2]
        yield url.split("?")[0], url.split("token=")[1]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_serve_beyond_loopback_asks_every_page_for_the_token(served: tuple[str, str]) -> None:
    base, token = served
    for path in ("", "runs/1", "runs/1/turns/1", "runs/1/memory", "search?q=eviction", "static/app.css"):
        assert status(base + path) == 401, path
        assert status(base + path, {"Authorization": "Bearer nope"}) == 403, path
        assert status(base + path, {"Authorization": f"Bearer {token}"}) == 200, path


def test_serve_refuses_a_busy_port_and_a_missing_database(databases: dict[str, Path], cli_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            personae_cmd("serve", "--db", str(databases["new"]), "--port", str(port)),
            env=cli_env, capture_output=True, text=True, timeout=60,
        )
    assert taken.returncode == 2 and "Traceback" not in taken.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in taken.stderr and "--port" in taken.stderr
    missing = subprocess.run(
        personae_cmd("serve", "--db", str(databases["new"].parent / "none.db")),
        env=cli_env, capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 2 and "No database at" in missing.stderr
    assert not (databases["new"].parent / "none.db").exists()


def test_export_html_and_db_metadata_from_the_command_line(
    databases: dict[str, Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    page = tmp_path / "run.html"
    exported = subprocess.run(
        personae_cmd("export", "1", "-f", "html", "-o", str(page), "--db", str(databases["new"])),
        env=cli_env, capture_output=True, text=True, timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and 'id="graph-data"' in html and "Run 1 · edge-cases" in html
    meta = tmp_path / "meta.json"
    written = subprocess.run(
        personae_cmd("db", "metadata", "--db", str(databases["new"]), "-o", str(meta)),
        env=cli_env, capture_output=True, text=True, timeout=60,
    )
    assert written.returncode == 0, written.stderr
    data = json.loads(meta.read_text(encoding="utf-8"))
    assert set(data["databases"]) == {"personae"}  # Datasette names a database by its file


@pytest.mark.parametrize("which", ["new", "old"])
def test_sqlite_utils_search_finds_turns(databases: dict[str, Path], which: str) -> None:
    word = "Eviction" if which == "new" else "eviction"
    found = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "search", str(databases[which]), "messages", word],
        capture_output=True, text=True, timeout=120,
    )
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows and all(word.lower() in row["content"].lower() for row in rows)
    assert len(rows) == (12 if which == "new" else 6)  # the old database: 3 turns in 2 runs


@pytest.mark.parametrize("which", ["new", "old"])
def test_datasette_shows_the_search_box_descriptions_and_canned_queries(
    databases: dict[str, Path], which: str
) -> None:
    from datasette.app import Datasette

    from personae.web.datasette import metadata

    path = databases[which]

    async def look() -> dict[str, object]:
        datasette = Datasette([str(path)], metadata=metadata(path.stem))
        await datasette.invoke_startup()
        table = await datasette.client.get(f"/{path.stem}/messages")
        searched = await datasette.client.get(f"/{path.stem}/messages.json?_search=eviction&_shape=array")
        query = await datasette.client.get(f"/{path.stem}/tokens_per_persona.json?_shape=array")
        return {"table": table.text, "searched": searched.json(), "query": query.json()}

    seen = asyncio.run(look())
    assert 'name="_search"' in str(seen["table"])  # the search box
    assert "text removed because the reply went on speaking as another persona" in str(seen["table"])
    searched = seen["searched"]
    assert isinstance(searched, list) and searched
    assert all("eviction" in row["content"].lower() for row in searched)
    query = seen["query"]
    with sqlite3.connect(path) as connection:
        callers = [r[0] for r in connection.execute(
            "select coalesce(persona, '(' || purpose || ')') from llm_calls")]
    assert isinstance(query, list) and {row["persona"] for row in query} == set(callers)
    assert sum(row["calls"] for row in query) == len(callers)
