"""What each method runs. Every method turns one task into one or more ordinary Personae runs:

- ``single``: a one-persona, one-turn scenario asked for the answer only (temperature 0).
- ``cot``: the same, asked to reason in a few sentences and end with an ``ANSWER:`` line.
- ``sc:K``: K ``cot`` runs sampled at temperature 0.7 with seeds seed, seed+1, …; the majority
  answer wins (ties: the answer seen first).
- ``crew[:SCENARIO]``: a deliberation scenario with a ``question`` variable (default: the shipped
  ``personae/eval/data/crew.yaml``: Solver → Checker → Decider); the answer is the closing
  persona's (a structured ``answer`` field, else its ``ANSWER:`` line, else its last line).
- ``vote:SCENARIO``: the same kind of run, but every persona's last answer votes; the majority wins.
  With ``crew:SCENARIO`` on the same scenario it reads the same runs (they would be identical):
  the model deliberates once, and both methods are charged what the runs cost.

The one-call methods are written as scenarios here, as YAML, so they run, are stored, shown and
replayed exactly like a user's own run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from personae.config.catalog import SUFFIXES, scenario_files
from personae.config.messages import did_you_mean
from personae.errors import UserError

DATA = Path(__file__).resolve().parent / "data"
CREW_SCENARIO = DATA / "crew.yaml"
DEFAULT_SAMPLES = 5
MAX_SAMPLES = 64
SAMPLE_TEMPERATURE = 0.7
KINDS = ("single", "cot", "sc", "crew", "vote")
RETRIEVAL_AT_FRACTION = 0.95  # the largest CollapseConfig.at_fraction: the largest memory block

DIRECT = "Answer the question. Reply with the answer only."
REASONED = (
    "Think step by step in a few short sentences, then write the last line as "
    "ANSWER: followed by the answer."
)


@dataclass(frozen=True)
class Method:
    """A method as the user typed it (``spec``) and what it means."""

    spec: str
    kind: str
    samples: int = 1  # sc: how many samples (before --budget matched sets it)
    scenario: Path | None = None  # crew and vote

    @property
    def deliberates(self) -> bool:
        return self.kind in ("crew", "vote")


def parse_method(spec: str) -> Method:
    """``single`` | ``cot`` | ``sc[:K]`` | ``crew[:SCENARIO]`` | ``vote:SCENARIO``, or a UserError."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind in ("single", "cot"):
        if arg:
            raise UserError(f"-m {spec}: {kind} takes no argument. Write -m {kind}.")
        return Method(spec, kind)
    if kind == "sc":
        try:
            samples = int(arg) if arg else DEFAULT_SAMPLES
        except ValueError:
            samples = 0
        if not 1 <= samples <= MAX_SAMPLES:
            raise UserError(f"-m {spec}: K must be a whole number from 1 to {MAX_SAMPLES}, e.g. -m sc:5.")
        return Method(spec, kind, samples=samples)
    if kind in ("crew", "vote"):
        if not arg:
            if kind == "vote":
                raise UserError("-m vote needs a scenario: -m vote:SCENARIO.yaml (e.g. -m vote:crew "
                                "for the shipped eval crew).")
            return Method(spec, kind, scenario=CREW_SCENARIO)
        return Method(spec, kind, scenario=crew_scenario(spec, arg))
    raise UserError(f"-m {spec}: unknown method {kind!r}. Use single, cot, sc:K, crew[:SCENARIO] "
                    "or vote:SCENARIO.")


def crew_scenario(spec: str, arg: str) -> Path:
    """The scenario file ``-m crew:ARG`` names: ``crew`` is the shipped eval crew; a path that
    exists is used as it is; a bare name is looked up as ``personae run NAME`` looks it up
    (``./scenarios/`` first, then the built-ins: ``crew:chain-of-agents``, ``crew:self-ask``)."""
    if arg == "crew":
        return CREW_SCENARIO
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    named = len(path.parts) == 1 and path.suffix not in SUFFIXES
    if named:
        files = scenario_files()
        for file in files:
            if file.name == arg:
                return file.path
        names = sorted({f.name for f in files})
        guess = did_you_mean(arg, names)
        hint = f" Did you mean -m {spec.partition(':')[0]}:{guess}?" if guess else ""
        raise UserError(f"-m {spec}: no scenario file {arg} and no scenario named {arg!r}.{hint} "
                        f"Scenarios by name: {', '.join(names)}; or give the path of a .yaml "
                        "file with a `question` variable (see personae/eval/data/crew.yaml).")
    what = "is not a file" if path.exists() else "does not exist"
    raise UserError(f"-m {spec}: the scenario file {path} {what}. Give a scenario with a "
                    "`question` variable (see personae/eval/data/crew.yaml), or a scenario's "
                    "name (e.g. -m crew:chain-of-agents).")


def one_call_scenario(question: str, *, reasoned: bool, temperature: float, num_predict: int,
                      num_ctx: int, documents: Sequence[str] = ()) -> str:
    """The YAML of a one-persona, one-turn run that answers ``question`` (single, cot, a sample).

    With ``documents`` (paths as the scenario names them) it is one call with retrieval (RAG):
    the run imports them and the orchestrator's memory block puts the passages that match the
    question best into the one prompt, as many as its budget holds (``retrieval_memory``)."""
    solver = {
        "name": "Solver",
        "description": "answers the question",
        "system": REASONED if reasoned else DIRECT,
        "options": {"temperature": temperature, "num_predict": num_predict},
    }
    scenario: dict[str, Any] = {
        "name": "eval-cot" if reasoned else "eval-single",
        "goal": question,
        "personas": [solver],
        "policy": {"type": "round_robin"},
        "termination": {"max_turns": 1},
        "guard": {"enabled": False},  # a short answer is what is asked for: never retried
        "memory": {"num_ctx": num_ctx, "collapse": None},
    }
    if documents:
        scenario["documents"] = list(documents)
        scenario["memory"] = retrieval_memory(num_ctx)
    return yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True)


def retrieval_memory(num_ctx: int) -> dict[str, Any]:
    """``memory:`` of a one-call run that reads documents. The memory block — where retrieval
    puts passages — is part of collapse→rebuild, so collapse is on; a one-turn run never has a
    turn to collapse. ``at_fraction`` at its maximum gives the block the largest budget the
    window allows (``collapse/budget.py``): the most passages one prompt can hold."""
    return {"num_ctx": num_ctx, "collapse": {"at_fraction": RETRIEVAL_AT_FRACTION}}
