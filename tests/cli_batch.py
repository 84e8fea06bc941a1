"""Run several ``personae`` commands in one subprocess, each with its own stdout and stderr.

A fresh interpreter per command costs about a second here (imports, migrations), which tests that
go through every command with many inputs cannot afford. This runs the real entry point in a real
process whose file descriptors 1 and 2 are pointed, per command, at files: what each command
writes is exactly what a terminal would have received, tracebacks included (an exception that
escapes the CLI is printed, as the interpreter would).

    python -m tests.cli_batch OUTDIR '[["runs"], ["show", "1"]]'

A command may also be ``{"args": [...], "env": {...}}``: its own environment variables, set for it
alone (``OLLAMA_HOST`` for one command, say).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


Command = list[str] | dict[str, Any]


def run_batch(commands: list[Command], env: dict[str, str], folder: Path, timeout: float = 300) -> list[Result]:
    """Run ``commands`` in one subprocess; their results in order."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.run(
        [sys.executable, "-m", "tests.cli_batch", str(folder), json.dumps(commands)],
        capture_output=True, text=True, env=env, timeout=timeout,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.returncode == 0, process.stderr

    def read(path: Path) -> str:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")

    return [
        Result(_args(c), int(read(folder / f"{i}.code")), read(folder / f"{i}.out"), read(folder / f"{i}.err"))
        for i, c in enumerate(commands)
    ]


def _args(command: Command) -> list[str]:
    return list(command["args"]) if isinstance(command, dict) else list(command)


def _run_one(args: list[str]) -> int:
    from personae.cli import app

    try:
        app(args, prog_name="personae")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    folder, commands = Path(sys.argv[1]), json.loads(sys.argv[2])
    saved = os.dup(1), os.dup(2)
    for index, command in enumerate(commands):
        extra = command.get("env", {}) if isinstance(command, dict) else {}
        before = {name: os.environ.get(name) for name in extra}
        os.environ.update(extra)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(folder / f"{index}.out", "wb") as out, open(folder / f"{index}.err", "wb") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = _run_one(_args(command))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for name, value in before.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        (folder / f"{index}.code").write_text(str(code))


if __name__ == "__main__":
    main()
