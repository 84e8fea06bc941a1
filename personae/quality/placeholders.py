"""Structured replies that only look filled in: fields that repeat the schema, or hold a
placeholder.

Constrained decoding guarantees a reply's *shape*, not its content. A small model under a schema
often copies the field's own description back ("the decision in one sentence"), writes a template
slot ("[insert the next step here]", "<owner>", "TBD"), numbers it ("1.2.3") or fills it with
punctuation. Word 4-grams miss most of these (a field is a few words long), so they are found
here, field by field, and both the reply guard and the scorer call such a reply a copy: of the
schema, which the model was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from personae.quality.text import normalize

_LETTER_WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)

# Words of template slots and filler; a field written only with these, the schema's own words
# (its description, its name) and stopwords says nothing.
SLOT_WORDS = frozenset(
    """
    insert here your answer placeholder tbd todo tba fixme xxx lorem ipsum dolor example sample
    string text value field fill item items etc describe description write sentence sentences
    word words one two three n a na
    """.split()
)
_GLUE = frozenset("a an the of in to and or for with by on at is are be this that its it who what".split())


def letter_words(text: str) -> list[str]:
    """The words of ``text`` that contain a letter, lower-cased: "1.2.3" and "--" have none."""
    return [w.lower() for w in _LETTER_WORD.findall(normalize(text))]


_SLOT = re.compile(r"\s*[\[<{][^\]>}]{0,60}[\]>}]\s*")  # "[decision]", "<owner>", "{next step}"


def empty_value(value: str, own_words: frozenset[str]) -> bool:
    """A text field that says nothing: no word with a letter in it, a bracketed template slot, or
    only the schema's own words (``own_words``), slot words and glue."""
    found = letter_words(value)
    if not found or _SLOT.fullmatch(value):
        return True
    allowed = own_words | SLOT_WORDS | _GLUE
    return all(w in allowed for w in found)


def placeholder_fields(
    data: Any, schema: Mapping[str, Any] | None, path: str = "$", own: frozenset[str] = frozenset()
) -> list[str]:
    """Where a structured reply says nothing (``$.decision``, ``$.agreed[0]``): text fields that
    are punctuation or numbering only, a template slot, or the field's own description or name
    (``own``: the words the schema gave for it). Empty lists are answers ("nothing is open")."""
    schema = schema or {}
    own = own | _own_words(schema)
    found: list[str] = []
    if isinstance(data, Mapping):
        properties = schema.get("properties") or {}
        for key, value in data.items():
            name = frozenset(letter_words(str(key).replace("_", " ")))
            found += placeholder_fields(value, properties.get(key), f"{path}.{key}", name)
    elif isinstance(data, list):
        items = schema.get("items")
        for index, item in enumerate(data):
            found += placeholder_fields(item, items if isinstance(items, Mapping) else None, f"{path}[{index}]", own)
    elif isinstance(data, str) and "enum" not in schema and "const" not in schema:
        if empty_value(data, own):
            found.append(path)
    return found


def _own_words(schema: Mapping[str, Any]) -> frozenset[str]:
    """The words a schema gives the model for one field: its description and title."""
    return frozenset(letter_words(" ".join(str(schema.get(k) or "") for k in ("description", "title"))))
