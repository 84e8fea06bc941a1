"""Untrusted text reaches the terminal inert (issue 11, defect 2): ``personae/cli/terminal.py``, and
every command that prints replies, documents, inputs, names or errors, run as a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personae.cli.terminal import inert
from tests.cli_batch import Result, run_batch
from tests.conftest import personae_cmd

# What must never reach a terminal raw: C0 controls but \t and \n, DEL, C1, U+2028/2029, the
# bidi embeddings, overrides, isolates and marks, lone surrogates.
RAW = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)

OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # write "echo pwned" to the clipboard
CLEAR = "\x1b[2J\x1b[H"
LINK = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
DCS = "\x1bP+q544e\x1b\\"
HOSTILE = [OSC52, CLEAR, LINK, DCS, "ok\rOVERWRITTEN", "\x9b2J", "a\x85b", "a\u2028b\u2029c",
           "\u202eevil\u202c", "\u2066iso\u2069", "\x00\x07\x08\x7f", "\udcff"]


@pytest.mark.parametrize("text", HOSTILE, ids=ascii)
def test_inert_leaves_nothing_a_terminal_would_obey(text: str) -> None:
    shown = inert(text)
    assert not RAW.search(shown)
    assert len(shown) >= len(text.replace("\r\n", "\n"))  # shown, not dropped


def test_inert_shows_what_it_replaced() -> None:
    assert inert(CLEAR) == "␛[2J␛[H"
    assert inert("ok\rOVER") == "ok␍OVER"
    assert inert("line\r\nnext\ttab") == "line\nnext\ttab"  # CRLF is a line break; tab stays
    assert inert("\u202eabc") == "\\u202eabc"
    assert inert("\x9b") == "\\u009b"
    assert inert("Grüße, Критик, 批评者 🙂") == "Grüße, Критик, 批评者 🙂"


def test_inert_keeps_a_json_document_the_same_data() -> None:
    data = {"text": "".join(HOSTILE[:-1]) + "\\" + "\u202e", "name": "Crit\u2028ic"}
    document = json.dumps(data, ensure_ascii=False)
    shown = inert(document)
    assert not RAW.search(shown)
    assert json.loads(shown) == data


def test_inert_escapes_rich_markup_when_asked() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, emoji=False)
    console.print(inert("[bold red]x[/] [link=http://evil]y[/link] :smile:", markup=True))
    assert console.export_text().strip() == "[bold red]x[/] [link=http://evil]y[/link] :smile:"


# -- every command, as a subprocess, over a run full of hostile text ---------------------------

HOSTILE_REPLY = (
    f"zebra plan {OSC52} then {CLEAR} and {LINK}\rOVERWRITTEN \x9b2J \u202eevil\u202c "
    "[bold red]markup[/] [link=http://evil.example]link[/link] :smile:\u2028next\x85line"
)
HOSTILE_DOC = f"# Notes {CLEAR}\n\nzebra crossing {OSC52} {DCS} \u202eabc\u202c\rOVER \x9b31m\n"
HOSTILE_INPUT = f"zebra input {CLEAR}{OSC52}\u2066x\u2069\x7f"


def hostile_scenario(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.md").write_text(HOSTILE_DOC, encoding="utf-8", newline="")
    critic = "Crit\u202eic"  # bidi in a name is allowed (it is visible), and shown escaped
    lines = [
        f"name: {json.dumps('cache ' + chr(0x202e) + 'review [bold]x[/]')}",
        f"goal: {json.dumps('Decide ' + OSC52 + CLEAR)}",
        f"context: {json.dumps(LINK + ' ' + DCS)}",
        "documents: [notes.md]",
        "personas:",
        f"  - {{name: Planner, description: {json.dumps('[link=http://evil]x[/link]' + CLEAR)}, system: s}}",
        f"  - {{name: {json.dumps(critic)}, system: s}}",
        "policy:",
        "  type: phases",
        f"  phases: [{{name: {json.dumps('de' + chr(0x202e) + 'bate')}, speakers: [Planner, {json.dumps(critic)}], rounds: 2}}]",
        "memory: {num_ctx: 2048, collapse: null}",
        "termination: {max_turns: 3}",
        f"inputs: [{{at_turn: 1, text: {json.dumps(HOSTILE_INPUT)}, pin: true}}]",
    ]
    path = folder / "hostile.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def scripted_server(scripted_ollama_server: Any) -> Any:
    scripted_ollama_server.backend.default = HOSTILE_REPLY
    return scripted_ollama_server


@pytest.fixture
def scripted_ollama(scripted_server: Any) -> str:
    return str(scripted_server.host)


def assert_inert(result: Result | subprocess.CompletedProcess[str], *, code: int = 0) -> None:
    for stream in (result.stdout, result.stderr):
        raw = RAW.search(stream)
        assert raw is None, (result.args, repr(stream[max(0, raw.start() - 40) : raw.end() + 40]))
        assert "Traceback" not in stream, (result.args, stream)
    assert result.returncode == code, (result.args, result.stdout, result.stderr)


COMMANDS = [
    ["show", "1"], ["show", "1", "--format", "md"], ["show", "1", "--thoughts"],
    ["show", "1", "--format", "json"], ["show", "1", "--memory"],
    ["show", "1", "--memory", "--format", "json"], ["runs"], ["runs", "--format", "json"],
    ["search", "zebra"], ["graph", "1", "--format", "mermaid"], ["graph", "1", "--format", "dot"],
    ["graph", "1", "--format", "json"], ["graph", "1", "--format", "graphml"],
]


@pytest.mark.slow
def test_every_command_prints_hostile_text_inert(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama: str
) -> None:
    scenario = hostile_scenario(tmp_path / "project")
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama, "COLUMNS": "500"}  # table cells unwrapped
    folder = tmp_path / "personas"
    folder.mkdir()
    description = json.dumps("[link=http://evil.example]click[/link] " + CLEAR + OSC52)
    (folder / "reviewer.yaml").write_text(f"name: Reviewer\ndescription: {description}\nsystem: s\n")
    run = ["run", str(scenario), "--backend", "ollama", "--model", "smollm2:135m"]
    results = run_batch([run, *COMMANDS, ["personas", "--folder", str(folder)]], env, tmp_path / "out")
    for result in results:
        assert_inert(result)
    out = {" ".join(r.args[:4]): r.stdout for r in results}
    ran = results[0].stdout
    assert "zebra plan ␛]52;c;" in ran  # streamed, shown, not obeyed
    assert "[bold red]markup[/]" in ran and ":smile:" in ran  # not rich markup, not an emoji
    assert "Crit\\u202eic" in ran and "de\\u202ebate" in ran
    assert "zebra input ␛[2J" in out["show 1"] and "OVERWRITTEN" in out["show 1"]
    stored = json.loads(out["show 1 --format json"])
    assert stored["messages"][0]["content"] == HOSTILE_INPUT  # JSON keeps the data exactly
    assert "\u202e" in stored["messages"][1]["content"]
    assert "zebra input ␛[2J" in out["show 1 --memory"]  # the pinned input is a fact
    assert "cache \\u202ereview [bold]x[/]" in out["runs"]
    assert json.loads(out["runs --format json"])[0]["scenario_name"].startswith("cache \u202e")
    assert "crossing" in out["search zebra"] and "plan" in out["search zebra"]
    # piped, the listing is TSV: the escape is written as \x1b, not obeyed, markup not applied
    assert "[link=http://evil.example]click[/link] \\x1b[2J" in results[-1].stdout


@pytest.mark.slow
def test_run_streams_inert_in_its_own_process(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama: str
) -> None:
    """The same as above for `run` alone, as a plain subprocess: nothing in the batch runner
    hides a difference."""
    scenario = hostile_scenario(tmp_path / "project")
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama}
    result = subprocess.run(
        personae_cmd("run", str(scenario), "--backend", "ollama", "--model", "smollm2:135m"),
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert_inert(result)
    assert "zebra plan ␛]52;c;" in result.stdout


@pytest.mark.slow
def test_errors_that_quote_a_file_print_it_inert(tmp_path: Path, cli_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"name: s\ngoal: g\npersonas: [{json.dumps('Crit' + OSC52 + 'ic')}]\n"
        f"termination: {{max_turns: {json.dumps(CLEAR + '[bold]x')}}}\n",
        encoding="utf-8",
    )
    for command in (["validate", str(bad)], ["run", str(bad)]):
        result = subprocess.run(personae_cmd(*command), capture_output=True, text=True, env=cli_env, timeout=60)
        assert_inert(result, code=2)
        assert "bad.yaml" in result.stderr and "␛" in result.stderr


# -- the property: any text, anywhere, and the terminal sees nothing it would obey -------------

PIECES = [*HOSTILE[:-1], "\x1b", "\x1b[", "\x1b]", "\x1bP", "\x07", "\r", "\r\n", "\u200b",
          "\u200d", "\ufeff", "\u061c", "\u200e", "\u200f", "[bold]", "[/]", "[link=x]", ":smile:",
          "Critic:", "\nUser: ", "<|im_end|>", "\\", '"', "'", "#", "{{ x }}"]
hostile_text = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(st.characters(exclude_categories=["Cs"]), max_size=4)),
    max_size=8,
).map("".join)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    scenario_name=hostile_text, persona_name=hostile_text, phase_name=hostile_text,
    reply=hostile_text, document=hostile_text, typed_input=hostile_text,
)
def test_any_text_anywhere_reaches_the_terminal_inert(
    tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str], scripted_server: Any,
    scenario_name: str, persona_name: str, phase_name: str, reply: str, document: str,
    typed_input: str,
) -> None:
    """Arbitrary names (valid or not: a refusal quotes them), replies, documents and inputs,
    through run, show, show --memory, runs, search and graph --format mermaid."""
    folder = tmp_path_factory.mktemp("any")
    scripted_server.backend.default = f"zebra {reply}"
    (folder / "doc.md").write_text(f"zebra {document}", encoding="utf-8")
    persona = json.dumps("P" + persona_name)
    lines = [
        f"name: {json.dumps('S' + scenario_name)}", "goal: g", "documents: [doc.md]",
        f"personas: [{{name: {persona}, system: s}}, {{name: Critic, system: s}}]",
        f"policy: {{type: phases, phases: [{{name: {json.dumps('p' + phase_name)}, speakers: [{persona}, Critic]}}]}}",
        "memory: {num_ctx: 2048, collapse: null}", "termination: {max_turns: 2}",
        f"inputs: [{{at_turn: 1, text: {json.dumps('zebra ' + typed_input)}, pin: true}}]",
    ]
    (folder / "s.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**cli_env, "OLLAMA_HOST": scripted_server.host, "PERSONAE_DB": str(folder / "p.db")}
    commands = [
        ["run", str(folder / "s.yaml"), "--backend", "ollama", "--model", "smollm2:135m"],
        ["show", "1"], ["show", "1", "--memory"], ["runs"], ["search", "zebra"],
        ["graph", "1", "--format", "mermaid"],
    ]
    results = run_batch(commands, env, folder / "out")
    loaded = results[0].returncode == 0
    for result in results:
        assert_inert(result, code=result.returncode)  # no raw controls, no traceback
        assert result.returncode in ((0,) if loaded else (0, 1, 2)), result
    if not loaded:  # a name was refused, in one paragraph naming the file
        assert results[0].returncode == 2 and "s.yaml" in results[0].stderr, results[0]
