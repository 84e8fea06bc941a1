"""AutoGen AgentChat's per-turn overhead with an instant model (its ReplayChatCompletionClient).

Run by ``overhead.py`` in the peers venv:
    .venv-peers/bin/python peer_autogen_replay.py --turns 1000 --reply TEXT
Prints one JSON line with the same fields as Personae's measurement. Four AssistantAgents in a
RoundRobinGroupChat, each with its own replay client that returns TEXT; a turn is measured from one
message of ``run_stream`` to the next. Everything stays in memory: AutoGen persists nothing unless
asked (``save_state``), so there is no commit in this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time

PERSONAS = ("Analyst", "Critic", "Planner", "Summarizer")


async def measure(turns: int, reply: str) -> dict[str, object]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.replay import ReplayChatCompletionClient

    per_agent = turns // len(PERSONAS) + 1
    agents = [
        AssistantAgent(
            name,
            model_client=ReplayChatCompletionClient([reply] * per_agent),
            system_message=f"You are the {name}. Be concrete.",
            description=f"the {name.lower()}",
        )
        for name in PERSONAS
    ]
    team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(turns + 1))
    per_turn: list[float] = []
    per_turn_cpu: list[float] = []
    started = last = time.perf_counter_ns()
    last_cpu = time.process_time_ns()
    seen = 0
    async for item in team.run_stream(task="Decide whether the orders API needs a Redis cache."):
        if isinstance(item, TaskResult):
            break
        seen += 1
        if seen == 1:  # the task message itself
            last, last_cpu = time.perf_counter_ns(), time.process_time_ns()
            continue
        now, now_cpu = time.perf_counter_ns(), time.process_time_ns()
        per_turn.append((now - last) / 1e6)
        per_turn_cpu.append((now_cpu - last_cpu) / 1e6)
        last, last_cpu = now, now_cpu
    total = (time.perf_counter_ns() - started) / 1e9
    ordered, ordered_cpu = sorted(per_turn), sorted(per_turn_cpu)
    return {
        "framework": "autogen",
        "turns": len(per_turn),
        "total_s": total,
        "median_ms": statistics.median(per_turn),
        "p99_ms": ordered[max(0, round(0.99 * len(ordered)) - 1)],
        "cpu_median_ms": statistics.median(per_turn_cpu),
        "cpu_p99_ms": ordered_cpu[max(0, round(0.99 * len(ordered_cpu)) - 1)],
        "first_100_median_ms": statistics.median(per_turn[:100]),
        "last_100_median_ms": statistics.median(per_turn[-100:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--reply", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.turns, args.reply))))


if __name__ == "__main__":
    main()
