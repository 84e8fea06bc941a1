"""Write what an importer made as YAML a person can read, checked before anything is written.

Multi-line text is written as `|` blocks; each file starts with a comment saying where it came
from. The files are first written to a scratch folder in the same layout (``personas/`` beside
``scenarios/``, as ``personae init`` makes it) and the scenario is validated there with the real
loader; only then are they copied to the output folder. Existing files are never overwritten
unless asked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from personae.config.loader import validate_file
from personae.config.names import canonical_name
from personae.config.yaml_source import YAML_SUFFIXES
from personae.errors import UserError
from personae.importers.crewai import Converted, OutputFile


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def as_yaml(data: dict[str, Any], comment: str) -> str:
    header = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def write_converted(converted: Converted, outdir: Path, *, force: bool = False) -> tuple[list[Path], str]:
    """Check, then write the files; returns the paths written and ``validate``'s summary."""
    files: list[OutputFile] = [*converted.personas, converted.scenario]
    targets = [outdir / f.relative for f in files]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise UserError(
            f"Not overwriting {', '.join(existing)}. Pass --force to replace them, or choose "
            "another folder with -o OUTDIR."
        )
    _check_names_free(converted, outdir, set(targets))
    with tempfile.TemporaryDirectory(prefix="personae-import-") as scratch:
        _write(files, Path(scratch))
        summary = validate_file(Path(scratch) / converted.scenario.relative)
    _write(files, outdir)
    return targets, summary


def _check_names_free(converted: Converted, outdir: Path, targets: set[Path]) -> None:
    """A persona file already in OUTDIR/personas with one of the new names would make every
    lookup of that name ambiguous: say so before writing anything."""
    new = {canonical_name(str(p.data["name"])): str(p.data["name"]) for p in converted.personas}
    folder = outdir / "personas"
    if not folder.is_dir():
        return
    for file in sorted(folder.iterdir()):
        if file in targets or file.suffix not in YAML_SUFFIXES or not file.is_file():
            continue
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError):
            continue
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and canonical_name(name) in new:
            raise UserError(
                f"{file} already defines a persona named '{name}', which the import would write "
                f"as {new[canonical_name(name)]!r} too. Rename or move that file, or choose "
                "another folder with -o OUTDIR."
            )


def _write(files: list[OutputFile], folder: Path) -> None:
    for file in files:
        target = folder / file.relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():  # replace the link, never write through it
                target.unlink()
            target.write_text(as_yaml(file.data, file.comment), encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"Cannot write {target}: {exc.strerror or exc}. Choose another folder with -o OUTDIR."
            ) from None

