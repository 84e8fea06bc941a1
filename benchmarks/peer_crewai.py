"""The deliberation in CrewAI: a sequential crew of four agents.

Run by ``peers.py`` in the peers venv (never the project venv):
    .venv-peers/bin/python peer_crewai.py SPEC.json OUT.json
SPEC as for ``peer_autogen.py``. Writes to OUT.json: wall seconds of ``crew.kickoff()``,
CrewAI's own ``usage_metrics`` and the transcript (each task's output, by its agent).

CrewAI's shape is agents and tasks, not turns: four agents (role = persona name, goal = its
description, backstory = its system prompt), one task per reply, assigned round-robin, run by the
sequential process, which hands every task the outputs of the tasks before it. So 12 replies are
12 tasks: the four personas' tasks, three rounds. Every agent has its own ``LLM`` object, because
CrewAI's ``usage_metrics`` counts a shared one once per agent. ``max_iter=1`` and no tools keep each
task to one model call (a 135M model rarely writes CrewAI's "Final Answer" format; retries would
measure the model, not the framework).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# No telemetry or tracing calls out (there is no network here anyway; they would only wait).
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")


def deliberate(spec: dict[str, Any]) -> dict[str, Any]:
    from crewai import LLM, Agent, Crew, Process, Task

    def llm() -> LLM:
        return LLM(
            model=f"openai/{spec['model']}",
            base_url=spec["base_url"],
            api_key="sk-no-key",
            temperature=spec["temperature"],
            max_tokens=spec["max_tokens"],
        )

    personas = spec["personas"]
    agents = [
        Agent(
            role=p["name"], goal=p["description"], backstory=p["system"], llm=llm(),
            allow_delegation=False, max_iter=1, verbose=False,
        )
        for p in personas
    ]
    tasks = []
    for i in range(spec["replies"]):
        persona, agent = personas[i % len(personas)], agents[i % len(personas)]
        tasks.append(
            Task(
                description=f"{spec['task']}\n\nRound {i // len(personas) + 1}: give the "
                f"{persona['name']}'s next contribution to the deliberation.",
                expected_output=f"The {persona['name']}'s message.",
                agent=agent,
            )
        )
    crew = Crew(agents=agents, tasks=tasks, process=Process.sequential, verbose=False)
    started = time.perf_counter()
    result = crew.kickoff()
    wall = time.perf_counter() - started
    usage = result.token_usage
    transcript = [
        {"persona": personas[i % len(personas)]["name"], "content": str(out.raw)}
        for i, out in enumerate(result.tasks_output)
    ]
    return {
        "wall_s": wall,
        "replies": len(result.tasks_output),
        "transcript": transcript,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "successful_requests": usage.successful_requests,
        },
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    Path(sys.argv[2]).write_text(json.dumps(deliberate(spec)), encoding="utf-8")


if __name__ == "__main__":
    main()
