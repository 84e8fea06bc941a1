"""How `runs`, `show`, `search` and `replay` print: whole values when piped (TSV by default; CSV
and JSON on request), a table that fits an 80-column terminal, FTS5 query syntax in `search` with
a literal fallback, and identical hits grouped. The CLI runs as a subprocess on a real SQLite file;
terminal cases run under a pseudo-terminal (pexpect)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pexpect
import pytest

from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.replay import fork_run
from tests.conftest import personae_cmd
from tests.durable_support import run_to_end, scenario_text

LONG_NAME = "office-coffee-machine-replacement-review"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(personae_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def in_terminal(*args: str, env: dict[str, str], columns: int = 80) -> list[str]:
    """The screen lines of `personae ARGS` in a pseudo-terminal `columns` wide."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(
        personae_cmd()[0], personae_cmd(*args)[1:], env=env, dimensions=(50, columns),
        encoding="utf-8", timeout=60,
    )
    output = child.read()
    child.close()
    assert child.exitstatus == 0, output
    return [ANSI.sub("", line) for line in output.replace("\r\n", "\n").split("\n")]


@pytest.fixture
def stored(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three runs: a long scenario name on a GGUF-path model, a plain one, and a fork of it; the
    first two import one document (the fork reloads its scenario from the working folder)."""
    monkeypatch.chdir(isolated_env.parent)
    replies = [
        "We should add a read replica before anything else.",
        "The p99 latency is 900 ms; Redis would cut it.",
        "Cache invalidation is the risk.\tTabs\nand lines stay in one TSV record.",
    ]
    (isolated_env.parent / "notes.md").write_text(
        "# Notes\n\nThe orders API runs on Postgres with a Memcached tier in front.\n", encoding="utf-8"
    )
    docs = "documents: [notes.md]\n"
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 3}\n" + docs, name=LONG_NAME),
               ScriptedBackend(replies, model="/models/deep/folder/SmolLM2-135M-Instruct.Q8_0.gguf"))
    store, parent = run_to_end(isolated_env, scenario_text("termination: {max_turns: 3}\n" + docs), ScriptedBackend(replies))
    fork = fork_run(store, parent, 2, ScriptedBackend(["A different third turn."]))
    for _ in fork.orchestrator.run(fork.run_id):
        pass
    store.close()
    return isolated_env


@pytest.mark.slow
def test_piped_runs_are_whole_tab_separated_values(stored: Path, cli_env: dict[str, str]) -> None:
    result = cli("runs", env=cli_env)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["id", "scenario", "model"]
    rows = [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]
    assert [r["id"] for r in rows] == ["3", "2", "1"]
    first = rows[-1]
    assert first["scenario"] == LONG_NAME  # not "offic…"
    assert first["model"] == "/models/deep/folder/SmolLM2-135M-Instruct.Q8_0.gguf"
    assert [line for line in lines if "coffee" in line] == [lines[-1]]  # `runs | grep coffee`
    assert (rows[0]["parent_run_id"], rows[0]["fork_turn"]) == ("2", "2")
    assert cli("runs", "-n", "1", env=cli_env).stdout.count("\n") == 2  # header and the newest


@pytest.mark.slow
def test_runs_csv_and_json(stored: Path, cli_env: dict[str, str]) -> None:
    as_csv = list(csv.DictReader(io.StringIO(cli("runs", "--format", "csv", env=cli_env).stdout)))
    assert [r["scenario"] for r in as_csv] == ["durable", "durable", LONG_NAME]
    as_json = json.loads(cli("runs", "-f", "json", "-n", "2", env=cli_env).stdout)
    assert [r["id"] for r in as_json] == [3, 2] and as_json[0]["parent_run_id"] == 2


@pytest.mark.slow
def test_runs_fits_an_80_column_terminal(stored: Path, cli_env: dict[str, str]) -> None:
    screen = in_terminal("runs", env=cli_env, columns=80)
    text = "\n".join(screen)
    assert all(len(line) <= 80 for line in screen), text
    assert "…" not in text  # folded, never cut to "offic…"
    header = next(line for line in screen if line.strip().startswith("id"))
    for column in ("scenario", "turns", "status", "started"):
        assert column in header, text
    first = [line for line in screen if re.match(r"\s*1\s", line)][0]
    assert "completed" in first and "office-" in first
    folded = "".join(line[header.index("scenario"):].split()[0] for line in screen[screen.index(first):][:4]
                     if line[header.index("scenario"):].strip())
    assert folded.startswith(LONG_NAME), text
    assert "3 ← 2@2" in text
    wide = "\n".join(in_terminal("runs", env=cli_env, columns=160))
    assert "SmolLM2-135M-Instruct.Q8_0.gguf" in wide and "tokens" in wide


@pytest.mark.slow
def test_show_formats_turn_and_last(stored: Path, cli_env: dict[str, str]) -> None:
    tsv = cli("show", "1", "-f", "tsv", env=cli_env).stdout.splitlines()
    assert len(tsv) == 4  # header and three turns, each one line
    third = dict(zip(tsv[0].split("\t"), tsv[3].split("\t")))
    assert third["content"] == "Cache invalidation is the risk.\\tTabs\\nand lines stay in one TSV record."
    rows = list(csv.DictReader(io.StringIO(cli("show", "1", "-f", "csv", env=cli_env).stdout)))
    assert rows[2]["content"].endswith("and lines stay in one TSV record.") and "\n" in rows[2]["content"]
    one = cli("show", "1", "--turn", "2", env=cli_env)
    assert "p99 latency" in one.stdout and "read replica" not in one.stdout
    assert cli("show", "last", env=cli_env).stdout.startswith("Run 3 ")
    assert cli("show", "--last", "-f", "json", env=cli_env).stdout.count('"turn"') == 3
    missing = cli("show", "1", "--turn", "9", env=cli_env)
    assert missing.returncode == 2 and "has no message 9" in missing.stderr
    bad = cli("show", "newest", env=cli_env)
    assert bad.returncode == 2 and "run id or `last`" in bad.stderr and "Traceback" not in bad.stderr
    memory_md = cli("show", "1", "--memory", "-f", "md", env=cli_env)
    assert memory_md.returncode == 2 and "--format text or --format json" in memory_md.stderr


@pytest.mark.slow
def test_show_colours_each_persona_in_a_terminal_only(stored: Path, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "COLUMNS"}
    child = pexpect.spawn(personae_cmd()[0], personae_cmd("show", "1")[1:], env={**env, "TERM": "xterm-256color"},
                          dimensions=(50, 100), encoding="utf-8", timeout=60)
    raw = child.read()
    child.close()
    colours = {m.group(1): m.group(2) for m in re.finditer(r"\x1b\[([0-9;]+)m(Planner|Analyst|Critic)\x1b", raw)}
    assert len(set(colours)) == 3, raw  # three personas, three different styles
    no_colour = pexpect.spawn(personae_cmd()[0], personae_cmd("show", "1")[1:],
                              env={**env, "TERM": "xterm-256color", "NO_COLOR": "1"},
                              dimensions=(50, 100), encoding="utf-8", timeout=60)
    plain = no_colour.read()
    no_colour.close()
    assert "Planner" in plain and not re.search(r"\x1b\[[0-9;]*3\dm", plain)  # NO_COLOR: no colours
    piped = cli("show", "1", env=cli_env).stdout
    assert "\x1b[" not in piped and "[1] Planner:" in piped


@pytest.mark.slow
def test_search_takes_fts5_syntax(stored: Path, cli_env: dict[str, str]) -> None:
    def turns(query: str) -> set[tuple[str, str]]:
        result = cli("search", query, "-f", "tsv", "--run", "1", env=cli_env)
        assert "Traceback" not in result.stderr
        header, *lines = result.stdout.splitlines() or [""]
        rows = [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]
        return {(r["run_id"], r["message"]) for r in rows if r["where"] == "message"}

    assert turns("p99") == {("1", "2")}
    assert turns('"read replica"') == {("1", "1")}
    assert turns('p99 OR "read replica"') == {("1", "1"), ("1", "2")}
    assert turns("cach*") == {("1", "3")}
    assert turns("risk NOT invalidation") == set()
    assert turns("NEAR(cache risk, 3)") == {("1", "3")}
    # Not FTS5: searched as the words themselves, never an error.
    assert turns('"read replica') == {("1", "1")}
    assert turns("p99-latency") == {("1", "2")}
    assert turns("latency:") == {("1", "2")}
    assert turns("AND") == {("1", "3")}  # a lone operator is the word "and"
    nothing = cli("search", "zebra OR", env=cli_env)
    assert nothing.returncode == 1 and "Nothing matches" in nothing.stderr and "Traceback" not in nothing.stderr


@pytest.mark.slow
def test_search_groups_identical_hits(stored: Path, cli_env: dict[str, str]) -> None:
    """The same reply in runs 1 and 2, and copied into run 3 (a fork of 2): one hit, three runs;
    run 3's own third turn is a hit of its own."""
    result = cli("search", "p99 OR different", "-f", "json", env=cli_env)
    hits = [h for h in json.loads(result.stdout) if h["where"] == "message"]
    assert len(hits) == 2, hits
    grouped = [h for h in hits if h["also_in_runs"]]
    assert len(grouped) == 1 and sorted([grouped[0]["run_id"], *grouped[0]["also_in_runs"]]) == [1, 2, 3]
    assert [h["run_id"] for h in hits if not h["also_in_runs"]] == [3]
    line, hint = [ln for ln in cli("search", "p99", env=cli_env).stdout.splitlines() if ln.strip()]
    assert "also in 2 other runs" in line and "message 2 · Analyst: [p99]" not in line
    assert hint == "Open a hit with: personae show 1 --message 2"
    passages = json.loads(cli("search", "memcached", "-f", "json", env=cli_env).stdout)
    assert {h["where"] for h in passages} == {"memory"}
    kinds = [h["kind"] for h in passages]
    assert len(kinds) == len(set(kinds)), passages  # each passage once, not once per run
    assert len(passages) == 1 and {1, 2} <= {passages[0]["run_id"], *passages[0]["also_in_runs"]}
    ungrouped = cli("search", "p99", "-f", "json", "--run", "2", env=cli_env)
    assert [h["run_id"] for h in json.loads(ungrouped.stdout)] == [2]


@pytest.mark.slow
def test_replay_tsv_has_one_row_per_call(stored: Path, cli_env: dict[str, str]) -> None:
    result = cli("replay", "1", "-f", "tsv", env=cli_env)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split("\t") == ["call_id", "turn", "purpose", "persona", "prompt_hash", "identical"]
    assert [line.split("\t")[1] for line in lines] == ["1", "2", "3"]
    text = cli("replay", "1", env=cli_env).stdout
    assert "3 messages, 3 model calls (3 calls for turns)" in text
