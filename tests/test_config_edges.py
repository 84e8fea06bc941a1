"""Files that are not what they seem (issue 21, item 10): a very deep ``extends`` chain, a large
YAML file without aliases, and did-you-mean that must never suggest the very name that failed."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from personae.config import load_scenario_text
from personae.errors import ConfigError


def _scenario(personas: str, roster: str) -> str:
    return f"name: t\ngoal: Decide.\npersonas:\n{personas}"


@pytest.mark.parametrize("depth", [40, 1100])
def test_a_very_deep_extends_chain_is_one_clear_error(tmp_path: Path, depth: int) -> None:
    personas = "".join(
        f"  - {{name: P{i}, extends: P{i + 1}}}\n" for i in range(depth)
    ) + f"  - {{name: P{depth}, system: Be brief.}}\n"
    with pytest.raises(ConfigError, match="extends chain .* more than 32 personas"):
        load_scenario_text(_scenario(personas, "P0"), base_dir=tmp_path)


def test_a_short_extends_chain_still_works(tmp_path: Path) -> None:
    personas = "".join(f"  - {{name: P{i}, extends: P{i + 1}}}\n" for i in range(5))
    personas += "  - {name: P5, system: Be brief.}\n"
    loaded = load_scenario_text(_scenario(personas, "P0"), base_dir=tmp_path)
    assert loaded.personas["P0"].system == "Be brief."


@pytest.mark.slow
def test_a_large_plain_yaml_file_is_not_blamed_on_aliases(tmp_path: Path) -> None:
    text = "name: t\ngoal: Decide.\ncontext:\n" + "  - x\n" * 120_000
    with pytest.raises(ConfigError) as info:
        load_scenario_text(text, base_dir=tmp_path)
    assert "alias" not in str(info.value) and "100,000 items" in str(info.value)


def _suggested(message: str) -> list[str]:
    return re.findall(r"did you mean '([^']*)'", message)


def test_a_persona_extending_itself_with_nothing_below_is_not_told_to_use_its_own_name(tmp_path: Path) -> None:
    personas = "  - {name: Zed, extends: Zed, system: Be brief.}\n"
    with pytest.raises(ConfigError) as info:
        load_scenario_text(_scenario(personas, "Zed"), base_dir=tmp_path)
    message = str(info.value)
    assert "Zed" not in _suggested(message) and "extends its own name" in message


def test_did_you_mean_never_offers_the_same_name_in_another_normal_form(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "Crític")
    decomposed = unicodedata.normalize("NFD", "Crític")
    assert composed != decomposed
    personas = f"  - {{name: {composed}, system: Be brief.}}\n  - {{name: Other, extends: {decomposed}}}\n"
    try:
        load_scenario_text(_scenario(personas, "Other"), base_dir=tmp_path)
    except ConfigError as exc:  # refused or accepted; never "did you mean" the same-looking name
        shown = [unicodedata.normalize("NFC", s) for s in _suggested(str(exc))]
        assert composed not in shown, str(exc)
