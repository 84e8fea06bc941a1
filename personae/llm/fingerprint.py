"""The fingerprint of a prompt: what ``replay`` compares to recognise a call it has seen.

It lives with the messages it hashes (``llm``), not with the store that keeps it, so that the
replay backend (``llm/recorded.py``) and the store (``store/call_rows.py``) share one definition
without ``llm`` importing anything above it. It must never change for stored runs: the replay
tests hash old runs' prompts again and compare.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from personae.llm.base import ChatMessage


def prompt_hash(messages: Sequence[ChatMessage], schema: dict[str, Any] | None = None) -> str:
    """A stable fingerprint of what the model was asked; replay compares these."""
    return stored_prompt_hash([m.to_dict() for m in messages], schema)


def stored_prompt_hash(prompt: list[dict[str, str]], schema: dict[str, Any] | None) -> str:
    """``prompt_hash`` of messages already in their stored form (the ``llm_calls.prompt`` list)."""
    payload = {"messages": prompt, "schema": schema}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
