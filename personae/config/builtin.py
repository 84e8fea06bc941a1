"""Where the personas and scenarios shipped with Personae live: ``personae/builtin`` in the
installed package, found through importlib so it works from a wheel as from a checkout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def builtin_dir() -> Path:
    """The folder of built-in personas and scenarios inside the installed package."""
    return Path(str(files("personae") / "builtin"))
