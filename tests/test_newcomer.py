"""What a new user trips on in the first hour (issue 20), each through the real CLI in a
subprocess on a real SQLite file: `last` wherever a command takes a run, and listings that write
booleans as JSON does."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.state import TurnDone
from tests.cli_batch import run_batch
from tests.durable_support import run_to_end, scenario_text, start

pytestmark = pytest.mark.slow


@pytest.fixture
def three_runs(isolated_env: Path) -> Path:
    """Run 1 completed, run 2 interrupted after one turn, run 3 completed (the newest)."""
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 2}\n"), ScriptedBackend(default="Alpha point."))
    store, run_id, orchestrator = start(
        isolated_env, scenario_text("termination: {max_turns: 3}\n"), ScriptedBackend(default="Beta point.")
    )
    events = orchestrator.run(run_id)
    for event in events:
        if isinstance(event, TurnDone):
            break
    events.close()
    store.finish_run(run_id, "interrupted", stop_reason="interrupted")
    store.close()
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 2}\n"), ScriptedBackend(default="Gamma point."))
    return isolated_env


def test_last_names_the_newest_run_for_every_command_that_takes_one(
    three_runs: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    results = run_batch([
        ["graph", "last"], ["graph", "3"],
        ["replay", "last", "-f", "json"],
        ["search", "point", "--run", "last", "-f", "json"],
        ["score", "LAST", "-f", "json"],
        ["export", "last", "-f", "md"],
        ["graph", "lastt"],
    ], cli_env, tmp_path / "out")
    for result in results[:-1]:
        assert result.returncode == 0, (result.args, result.stderr)
    assert results[0].stdout == results[1].stdout and "Gamma point." in results[0].stdout
    assert json.loads(results[2].stdout)["run_id"] == 3
    hits = json.loads(results[3].stdout)
    assert hits and {h["run_id"] for h in hits} == {3}
    assert json.loads(results[4].stdout)["run"] == 3
    assert "Gamma point." in results[5].stdout
    bad = results[6]
    assert bad.returncode == 2 and "expected a run id or `last`, not 'lastt'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_resume_without_a_run_continues_the_newest_interrupted_one(
    three_runs: Path, cli_env: dict[str, str], tmp_path: Path, scripted_ollama_server: Any
) -> None:
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    [resumed, listing] = run_batch(
        [["resume", "--backend", "ollama", "--model", "smollm2:135m", "-q"], ["runs", "-f", "json"]],
        env, tmp_path / "out",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run 2 " in resumed.stdout
    statuses = {r["id"]: r["status"] for r in json.loads(listing.stdout)}
    assert statuses == {1: "completed", 2: "completed", 3: "completed"}


def test_resume_without_a_run_says_when_none_is_resumable(
    isolated_env: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 1}\n"), ScriptedBackend(default="A point."))
    [result] = run_batch([["resume"]], cli_env, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "has no interrupted or failed run to resume" in result.stderr
    assert "Traceback" not in result.stderr


def test_csv_and_tsv_write_booleans_as_json_does(
    three_runs: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv_out, tsv_out = run_batch(
        [["score", "1", "-f", "csv"], ["score", "1", "-f", "tsv"]], cli_env, tmp_path / "out"
    )
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert rows and {r["good"] for r in rows} <= {"true", "false"}
    assert {r["cut"] for r in rows} <= {"true", "false"}
    tsv_rows = list(csv.DictReader(io.StringIO(tsv_out.stdout), delimiter="\t"))
    assert [r["good"] for r in tsv_rows] == [r["good"] for r in rows]


def test_usage_errors_read_like_personae_own_errors(tmp_path: Path, cli_env: dict[str, str]) -> None:
    results = run_batch(
        [["runs", "--dv"], ["show", "1", "-f", "xml"], ["nosuch"], ["db", "nosuch"], ["run"]],
        cli_env, tmp_path / "out",
    )
    for result in results:
        assert result.returncode == 2, result
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "╭" not in result.stderr and "Traceback" not in result.stderr
        assert "--help`)." in result.stderr
    assert "No such option: --dv (Possible options: --db). Usage: personae runs [OPTIONS]" in results[0].stderr
    assert "'xml' is not one of" in results[1].stderr and "Value error" not in results[1].stderr
    assert "(see `personae db --help`)" in results[3].stderr


def test_scenario_names_get_a_did_you_mean(tmp_path: Path, cli_env: dict[str, str]) -> None:
    [result] = run_batch([["run", "cache-reviw"]], cli_env, tmp_path / "out")
    assert result.returncode == 2
    assert "Did you mean 'cache-review' (personae run cache-review)?" in result.stderr


def test_new_refuses_the_name_reserved_for_the_person_taking_part(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "personas"
    results = run_batch(
        [["new", "persona", name, "--folder", str(folder)] for name in ("User", "user", "ＵＳＥＲ")]
        + [["new", "scenario", "user", "--folder", str(tmp_path / "scenarios")]],
        cli_env, tmp_path / "out",
    )
    for result in results[:3]:
        assert result.returncode == 2, result
        assert "cannot name a persona: User is the person taking part" in result.stderr
    assert not folder.exists()
    assert results[3].returncode == 0, results[3].stderr  # a scenario may be called that


SMALL = "name: s\ngoal: Decide on a cache.\npersonas: [Planner, Critic]\nmemory: {num_ctx: 2048, collapse: null}\ntermination: {max_turns: 2}\n"


def test_the_model_is_checked_before_a_run_or_a_database_exists(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SMALL, encoding="utf-8")
    tight = tmp_path / "tight.yaml"  # fits no window: the run never starts
    tight.write_text(SMALL.replace("num_ctx: 2048", "num_ctx: 256").replace(
        "goal: Decide on a cache.", "goal: " + "Decide on the cache and its rollout plan. " * 60), encoding="utf-8")
    db = tmp_path / "db" / "p.db"
    db.parent.mkdir()
    served = {"OLLAMA_HOST": scripted_ollama_server.host}
    base = ["--backend", "ollama", "--db", str(db), "-q"]
    missing, interactive, silent, too_big = run_batch([
        {"args": ["run", str(path), "--model", "nosuch:1b", *base], "env": served},
        {"args": ["run", str(path), "--model", "nosuch:1b", "-i", *base], "env": served},
        ["run", str(path), "--model", "smollm2:135m", *base],  # OLLAMA_HOST: nothing answers
        {"args": ["run", str(tight), "--model", "smollm2:135m", *base], "env": served},
    ], cli_env, tmp_path / "out")
    for result in (missing, interactive):
        assert result.returncode == 1, result
        assert "does not have the model 'nosuch:1b'. Download it with: ollama pull nosuch:1b" in result.stderr
        assert "User>" not in result.stdout and "Traceback" not in result.stderr
    assert silent.returncode == 1 and "does not answer" in silent.stderr, silent
    assert too_big.returncode == 2 and "Traceback" not in too_big.stderr, too_big
    assert list(db.parent.iterdir()) == []  # no empty database left behind
    asked = [r.path for r in scripted_ollama_server.requests]
    assert "/api/show" in asked and "/api/chat" not in asked


def test_a_failed_run_says_why_and_reading_leaves_no_wal_files(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    from personae.errors import BackendError

    def fail(_request: object) -> str:
        raise BackendError("the model broke")

    scripted_ollama_server.backend.default = fail
    path = tmp_path / "s.yaml"
    path.write_text(SMALL, encoding="utf-8")
    db = tmp_path / "db" / "p.db"
    db.parent.mkdir()
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host, "PERSONAE_DB": str(db)}
    ran, listing, *reads = run_batch(
        [["run", str(path), "--backend", "ollama", "--model", "smollm2:135m", "-q"],
         ["runs", "-f", "tsv"], ["show", "last"], ["search", "cache"], ["score", "last"]],
        env, tmp_path / "out",
    )
    assert ran.returncode == 1
    [row] = list(csv.DictReader(io.StringIO(listing.stdout), delimiter="\t"))
    assert row["status"] == "failed" and "the model broke" in row["error"]
    assert "the model broke" in reads[0].stdout
    assert sorted(p.name for p in db.parent.iterdir()) == ["p.db"]


def test_listings_are_one_line_per_item_tsv_when_piped_and_hide_shadowed_builtins(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from tests.test_listing import in_terminal

    project = tmp_path / "proj"
    (project / "scenarios").mkdir(parents=True)
    (project / "personas").mkdir()
    builtin = Path(__file__).parent.parent / "personae" / "builtin"
    (project / "scenarios" / "cache-review.yaml").write_text(
        (builtin / "scenarios" / "cache-review.yaml").read_text(encoding="utf-8").replace(
            "documents: [docs/orders-api.md]", "documents: []"), encoding="utf-8")
    (project / "personas" / "critic.yaml").write_text(
        "name: Critic\ndescription: Our own critic.\nsystem: Find the flaw.\n", encoding="utf-8")
    sc, pe = ["--folder", str(project / "scenarios")], ["--folder", str(project / "personas")]
    piped, everything, as_json, people = run_batch(
        [["scenarios", *sc], ["scenarios", *sc, "--all", "-f", "csv"], ["scenarios", *sc, "-f", "json"],
         ["personas", *pe]], cli_env, tmp_path / "out",
    )
    screen = in_terminal("scenarios", *sc, env=cli_env, columns=80)
    rows = list(csv.DictReader(io.StringIO(piped.stdout), delimiter="\t"))
    builtins = len(list((builtin / "scenarios").glob("*.yaml")))
    assert [r["name"] for r in rows].count("cache-review") == 1
    local = str(project / "scenarios" / "cache-review.yaml")
    assert rows[0]["from"] == local and len(rows) == builtins  # the built-in is hidden
    every = list(csv.DictReader(io.StringIO(everything.stdout)))
    assert [(r["name"], r["from"], r["hidden"]) for r in every[:2]] == [
        ("cache-review", local, "false"), ("cache-review", "built-in", "true"),
    ]
    assert len(json.loads(as_json.stdout)) == builtins
    critics = [r for r in csv.DictReader(io.StringIO(people.stdout), delimiter="\t") if r["name"] == "Critic"]
    assert [r["from"] for r in critics] == [str(project / "personas" / "critic.yaml")]
    listed = [line for line in screen if line.strip()]
    assert all(len(line) <= 80 for line in screen)
    assert sum("cache-review" in line for line in listed) == 1 and any("…" in line for line in listed)


def test_runs_filter_by_scenario_status_and_model(three_runs: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    results = run_batch([
        ["runs", "--status", "interrupted", "-f", "json"],
        ["runs", "--status", "completed", "-n", "1", "-f", "json"],
        ["runs", "--scenario", "durable", "--model", "scripted", "-f", "json"],
        ["runs", "--scenario", "nope", "-f", "json"],
    ], cli_env, tmp_path / "out")
    ids = [[r["id"] for r in json.loads(r.stdout)] for r in results]
    assert ids == [[2], [3], [3, 2, 1], []]


def test_one_meaning_of_turn_everywhere(
    isolated_env: Path, cli_env: dict[str, str], tmp_path: Path, scripted_ollama_server: Any
) -> None:
    """A turn is a persona speaking (what max_turns counts); a message is a numbered line of the
    transcript, User's included. 3 turns and 1 User message are 4 messages, in every command."""
    text = scenario_text(
        'inputs: [{at_turn: 2, text: "Mind the budget."}]\ntermination: {max_turns: 3}\nmemory: {num_ctx: 2048}\n'
    )
    run_to_end(isolated_env, text, ScriptedBackend(default="A fresh point about the cache."))
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    listing, shown_text, md, as_json, resumed, fork_short, hit = run_batch([
        ["runs", "-f", "json"], ["show", "1"], ["show", "1", "-f", "md"], ["show", "1", "-f", "json"],
        ["resume", "1"],
        ["replay", "1", "--fork-at", "4", "--max-turns", "2", "--backend", "ollama", "--model", "smollm2:135m"],
        ["search", "budget", "-f", "json"],
    ], env, tmp_path / "out")
    [run] = json.loads(listing.stdout)
    assert (run["turns"], run["messages"]) == (3, 4)
    assert (json.loads(as_json.stdout)["run"]["turns"], json.loads(as_json.stdout)["run"]["messages"]) == (3, 4)
    assert "3 turns and 1 User message" in shown_text.stdout.splitlines()[0]
    assert "- length: 3 turns and 1 User message" in md.stdout
    # the hint's arithmetic: fork after message 4, and --max-turns counts turns (3 + 4)
    assert resumed.returncode == 2 and "(max_turns, 3 turns and 1 User message)" in resumed.stderr
    assert "personae replay 1 --fork-at 4 --max-turns 7" in resumed.stderr
    assert fork_short.returncode == 2, fork_short
    assert "--max-turns 2 is below the 3 turns that messages 1 to 4 hold" in fork_short.stderr
    [found] = [h for h in json.loads(hit.stdout) if h["where"] == "message"]
    assert (found["message"], found["persona"]) == (2, "User")


def test_help_has_no_integer_range_noise(tmp_path: Path, cli_env: dict[str, str]) -> None:
    helps = run_batch([["run", "--help"], ["runs", "--help"], ["replay", "--help"]], cli_env, tmp_path / "out")
    for result in helps:
        assert result.returncode == 0
        assert "range" not in result.stdout and "<=x" not in result.stdout, result.stdout
    assert "--retries" in helps[0].stdout and "<int>" in helps[0].stdout


def test_validate_prints_the_turn_plan_and_the_notes_a_run_would(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "name: plan\ngoal: Decide on a cache.\npersonas: [Planner, Analyst, Critic]\n"
        "policy:\n  type: phases\n  phases:\n"
        "    - {name: open, speakers: [Planner]}\n"
        "    - {name: debate, speakers: [Critic], rounds: 2}\n"
        "    - {name: close, speakers: [Analyst]}\n"
        'inputs: [{at_turn: 2, text: "Mind the budget."}]\n'
        "termination: {max_turns: 3}\n",
        encoding="utf-8",
    )
    [result] = run_batch([["validate", str(path)]], cli_env, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "open: Planner 1, User input (message 2, before turn 2)" in lines
    assert "debate: Critic 2, Critic 3" in lines
    assert "ends: max_turns 3 (in phase close)" in lines
    assert "Critic speaks twice in a row" in result.stderr
    assert "max_turns 3 stops it before phase 'close': its phases take 4 turns" in result.stderr


def test_shell_completion_offers_scenario_names_and_run_ids(
    three_runs: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    def completing(words: str) -> dict[str, Any]:
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        env = {"_PERSONAE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        return {"args": [], "env": env}

    scenario, show, search = run_batch(
        [completing("personae run cache-r"), completing("personae show "), completing("personae search x --run ")],
        cli_env, tmp_path / "out",
    )
    assert scenario.stdout.split() == ["cache-review"], scenario
    assert show.stdout.split() == ["last", "3", "2", "1"], show
    assert search.stdout.split() == ["last", "3", "2", "1"], search
    assert "Traceback" not in show.stderr + search.stderr


def test_the_live_stream_wraps_words_and_colours_speakers_as_show_does(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    import re

    import pexpect

    from tests.conftest import personae_cmd

    words = "cache invalidation after refunds decides the rollout of order reads"
    scripted_ollama_server.backend.default = " ".join([words] * 4) + "."
    path = tmp_path / "s.yaml"
    path.write_text(SMALL, encoding="utf-8")
    env = {k: v for k, v in cli_env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", OLLAMA_HOST=scripted_ollama_server.host)
    command = personae_cmd("run", str(path), "--backend", "ollama", "--model", "smollm2:135m")
    child = pexpect.spawn(command[0], command[1:], env=env, dimensions=(60, 50), encoding="utf-8", timeout=120)
    raw = child.read()
    child.close()
    assert child.exitstatus == 0, raw
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).replace("\r\n", "\n").replace("\r", "")
    whole = set(words.split()) | {"reads."}
    reply = [line for line in plain.split("\n") if sum(t in whole for t in line.split()) >= 3]
    assert len(reply) >= 5  # four copies of the sentence need several 50-column lines
    assert all(len(line) <= 50 for line in reply), [line for line in reply if len(line) > 50]  # wrapped
    assert all(set(line.split()) <= whole for line in reply), reply  # no word split in two
    # Planner and Critic in their own colours, as `show` gives them (cyan, magenta)
    assert re.search(r"\x1b\[1;36m1\. Planner", raw) and re.search(r"\x1b\[1;35m2\. Critic", raw), raw[:2000]
