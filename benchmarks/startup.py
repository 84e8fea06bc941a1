"""How long the quick commands take to start: `--version`, `--help`, `db path`, `runs`.

A new user types these first, and each is a fresh interpreter: its imports are the whole cost.
Wall times on a shared machine are noisy, so each command runs several times interleaved with
`python -c pass` (the floor no CLI can beat) and the report gives medians and the ratio to that
floor, measured side by side in one run. Which heavy modules each command loaded
(SQLAlchemy, Alembic, the embedded engine) is printed too: they belong only where needed.

    python benchmarks/startup.py [--repeat 9] [--against OTHER_CHECKOUT]

``--against`` runs each command of another checkout of Personae too (its package folder first on
PYTHONPATH, the same interpreter and libraries), interleaved with this one: a before/after of a
change measured side by side under the same load.

Each checkout's ``personae`` package is compiled to bytecode first (``compileall``), as ``pip
install`` does: with PYTHONDONTWRITEBYTECODE set (as on the project's shared machine) an editable
checkout would otherwise compile every one of its modules from source at every start, which is
a cost of the checkout, not of Personae.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "personae --version": [sys.executable, "-m", "personae", "--version"],
    "personae --help": [sys.executable, "-m", "personae", "--help"],
    "personae db path": [sys.executable, "-m", "personae", "db", "path"],
    "personae runs": [sys.executable, "-m", "personae", "runs"],
}
HEAVY = ("sqlalchemy", "alembic", "xllamacpp", "llama_cpp", "pydantic", "jinja2", "yaml")


def loaded_heavy(command: list[str], env: dict[str, str]) -> list[str]:
    """The heavy top-level packages a command imports (from ``-X importtime``)."""
    if command[1] == "-c":
        return []
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, env=env
    )
    seen = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return [name for name in HEAVY if name in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--against", type=Path, help="another checkout to measure side by side")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    env = {**os.environ, "PERSONAE_DB": str(folder / "p.db"), "NO_COLOR": "1"}
    envs = {"this": env}
    if args.against:
        envs["other"] = {**env, "PYTHONPATH": str(args.against.resolve())}
    for checkout in [Path(__file__).resolve().parent.parent, *([args.against] if args.against else [])]:
        compileall.compile_dir(checkout / "personae", quiet=1)  # as pip install does
    make_db = "from personae.store.repo import Store; Store.open().close()"
    subprocess.run([sys.executable, "-c", make_db], env=env, check=True)  # `runs` needs a database
    subprocess.run(COMMANDS["personae runs"], capture_output=True, env=env)  # warm the file cache
    times: dict[tuple[str, str], list[float]] = {(side, name): [] for side in envs for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():  # interleaved: load changes hit all alike
            for side, side_env in envs.items():
                start = time.perf_counter()
                subprocess.run(command, capture_output=True, env=side_env, check=True)
                times[side, name].append(time.perf_counter() - start)
    floor = statistics.median([t for side in envs for t in times[side, "python -c pass"]])
    print(f"load average {os.getloadavg()[0]:.1f}; floor (python -c pass) {floor:.3f} s")
    for side, side_env in envs.items():
        if len(envs) > 1:
            print(f"\n{side}: {side_env.get('PYTHONPATH') or Path(__file__).resolve().parent.parent}")
        print(f"{'command':24} {'median s':>9} {'× python':>9}  heavy imports")
        for name, command in COMMANDS.items():
            median = statistics.median(times[side, name])
            heavy = ", ".join(loaded_heavy(command, side_env)) or "-"
            print(f"{name:24} {median:9.3f} {median / floor:9.1f}  {heavy}")


if __name__ == "__main__":
    main()
