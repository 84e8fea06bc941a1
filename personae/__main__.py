"""The ``personae`` console script and ``python -m personae``.

``personae --version`` is answered before the CLI (typer, rich, pydantic) is imported: it is the
first thing a new user and every install script types, and it needs none of them. Everything
else goes to ``personae.cli.main``.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from personae import __version__

        sys.stdout.write(f"personae {__version__}\n")
        return
    from personae.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
