"""Text as a reader sees it, for every comparison the quality checks make."""

from __future__ import annotations

import re
import unicodedata

_FORMAT_CHARS = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def normalize(text: str) -> str:
    """Compatibility forms folded and invisible format characters dropped, so ``Crit\u200bic``
    and fullwidth letters compare as what a reader sees."""
    return _FORMAT_CHARS.sub("", unicodedata.normalize("NFKC", text))
