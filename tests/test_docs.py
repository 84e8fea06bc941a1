"""The docs are part of the product: the README's commands and command table, and the schema
tables of docs/storage.md, are checked."""

from __future__ import annotations

import re

import typer.main

from personae.cli import app
from personae.store.schema_doc import END, START, markdown
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
STORAGE = (REPO / "docs" / "storage.md").read_text(encoding="utf-8")


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def test_the_two_commands_at_the_top() -> None:
    run_command, test_command = (block.strip() for block in sh_blocks()[:2])
    assert "\n" not in run_command and "\n" not in test_command
    assert "personae run scenarios/" in run_command and "[embedded]" in run_command
    assert "pytest" in test_command and "[embedded,test]" in test_command
    scenario = run_command.split("personae run ")[1].split()[0]
    assert (REPO / scenario).is_file()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = sh_blocks()[1].strip()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_every_command_has_help_and_is_documented() -> None:
    group = typer.main.get_command(app)
    assert group.commands
    for name, command in group.commands.items():
        assert command.help, f"`personae {name}` has no help text"
        assert f"`personae {name}" in README, f"`personae {name}` is missing from the README"


def test_schema_section_matches_the_models() -> None:
    section = STORAGE.split(START, 1)[1].split(END, 1)[0].strip()
    assert section == markdown(), "run: python -m personae.store.schema_doc"


def test_every_column_is_explained() -> None:
    for line in markdown().splitlines():
        if line.startswith("| `"):
            assert not line.rstrip().endswith("|  |"), f"column without a comment: {line}"
