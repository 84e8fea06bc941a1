"""Replies that end: a reply cut at num_predict is read by the other personas up to its last
complete sentence (the model's whole text kept in `raw`, the cut marked in `meta["trimmed"]`);
runs from before this rule resume and replay as they ran; the built-in personas have budgets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from personae.config.loader import builtin_personas
from personae.llm.base import ChatRequest, ChatResult
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.resume import REPLY_RULES_SINCE, reload_scenario, run_settings
from personae.replies.ending import complete_part
from tests.durable_support import run_events, scenario_text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("We add Redis. Then we roll it out to 10% of", "We add Redis."),
        ("1. Add Redis by Friday\n2. Measure p99\n3. Roll out to 10", "1. Add Redis by Friday\n2. Measure p99"),
        ("A plan:\n1. Add", "A plan:"),
        ('He said "go." Then the', 'He said "go."'),
        ("It costs 1.2 million. So the rollout sh", "It costs 1.2 million."),
        ("Is it worth it? Maybe if the", "Is it worth it?"),
        ("No complete sentence and no end", "No complete sentence and no end"),
        ("Already done.  ", "Already done."),
    ],
)
def test_complete_part(text: str, kept: str) -> None:
    assert complete_part(text) == kept


class CutAtLength(ScriptedBackend):
    """The scripted model, reporting every reply as stopped by num_predict (as a server does)."""

    def chat(self, request: ChatRequest, on_token: Any = None) -> ChatResult:
        return replace(super().chat(request, on_token), done_reason="length")


CUT = "Cache the order reads in Redis. Expire entries after thirty seconds and then roll it out to ten per"


def test_a_cut_reply_is_read_up_to_its_last_sentence(tmp_path: Path) -> None:
    backend = CutAtLength(default=CUT)
    store, run_id, _ = run_events(
        tmp_path / "c.db", scenario_text("termination: {max_turns: 2}\n"), backend
    )
    first, second = store.messages(run_id)
    assert first.content == "Cache the order reads in Redis."
    assert first.raw == CUT and first.meta["truncated"] is True
    assert first.meta["trimmed"] == len(CUT) - len(first.content)
    prompt = "\n".join(m.content for m in backend.requests[1].messages)
    assert "Cache the order reads in Redis." in prompt and "ten per" not in prompt
    # runs from before the rule keep it off when resumed or replayed
    row = store.run(run_id)
    loaded = reload_scenario(store, row)
    for version, expected in (("0.2.1", False), (".".join(map(str, REPLY_RULES_SINCE)), True)):
        row.personae_version = version
        assert run_settings(row, loaded, backend).trim_cut_replies is expected, version


def test_builtin_personas_have_room_to_finish() -> None:
    """At 140-160 tokens most replies of the bundled model ended mid-word (issue 20)."""
    budgets = {name: p.options.num_predict for name, p in builtin_personas().items()}
    assert all(b is not None and b >= 256 for b in budgets.values()), budgets


@pytest.mark.slow
def test_the_real_model_cut_short_is_read_up_to_a_sentence(tmp_path: Path) -> None:
    from personae.llm.embedded import EmbeddedBackend

    text = scenario_text("termination: {max_turns: 1}\n", num_predict=24)
    backend = EmbeddedBackend(num_ctx=2048)
    try:
        store, run_id, _ = run_events(tmp_path / "e.db", text, backend, seed=3)
    finally:
        backend.close()
    [message] = store.messages(run_id)
    assert message.meta and message.meta.get("truncated") is True
    assert message.raw.rstrip().startswith(message.content)
    assert message.content == complete_part(message.content)
    if message.meta.get("trimmed"):
        assert len(message.content) < len(message.raw.rstrip())
