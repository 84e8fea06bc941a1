"""CrewAI's own project template, imported and run on the real embedded model.

The template is not copied into this repository: the test fetches a crewai wheel from PyPI with
pip (once, into a cache folder) and reads the template's agents.yaml and tasks.yaml from inside
it, laid out as `crewai create crew` lays out a project (src/<name>/config/). crewai 1.0.0 is
pinned because its wheel holds the template at crewai/cli/templates/crew/ (from 1.15 it moved to
the separate crewai-cli wheel, same files).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.cli_batch import run_batch

WHEEL = "crewai==1.0.0"
TEMPLATE = "crewai/cli/templates/crew/"
FILES = ("config/agents.yaml", "config/tasks.yaml", "crew.py", "main.py")


def crewai_wheel() -> Path:
    """The pinned crewai wheel, downloaded with pip into a cache folder on first use."""
    cache = Path(os.environ.get("PERSONAE_TEST_CACHE", Path.home() / ".cache" / "personae-tests")) / "crewai"
    found = sorted(cache.glob("crewai-1.0.0-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(cache)],
            capture_output=True, text=True, timeout=600,
        )
        assert fetched.returncode == 0, f"pip download {WHEEL} failed: {fetched.stderr}"
        found = sorted(cache.glob("crewai-1.0.0-*.whl"))
    return found[0]


def template_project(folder: Path) -> Path:
    """A project as `crewai create crew latest_ai_development` makes it, from the wheel's template."""
    package = folder / "src" / "latest_ai_development"
    with zipfile.ZipFile(crewai_wheel()) as wheel:
        for name in FILES:
            target = package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(TEMPLATE + name))
    return folder


@pytest.mark.slow
def test_crewai_template_imports_validates_and_runs(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    project = template_project(tmp_path / "latest_ai_development")
    out = tmp_path / "out"
    scenario = out / "scenarios" / "latest-ai-development.yaml"
    imported, validated, unset, ran = run_batch(
        [
            ["import", "crewai", str(project), "-o", str(out)],
            ["validate", str(scenario)],
            ["run", str(scenario)],
            ["run", str(scenario), "--var", "topic=solar panels", "--var", "current_year=2026",
             "-o", "num_predict", "16", "--seed", "1", "-q"],
        ],
        cli_env, tmp_path / "batch", timeout=900,
    )
    assert imported.returncode == 0, imported.stderr
    assert f"wrote {out / 'personas' / 'researcher.yaml'}" in imported.stdout
    assert "crew.py is not read" in imported.stderr and "Traceback" not in imported.stderr
    assert "--var topic=... --var current_year=..." in imported.stdout
    assert validated.returncode == 0 and "2 personas, 2 variables" in validated.stdout

    written = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    assert written["personas"] == ["Researcher", "Reporting Analyst"]
    assert [p["name"] for p in written["policy"]["phases"]] == ["research_task", "reporting_task"]
    assert written["vars"] == {"topic": None, "current_year": None}

    assert unset.returncode == 2 and "variable 'topic' has no default" in unset.stderr
    assert ran.returncode == 0, ran.stderr
    db = sqlite3.connect(isolated_env)
    assert db.execute("select persona, phase from messages order by turn").fetchall() == [
        ("Researcher", "research_task"), ("Reporting Analyst", "reporting_task"),
    ]
    assert db.execute("select status, stop_reason from runs").fetchone() == ("completed", "phases_complete")
    first = json.loads(db.execute("select prompt from llm_calls where purpose = 'turn' order by id").fetchone()[0])
    asked = "\n".join(m["content"] for m in first)
    assert "You are solar panels Senior Data Researcher." in asked
    assert "the current year is 2026" in asked and "{topic}" not in asked
