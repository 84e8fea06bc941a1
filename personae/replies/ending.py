"""A reply cut at ``num_predict`` ends mid-word; what the other personas read ends at its last
complete sentence.

A small model that runs out of tokens stops wherever it is ("…and roll it out to 10% of"). Left as
it is, the next persona reads the broken clause and often continues it — in the wrong voice. So a
cut reply is trimmed back to the end of its last complete sentence, or of its last complete line
(list items and headings end without a full stop). The model's whole text stays in
``messages.raw`` and the message's ``meta["trimmed"]`` says how many characters were dropped.
A reply with no complete sentence at all is kept whole: something half-said beats nothing.
"""

from __future__ import annotations

import re

# A full stop, question or exclamation mark (with closing quotes or brackets) before a space or
# the end — but not a list number such as "2." at the start of a line.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")
_LIST_NUMBER = re.compile(r"\s*(?:\d{1,3}|[a-zA-Z])\s*")


def complete_part(text: str) -> str:
    """``text`` up to the end of its last complete sentence or line; ``text`` itself (without
    trailing space) when it has none, or already ends with one."""
    body = text.rstrip()
    ends = [len(body[: body.rfind("\n")].rstrip())] if "\n" in body else []
    for match in _SENTENCE_END.finditer(body):
        line_start = body.rfind("\n", 0, match.start()) + 1
        if _LIST_NUMBER.fullmatch(body[line_start : match.start()]):
            continue  # "2." opens a list item; it ends nothing
        ends.append(match.end())
    end = max(ends, default=0)
    if end <= 0:
        return body
    return body[:end].rstrip()
