"""Bad input never crashes (property-based, with hypothesis).

Thousands of generated and mutated YAML documents go to the loader: a scenario either loads or
fails with ``ConfigError`` naming the file — never any other exception. Malformed model output
goes to the reply parser and the structured-reply parser: unclosed thinking tags, broken and
truncated JSON, other personas' name prefixes, empty, huge and control-character strings. They
must always return, with the guarantees the transcript relies on.
"""

from __future__ import annotations

import json
import random
import re
import string
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from personae.replies import structured
from personae.replies.parsing import parse_reply
from personae.config import builtin_dir, load_scenario_text, validate_file
from personae.config.models import Persona, Scenario
from personae.errors import ConfigError
from personae.orchestrator.state import TurnPlan
from personae.orchestrator.turns import interpret

LABEL = "fuzz.yaml"
LOOSE: dict[str, Any] = {"deadline": None, "suppress_health_check": list(HealthCheck)}
MANY = settings(max_examples=1000, **LOOSE)


def two_strengths(examples: int, *strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], tuple[Any, Any]]:
    """One property as two tests: ``examples`` examples in the slow tier, a tenth of them in the
    fast one, so the fast tier still tries every property while the slow tier keeps full strength."""

    def make(check: Callable[..., None]) -> tuple[Any, Any]:
        full = pytest.mark.slow(settings(max_examples=examples, **LOOSE)(given(*strategies)(check)))
        quick = settings(max_examples=examples // 10, **LOOSE)(given(*strategies)(check))
        return full, quick

    return make


def load(text: str, base: Path) -> None:
    """The loader's contract: a result, or our own error naming the file."""
    try:
        load_scenario_text(text, path=Path(LABEL), base_dir=base)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(LABEL), message
        assert "Traceback" not in message and message.strip()
        assert getattr(exc, "file", None) == LABEL
        line = getattr(exc, "line", None)
        assert line is None or line >= 1


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario folder with a document and a persona file, so valid documents can load."""
    folder = tmp_path_factory.mktemp("scenario")
    (folder / "notes.md").write_text("# Notes\nThe p99 is 900 ms.\n")
    (folder / "personas").mkdir()
    (folder / "personas" / "sage.yaml").write_text("name: Sage\nsystem: Think slowly.\n")
    (folder.parent / "outside.md").write_text("secret")
    (folder / "out.md").symlink_to(folder.parent / "outside.md")  # a link leading out
    (folder / "loop.md").symlink_to(folder / "loop.md")  # a link to itself
    return folder


# -- generated documents -----------------------------------------------------------------------

SCENARIO_KEYS = sorted(Scenario.model_fields)
PERSONA_KEYS = sorted(Persona.model_fields)
NESTED_KEYS = [
    "type", "phases", "speakers", "rounds", "repeat", "num_ctx", "collapse", "at_fraction",
    "keep_recent", "summarizer", "every_turns", "max_turns", "stop_phrase", "temperature",
    "num_predict", "seed", "stop", "name", "system", "extends",
]
NAMES = ["Planner", "Analyst", "Critic", "Summarizer", "Sage", "Critc", "User", ""]
TRICKY_STRINGS = [
    "notes.md", "../notes.md", "/etc/passwd", "~/x.md", "~nosuchuser/x.md", "a\x00b", "x" * 5000,
    "phases", "round_robin", "router", "reflect", "!!python/object:os.system", "{{ 7*7 }}",
    "%s%n", "\ud7ff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", ".", "..", "", " ", "\t", "null", "-1",
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY_STRINGS + NAMES), st.text(max_size=30),
)
keys = st.one_of(st.sampled_from(SCENARIO_KEYS + PERSONA_KEYS + NESTED_KEYS), st.text(max_size=12), st.integers(-3, 3))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)
documents = st.dictionaries(st.sampled_from(SCENARIO_KEYS + ["goall", "persona"]), values, max_size=9)


def scenario_like(data: dict[str, Any]) -> dict[str, Any]:
    """Push half the documents towards validity, so validation runs deep, not just at the top."""
    out = {"name": "fuzz", "goal": "Decide.", "personas": ["Planner", "Critic"]}
    out.update(data)
    return out


def generated_document_loads(base: Path, data: dict, nudge: bool) -> None:
    text = yaml.safe_dump(scenario_like(data) if nudge else data, allow_unicode=True)
    load(text, base)


test_generated_documents_load_or_fail_with_a_config_error, test_generated_documents_quick = two_strengths(
    1000, documents, st.booleans()
)(generated_document_loads)


@MANY
@given(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"%@`#,?\n\t \\") + list("abcxyz019") + ["\x00", "\u2028", "\ufeff", "é"]), max_size=200))
@example("personas: [Planner]\ngoal: g\nname: n\n\x00")
@example("name: &a x\ngoal: *a\npersonas: [*a]")
@example("a: !!python/object/apply:os.system ['echo hi']")
@example("- - - -")
@example("name: x\nname: y\n")
@example("goal: " + "[" * 10000)
def test_random_text_loads_or_fails_with_a_config_error(base: Path, text: str) -> None:
    load(text, base)


PATHS = st.one_of(
    st.sampled_from(TRICKY_STRINGS + ["notes.md", "./notes.md", "personas/sage.yaml", "personas", "out.md", "loop.md"]),
    st.lists(st.sampled_from(["..", ".", "notes.md", "personas", "~", "", "a\x00", "x" * 300, "loop.md", "out.md"]), min_size=1, max_size=5).map("/".join),
    st.text(max_size=40),
)


def document_paths_resolve(base: Path, documents: list[str]) -> None:
    """Whatever a scenario names as documents, they load only from inside its folder."""
    text = yaml.safe_dump({"name": "d", "goal": "g", "personas": ["Critic"], "documents": documents})
    try:
        loaded = load_scenario_text(text, path=Path(LABEL), base_dir=base)
    except ConfigError as exc:
        assert str(exc).startswith(LABEL) and "documents" in str(exc), str(exc)
        return
    root = base.resolve()
    assert all(doc.is_file() and doc.is_relative_to(root) for doc in loaded.documents)


test_document_paths_resolve_inside_the_folder_or_fail_cleanly, test_document_paths_quick = two_strengths(
    1000, st.lists(PATHS, max_size=4)
)(document_paths_resolve)


# -- mutated valid documents ------------------------------------------------------------------


def valid_documents() -> list[str]:
    examples = [p.read_text(encoding="utf-8") for p in sorted((builtin_dir() / "scenarios").glob("*.yaml"))]
    examples.append(
        "name: inline\ngoal: Decide.\ndocuments: [notes.md]\npersonas:\n"
        "  - {name: Sage, extends: Sage, options: {temperature: 0.2}}\n"
        "  - {name: Critic, system: Attack., options: {num_predict: 40, stop: [END]}}\n"
        "policy: {type: round_robin, speakers: [Critic, Sage]}\n"
        "memory: {num_ctx: 2048, collapse: {at_fraction: 0.5, summarizer: Critic}}\n"
        "termination: {max_turns: 4, stop_phrase: DONE}\n"
    )
    return examples


VALID = valid_documents()
YAML_NOISE = list(":-[]{}&*!|>'\"%@#,?\n\t ") + ["  ", "\n  ", "- ", ": ", "!!", "&a ", "*a", "---\n", "\x00"]


def mutate(text: str, rng: random.Random, steps: int) -> str:
    for _ in range(steps):
        if not text:
            return rng.choice(YAML_NOISE)
        i = rng.randrange(len(text))
        j = min(len(text), i + rng.randint(1, 12))
        lines = text.splitlines(keepends=True)
        action = rng.randrange(8)
        if action == 0:
            text = text[:i] + text[j:]  # delete
        elif action == 1:
            text = text[:i] + rng.choice(YAML_NOISE) + text[i:]  # insert YAML syntax
        elif action == 2:
            text = text[:i] + rng.choice(string.printable) + text[j:]  # replace
        elif action == 3 and lines:  # duplicate a line
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            text = "".join(lines)
        elif action == 4 and len(lines) > 1:  # swap two lines
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            text = "".join(lines)
        elif action == 5 and lines:  # re-indent a line
            k = rng.randrange(len(lines))
            lines[k] = " " * rng.choice([0, 1, 2, 3, 4, 8]) + lines[k].lstrip(" ")
            text = "".join(lines)
        elif action == 6:
            text = text[:i]  # truncated file
        else:  # a value swapped for a tricky one
            text = re.sub(r"(:\s*)(\S[^\n]*)", lambda m: m.group(1) + json.dumps(rng.choice(TRICKY_STRINGS)), text, count=1)
    return text


def mutated_scenario_loads(base: Path, which: int, seed: int, steps: int) -> None:
    text = mutate(VALID[which], random.Random(seed), steps)
    builtin = builtin_dir() / "scenarios"
    load(text, builtin if which < len(VALID) - 1 else base)


test_mutated_scenarios_load_or_fail_with_a_config_error, test_mutated_scenarios_quick = two_strengths(
    1000, st.sampled_from(range(len(VALID))), st.integers(0, 2**32 - 1), st.integers(1, 6)
)(mutated_scenario_loads)


def validate_file_returns(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("v") / LABEL
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        validate_file(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


test_validate_file_never_crashes, test_validate_file_quick = two_strengths(
    400, st.one_of(documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=120))
)(validate_file_returns)


# -- malformed model output ------------------------------------------------------------------------

ROSTER = ["Planner", "Analyst", "Critic", "Аналитик"]
PIECES = [
    "<thinking>", "</thinking>", "<think>", "</think>", "<THINK >", "</ thinking>", "Critic:",
    "\nCritic:", "\n**Analyst** (debate):", "\nUser:", "\n[Planner]:", "Planner:", "\nАналитик:",
    "\n  Critic (plan):", "{", "}", "[", "]", '"', '{"summary": "', "\x00", "\x07", "\x1b[31m",
    "\u202e", "\r\n", "\n", " ", "*", "#", ":", "FINAL DECISION:", "ok", "the p99", "😀",
]
replies = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=30).map("".join),
)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
OPENER = re.compile(r"<(thinking|think)>", re.IGNORECASE)


BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c != "\n")


def speaks_as(line: str, name: str) -> bool:
    """Whether a line reads as ``Name:`` — blank space, markup (``**``, ``[``, ``#``) and a
    ``(phase)`` allowed around the name — written independently of the parser's pattern."""

    def blank(text: str) -> str:
        return text.lstrip(BLANKS)

    rest = blank(line)
    marks = rest.lstrip("*_[#")
    if marks != rest:
        rest = blank(marks)
    if not rest.lower().startswith(name.lower()):
        return False
    rest = blank(blank(rest[len(name):]).lstrip("*_]"))
    if rest.startswith("("):
        close = rest.find(")")
        if close < 0:
            return False
        rest = blank(rest[close + 1 :])
    return rest.lstrip("*_").startswith(":")


def reply_parser_returns_a_clean_message(raw: str, speaker: str) -> None:
    parsed = parse_reply(raw, speaker, ROSTER)
    assert isinstance(parsed.content, str) and parsed.content == parsed.content.strip()
    assert not CONTROL.search(parsed.content)
    assert not OPENER.search(parsed.content)  # thinking never leaks into what others read
    others = [n for n in [*ROSTER, "User"] if n != speaker]
    for line in parsed.content.splitlines():
        assert not any(speaks_as(line, name) for name in others), (raw, parsed)
    assert len(parsed.content) <= len(raw)


test_reply_parser_always_returns_a_clean_message, test_reply_parser_quick = two_strengths(
    3000, replies, st.sampled_from(ROSTER)
)(reply_parser_returns_a_clean_message)


SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["summary"],
}
UNTYPED = {"properties": {"summary": {"type": "string"}}}  # a user's schema without "type"


def json_damage(data: Any, rng: random.Random) -> str:
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5)
    if text and rng.random() < 0.7:
        text = text[: rng.randrange(len(text) + 1)]  # truncated, as num_predict does
    if rng.random() < 0.3:
        text = rng.choice(PIECES) + text + rng.choice(PIECES)
    return text


def structured_reply_parses(data: Any, seed: int, schema: dict[str, Any]) -> None:
    raw = json_damage(data, random.Random(seed))
    output = interpret(raw, TurnPlan("Critic", schema=schema), ROSTER)
    assert isinstance(output.content, str)
    if output.structured is None:
        assert output.meta and output.meta.get("structured_error")
    else:
        assert isinstance(output.structured, dict)
        assert structured.validate(output.structured, schema) == []


test_structured_replies_never_crash, test_structured_replies_quick = (
    example([1, 2], 0, UNTYPED)(example({"summary": "s"}, 0, UNTYPED)(test))
    for test in two_strengths(1500, values, st.integers(0, 2**32 - 1), st.sampled_from([SCHEMA, UNTYPED]))(
        structured_reply_parses
    )
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "raw",
    [
        "<think>" * 20_000,
        "<thinking>" + "x" * 500_000,
        "</think>" * 20_000 + "answer",
        " " * 200_000 + "Critic",
        "Critic" + " " * 200_000 + "x",
        "*" * 200_000 + "Critic:",
        "Critic" + "*" * 100_000 + " " * 100_000,
        ("Planner (" + "(" * 1000) * 100,
        "\n".join(["Critic ***   ___ ]] (phase)"] * 20_000),
        "[" * 100_000,
        "\x00" * 100_000,
        "word " * 200_000,
    ],
    ids=lambda raw: f"{raw[:12]!r}x{len(raw)}",
)
def test_huge_replies_parse_in_bounded_time(raw: str) -> None:
    """A hang is a crash too: each of these would take hours with a backtracking pattern."""
    parsed = parse_reply(raw, "Planner", ROSTER)
    assert len(parsed.content) <= len(raw)
    interpret(raw, TurnPlan("Critic", schema=SCHEMA), ROSTER)
