"""Configuration from the environment is checked like the flags (issue 21, item 9): a value that
the flag would refuse is refused from the environment too, with the variable named, and a value
the flag would accept does not crash a library that reads the variable itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from personae.errors import StoreError, UserError
from personae.llm.backends import ollama_host
from personae.llm.retry import RetryPolicy
from personae.store.db import database_url


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1"])
@pytest.mark.parametrize("key", ["PERSONAE_RETRY_DELAY", "PERSONAE_RETRY_MAX_DELAY"])
def test_retry_delays_from_the_environment_are_finite_and_not_negative(key: str, value: str) -> None:
    with pytest.raises(UserError, match="must be a number of seconds"):
        RetryPolicy.from_env({key: value})
    with pytest.raises(UserError, match="must be a number of seconds"):
        RetryPolicy(base_delay=float(value))  # what the flag builds, refused the same way


@pytest.mark.parametrize("value", ["127.0.0.1:11434/api", "http://h:11434/v1/", "h:1?x=1"])
def test_an_ollama_host_with_a_path_is_refused_before_a_misleading_404(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    with pytest.raises(UserError, match="root, not at a path"):
        ollama_host()


@pytest.mark.slow
@pytest.mark.parametrize("value", [" 127.0.0.1:9 ", "\t127.0.0.1:9\n"])
def test_an_ollama_host_with_stray_whitespace_opens_the_backend(value: str) -> None:
    """The ollama package parses OLLAMA_HOST itself when imported: a fresh process, so that it
    is imported here for the first time."""
    code = (
        "from personae.llm.backends import open_backend\n"
        "print(open_backend('ollama', 'm').host)\n"
    )
    env = {"OLLAMA_HOST": value, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://127.0.0.1:9"


@pytest.mark.parametrize("value", ["   ", "\t", "a\nb.db"])
def test_a_blank_or_control_character_database_path_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PERSONAE_DB", value)
    with pytest.raises(StoreError, match="PERSONAE_DB=.* is not a database path") as info:
        database_url(None)
    assert getattr(info.value, "exit_code", None) == 2
    with pytest.raises(StoreError, match="--db=.* is not a database path"):
        database_url(value)
