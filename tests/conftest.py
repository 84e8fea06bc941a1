"""Shared fixtures. Every test gets its own database through PERSONAE_DB (never a patched global),
and no test can reach a real Ollama on this machine by accident."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
