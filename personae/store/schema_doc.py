"""The tables of database columns in docs/storage.md, generated from the models' column comments.

``python -m personae.store.schema_doc`` rewrites the section between the markers in that file;
``tests/test_docs.py`` fails when the two drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from personae.store.models import Base

START = "<!-- schema:start -->"
END = "<!-- schema:end -->"
STORAGE_DOC = Path("docs/storage.md")  # from the repository root, as the docs say to run it


def markdown() -> str:
    blocks = []
    for table in Base.metadata.sorted_tables:
        rows = [f"**`{table.name}`** — {(table.comment or '').strip()}".rstrip(" —"), "",
                "| column | type | meaning |", "| --- | --- | --- |"]
        for column in table.columns:
            kind = type(column.type).__name__.lower()
            meaning = (column.comment or ("row id" if column.primary_key else "")).strip()
            rows.append(f"| `{column.name}` | {kind} | {meaning.replace('|', '/')} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def rewrite(doc: Path) -> bool:
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{markdown()}\n{END}{tail}"
    if new != text:
        doc.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else STORAGE_DOC
    print("updated" if rewrite(target) else "up to date", target)
