"""Documents beside the scenarios folder (the common layout: `scenarios/x.yaml` naming
`../docs/notes.md`) are allowed when the run starts from the project; absolute paths, hidden
folders and paths that leave every allowed folder stay refused; `--allow-dir` allows one more."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from personae.config import load_scenario
from personae.errors import ConfigError
from tests.conftest import personae_cmd
from tests.durable_support import scenario_text


def project(tmp_path: Path, documents: str) -> Path:
    """project/scenarios/review.yaml with ``documents: [...]``, project/docs/notes.md, a secret
    beside the project and one in a hidden folder inside it."""
    root = tmp_path / "project"
    (root / "scenarios").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "docs" / "notes.md").write_text("# Notes\n\nThe replica lags 2 s.\n", encoding="utf-8")
    (root / ".secrets").mkdir()
    (root / ".secrets" / "token.txt").write_text("hunter2\n", encoding="utf-8")
    (tmp_path / "outside.md").write_text("# Outside\n\nprivate\n", encoding="utf-8")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "glossary.md").write_text("# Glossary\n\np99: a percentile.\n", encoding="utf-8")
    scenario = root / "scenarios" / "review.yaml"
    scenario.write_text(scenario_text(f"documents: {documents}\n"), encoding="utf-8")
    return scenario


def test_a_document_beside_the_scenarios_folder_loads_from_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = project(tmp_path, "[../docs/notes.md]")
    monkeypatch.chdir(scenario.parent.parent)
    assert load_scenario(scenario).documents == ((tmp_path / "project" / "docs" / "notes.md").resolve(),)
    monkeypatch.chdir(scenario.parent)  # run from inside scenarios/: the project is not the root
    with pytest.raises(ConfigError, match="outside the scenario's folder \\(it leads"):
        load_scenario(scenario)


@pytest.mark.parametrize(
    "entry",
    ["../../outside.md", "../.secrets/token.txt", "/etc/passwd", "~/.ssh/id_rsa", "../../shared/glossary.md"],
)
def test_paths_leaving_every_root_are_refused(entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = project(tmp_path, f"[{entry!r}]")
    monkeypatch.chdir(scenario.parent.parent)
    with pytest.raises(ConfigError) as info:
        load_scenario(scenario)
    message = str(info.value)
    assert "documents[0]" in message and "--allow-dir" in message


def test_the_home_folder_or_root_is_never_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = project(tmp_path, "[../../outside.md]")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the scenario is under the working folder, but it is home
    with pytest.raises(ConfigError, match="outside the scenario's folder \\(it leads"):
        load_scenario(scenario)


@pytest.mark.slow
def test_allow_dir_allows_one_more_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    scenario = project(tmp_path, "[../docs/notes.md, ../../shared/glossary.md]")

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            personae_cmd("validate", str(scenario), *extra), capture_output=True, text=True,
            env=cli_env, cwd=tmp_path / "project", timeout=60,
        )

    refused = validate()
    assert refused.returncode == 2 and "glossary.md" in refused.stderr and "--allow-dir" in refused.stderr
    assert "Traceback" not in refused.stderr
    allowed = validate("--allow-dir", str(tmp_path / "shared"))
    assert allowed.returncode == 0, allowed.stderr
    assert "2 documents" in allowed.stdout
    # Allowing a folder does not allow absolute paths or anything outside it.
    other = project(tmp_path / "b", "[/etc/hostname]")
    still = subprocess.run(
        personae_cmd("validate", str(other), "--allow-dir", "/etc"), capture_output=True,
        text=True, env=cli_env, cwd=other.parent.parent, timeout=60,
    )
    assert still.returncode == 2 and "not relative to the scenario's folder" in still.stderr
