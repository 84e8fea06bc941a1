"""Untrusted text made inert for a terminal: the one place every output path goes through.

Model replies, documents, scenario and persona files and whatever a database holds may carry
bytes a terminal obeys rather than shows: ESC sequences (``ESC[2J`` clears the screen, OSC 52
writes the clipboard, OSC 8 forges links, DCS talks to the terminal itself), a lone CR that
overwrites the line, C1 controls (U+009B is a one-character CSI), Unicode line separators and bidi
overrides that reorder what is shown. The stored text stays as it was; only what is printed is
changed, and visibly: C0 controls become their Control Pictures (``ESC`` → ``␛``, so no sequence
can start), the rest a ``\\uXXXX`` escape. That escape is also JSON's, so a JSON document stays
valid and means exactly the same data after passing through here. ``markup=True`` also escapes
rich's markup (``[bold]``, ``[link=…]``), for text printed through a rich console.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 controls but \t and \n, DEL, C1 (U+0085 NEL included), the line and paragraph separators,
# bidi embeddings, overrides, isolates and marks, and lone surrogates (unprintable as UTF-8).
_UNSAFE = re.compile(
    "\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟: ␛ for ESC, ␍ for a lone CR, ␇ for BEL
    return f"\\u{code:04x}"


def inert(text: object, *, markup: bool = False) -> str:
    """``text`` as it may be shown on a terminal: nothing in it is interpreted, everything in it
    is visible. With ``markup=True`` rich markup in it is escaped too."""
    shown = _UNSAFE.sub(_shown, str(text))
    return escape(shown) if markup else shown
