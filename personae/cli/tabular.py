"""Rows of plain values as JSON, CSV or TSV: the ``--format`` of ``runs``, ``show``, ``search``
and ``replay`` (after sqlite-utils' shared output options).

Piped output keeps whole values: nothing is cut to the terminal's width. TSV keeps one record per
line, so ``grep`` and ``cut -f`` work: tabs, newlines and other control characters inside a value
are written as backslash escapes (which also keeps a stored reply from steering a terminal).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any


class Format(str, Enum):
    """The choice every listing command offers; ``table`` is the terminal's own rendering."""

    table = "table"
    json = "json"
    csv = "csv"
    tsv = "tsv"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def plain(value: Any) -> Any:
    """A value as JSON has it: datetimes in ISO 8601 UTC, enums by value."""
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, Enum):
        return value.value
    return value


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):  # as JSON spells it, so one reader parses every format
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def tsv_cell(value: Any) -> str:
    """One TSV field: backslash escapes for the separator, line breaks and control characters."""
    text = _cell(value).replace("\\", "\\\\")
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: Format) -> str:
    """``rows`` (dicts with at least ``columns``) as JSON (a list of objects), CSV or TSV, each
    with a header line; ends with a newline."""
    rows = list(rows)
    if fmt is Format.json:
        payload = [{c: plain(r.get(c)) for c in columns} for r in rows]
        return json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt is Format.tsv:
        lines = ["\t".join(columns)]
        lines += ["\t".join(tsv_cell(r.get(c)) for c in columns) for r in rows]
        return "\n".join(lines) + "\n"
    if fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(r.get(c)) for c in columns] for r in rows)
        return buffer.getvalue()
    raise ValueError(f"{fmt} is drawn by the command itself")
