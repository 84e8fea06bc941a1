"""Token estimates that a resumed run rebuilds from the database.

Ollama and OpenAI-compatible servers have no tokenize endpoint, so their backends estimate prompt
sizes from characters and calibrate the ratio on every reply (``CharTokenEstimator``). Budgets and
collapse decisions depend on that ratio, so a process that resumes a run must start from the ratio
the original process had reached, or it builds other prompts than an uninterrupted run (and
``replay`` reports a difference at the next collapse). The ratio is a function of the calls
stored so far: each call row keeps the prompt and the ``prompt_tokens`` the backend calibrated on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from personae.llm.base import ChatMessage


def calibrate_from_calls(backend: Any, calls: Callable[[], Iterable[Any]]) -> int:
    """Feed the stored ``LLMCall`` rows ``calls()`` returns (oldest first) to
    ``backend.calibrate`` exactly as the live backend saw them: answered calls, with the prompt
    size they stored. A backend that counts exactly (embedded, scripted, replay) has no
    ``calibrate`` and is left alone, without reading a row. Returns how many calls were fed."""
    calibrate = getattr(backend, "calibrate", None)
    if calibrate is None:
        return 0
    fed = 0
    for call in calls():
        if call.response is None or not call.prompt_tokens:
            continue
        messages = tuple(
            ChatMessage(m.get("role", "user"), m.get("content", "")) for m in call.prompt or ()
        )
        calibrate(messages, call.prompt_tokens)
        fed += 1
    return fed
