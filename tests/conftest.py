"""Shared fixtures. Every test gets its own database through PERSONAE_DB (never a patched global),
and no test can reach a real Ollama on this machine by accident."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "personae.db"
    monkeypatch.setenv("PERSONAE_DB", str(db))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # discard port: nothing answers
    monkeypatch.delenv("PERSONAE_DEBUG", raising=False)
    yield db


@pytest.fixture
def cli_env(isolated_env: Path) -> dict[str, str]:
    """Environment for running ``personae`` as a subprocess."""
    env = dict(os.environ)
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "120"
    return env


def personae_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "personae", *args]


@pytest.fixture
def scripted_ollama_server() -> Iterator[Any]:
    """An Ollama-compatible HTTP server (``tests/ollama_server.py``) answering from a
    ``ScriptedBackend`` instead of the model: instant, for CLI runs as subprocesses. Each chat
    gets ``server.backend.default`` (a text, or a function of the request), streamed in pieces;
    a scenario run against it must set ``memory.num_ctx`` (there is no model to ask)."""
    from personae.llm.scripted import ScriptedBackend
    from tests.ollama_server import OllamaTestServer

    with OllamaTestServer(ScriptedBackend(default="ok")) as server:  # type: ignore[arg-type]
        yield server
