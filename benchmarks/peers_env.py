"""The benchmarks' own virtual environment for AutoGen and CrewAI, and small shared helpers.

AutoGen and CrewAI pull in hundreds of packages (chromadb, onnxruntime, lancedb, grpc, ...). They
are installed into ``benchmarks/.venv-peers`` (gitignored), never into the project's venv, and
Personae never imports them: the peers run as subprocesses of the benchmark scripts. An install
that fails is reported with pip's last lines, and the benchmark goes on without that peer.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".venv-peers"
# What each peer needs (the ``bench`` extra of pyproject.toml, less llama-cpp-python, which the
# project venv already has compiled: the server runs there).
PEER_PACKAGES = {
    "autogen": (["pyautogen", "autogen-agentchat", "autogen-ext[openai]"], "import autogen_agentchat, autogen_ext.models.openai, autogen_ext.models.replay"),
    "crewai": (["crewai"], "import crewai"),
}
COMMON_PACKAGES = ["psutil"]


@dataclass(frozen=True)
class PeerStatus:
    name: str
    ok: bool
    detail: str  # version when ok; what failed otherwise


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_peers(names: list[str], *, log=print) -> dict[str, PeerStatus]:
    """Create the peers venv if needed and install what is missing; never raises for a peer."""
    if not peers_python().exists():
        log(f"creating {PEERS_VENV} (once; AutoGen and CrewAI are installed there, not in the project venv)")
        # The base interpreter, so the peers venv does not inherit the project venv's packages.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
        _pip(["install", "--upgrade", "pip", *COMMON_PACKAGES])
    statuses = {}
    for name in names:
        packages, probe = PEER_PACKAGES[name]
        if not _imports(probe):
            log(f"installing {name} into {PEERS_VENV.name}: {' '.join(packages)} (takes minutes the first time)")
            done = _pip(["install", *packages, *COMMON_PACKAGES])
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
                statuses[name] = PeerStatus(name, False, f"pip install {' '.join(packages)} failed:\n{tail}")
                continue
        if not _imports(probe):
            statuses[name] = PeerStatus(name, False, f"installed, but `{probe}` fails in {PEERS_VENV}")
            continue
        statuses[name] = PeerStatus(name, True, _version(name))
    return statuses


def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(peers_python()), "-m", "pip", "-q", *args], capture_output=True, text=True)


def _imports(probe: str) -> bool:
    done = subprocess.run([str(peers_python()), "-c", probe], capture_output=True, text=True)
    return done.returncode == 0


def _version(name: str) -> str:
    dist = {"autogen": "autogen-agentchat", "crewai": "crewai"}[name]
    done = subprocess.run(
        [str(peers_python()), "-c", f"import importlib.metadata as m; print(m.version('{dist}'))"],
        capture_output=True, text=True,
    )
    return f"{dist} {done.stdout.strip()}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), fine for the thousands of samples used here."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]
