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

from dataclasses import dataclass
from pathlib import Path

import yaml

from personae.errors import UserError

DATA = Path(__file__).resolve().parent / "data"
CREW_SCENARIO = DATA / "crew.yaml"
DEFAULT_SAMPLES = 5
MAX_SAMPLES = 64
SAMPLE_TEMPERATURE = 0.7
KINDS = ("single", "cot", "sc", "crew", "vote")

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
        path = CREW_SCENARIO if arg == "crew" else Path(arg).expanduser()
        if not path.is_file():
            raise UserError(f"-m {spec}: no scenario file {path}. Give a scenario with a "
                            "`question` variable (see personae/eval/data/crew.yaml).")
        return Method(spec, kind, scenario=path)
    raise UserError(f"-m {spec}: unknown method {kind!r}. Use single, cot, sc:K, crew[:SCENARIO] "
                    "or vote:SCENARIO.")


def one_call_scenario(question: str, *, reasoned: bool, temperature: float, num_predict: int,
                      num_ctx: int) -> str:
    """The YAML of a one-persona, one-turn run that answers ``question`` (single, cot, a sample)."""
    solver = {
        "name": "Solver",
        "description": "answers the question",
        "system": REASONED if reasoned else DIRECT,
        "options": {"temperature": temperature, "num_predict": num_predict},
    }
    scenario = {
        "name": "eval-cot" if reasoned else "eval-single",
        "goal": question,
        "personas": [solver],
        "policy": {"type": "round_robin"},
        "termination": {"max_turns": 1},
        "guard": {"enabled": False},  # a short answer is what is asked for: never retried
        "memory": {"num_ctx": num_ctx, "collapse": None},
    }
    return yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True)
