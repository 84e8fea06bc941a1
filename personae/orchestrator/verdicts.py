"""A reviewer's verdict: the schema it is written under, how it reads, and whether it approves.

The reflect policy asks for verdicts, the turn renders them for the author to read and the
``approved`` stop rule looks for one that approves: three users, so the verdict lives on its own.
"""

from __future__ import annotations

from typing import Any

from personae.orchestrator.state import Utterance

# Bounded (three issues of 120 characters) so a verdict always fits in a small num_predict and is
# never cut off into invalid JSON.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean"},
        "issues": {
            "type": "array",
            "items": {"type": "string", "maxLength": 120},
            "maxItems": 3,
        },
    },
    "required": ["approve", "issues"],
    "additionalProperties": False,
}


def is_approval(utterance: Utterance) -> bool:
    """A verdict that approves (an unparseable verdict never does)."""
    data = utterance.structured
    return (utterance.meta or {}).get("reflect") == "verdict" and bool(
        isinstance(data, dict) and data.get("approve") is True
    )


def render_verdict(data: dict[str, Any]) -> str:
    """A verdict as the author reads it in the transcript."""
    issues = [str(i).strip() for i in data.get("issues") or [] if str(i).strip()]
    head = "Approved." if data.get("approve") is True else "Not approved."
    if not issues:
        return head
    return head + " Issues to fix:\n" + "\n".join(f"- {issue}" for issue in issues)
