"""The schema revision this package ships, read without SQLAlchemy or Alembic.

Every command that opens a database first asks whether its schema is at this version's head; that
question needs only the revision files' own text, so the read-only fast path (``store/quick.py``)
and the SQLAlchemy one (``store/db.py``) share this answer and neither imports Alembic for it.
"""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"

_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w-]+|None)['\"]?", re.MULTILINE)
HEAD_QUERY = "SELECT version_num FROM alembic_version"


def shipped_head() -> str:
    """The newest revision this package ships, read from the revision files themselves (the one
    no other revision names as its ``down_revision``): the fast check of ``at_head`` needs no
    Alembic. ``tests/test_startup.py`` holds it equal to Alembic's own head."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        fields = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in fields:
            revisions.add(fields["revision"])
            parents.add(fields.get("down_revision"))
    heads = revisions - parents
    assert len(heads) == 1, f"the migrations have {len(heads)} heads: {sorted(heads)}"
    return heads.pop()
