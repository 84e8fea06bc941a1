"""The cache-friendly prompt built incrementally (the run loop's render cache) is the prompt built
from scratch, whatever the history holds: User lines anywhere, phases, a turn's own instructions,
a window that forces trimming, a collapse that moves the transcript's start."""

from __future__ import annotations

import random
from pathlib import Path

from personae.config import load_scenario_text
from personae.llm.scripted import ScriptedBackend
from personae.memory.block import MemoryBlock
from personae.orchestrator.prompts import RenderCache, build_prompt
from personae.orchestrator.state import TurnPlan, Utterance

SCENARIO = """name: t
goal: Decide on a cache.
guard: {enabled: false}
personas:
  - {name: Planner, system: Plan concretely.}
  - {name: Critic, system: Attack the weakest claim., thinking: visible}
"""


def history(rng: random.Random, n: int) -> list[Utterance]:
    out = []
    for turn in range(1, n + 1):
        persona = rng.choice(["Planner", "Critic", "User"])
        out.append(Utterance(
            turn=turn, persona=persona, phase=rng.choice([None, "debate"]) if persona != "User" else None,
            content=" ".join(f"w{rng.randint(0, 50)}" for _ in range(rng.randint(1, 30))),
            thinking="why" if rng.random() < 0.2 else None, id=1000 + turn,
            meta={"instructions": "Be brief."} if rng.random() < 0.2 else None,
        ))
    return out


def test_incremental_rendering_builds_the_same_prompts(tmp_path: Path) -> None:
    loaded = load_scenario_text(SCENARIO, base_dir=tmp_path)
    backend = ScriptedBackend()
    for seed in range(20):
        rng = random.Random(seed)
        full = history(rng, 60)
        cache = RenderCache()
        for end in range(0, 61, rng.choice([1, 1, 2, 3])):
            memory = None
            if end > 30 and seed % 2:  # a collapse moved the transcript's start
                memory = MemoryBlock(text="Memory: things.", tokens=3, as_of=20, after_turn=20 + seed % 5)
            kwargs = dict(
                scenario=loaded.scenario, personas=loaded.personas, history=full[:end],
                speaker=TurnPlan(rng.choice(["Planner", "Critic"]), instructions=rng.choice([None, "Now."])),
                layout="cache_friendly", backend=backend, max_prompt_tokens=rng.choice([10_000, 400]),
                memory=memory,
            )
            fresh = build_prompt(**kwargs)  # type: ignore[arg-type]
            cached = build_prompt(**kwargs, rendered=cache)  # type: ignore[arg-type]
            assert cached == fresh, (seed, end)
            roles = [m.role for m in fresh.messages]
            assert roles[0] == "system" and roles[-1] == "user"
            assert all(a != b for a, b in zip(roles[1:], roles[2:]))  # user/assistant alternate
