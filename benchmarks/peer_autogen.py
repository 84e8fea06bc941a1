"""The deliberation in AutoGen AgentChat: RoundRobinGroupChat of four AssistantAgents.

Run by ``peers.py`` in the peers venv (never the project venv):
    .venv-peers/bin/python peer_autogen.py SPEC.json OUT.json
SPEC holds base_url, model, personas [{name, description, system}], task, replies, max_tokens,
temperature. Writes to OUT.json: wall seconds of ``team.run``, the usage AutoGen reports per
message (``models_usage``, from the server's non-streamed replies), and the transcript (who said
what), which ``peers.py`` scores with Personae's quality scorer.

Each agent gets its own ``OpenAIChatCompletionClient``, as it would in a real team; the model info
says the model has no tools, vision or JSON mode, so AutoGen sends plain chat requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


async def deliberate(spec: dict[str, Any]) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    def client() -> OpenAIChatCompletionClient:
        return OpenAIChatCompletionClient(
            model=spec["model"],
            base_url=spec["base_url"],
            api_key="sk-no-key",
            model_info={
                "vision": False,
                "function_calling": False,
                "json_output": False,
                "family": "unknown",
                "structured_output": False,
            },
            temperature=spec["temperature"],
            max_tokens=spec["max_tokens"],
        )

    clients = [client() for _ in spec["personas"]]
    agents = [
        AssistantAgent(p["name"], model_client=c, system_message=p["system"], description=p["description"])
        for p, c in zip(spec["personas"], clients)
    ]
    # The task message counts as a message: replies + 1.
    team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(spec["replies"] + 1))
    started = time.perf_counter()
    result = await team.run(task=spec["task"])
    wall = time.perf_counter() - started
    calls = [
        {"source": m.source, "prompt_tokens": m.models_usage.prompt_tokens,
         "completion_tokens": m.models_usage.completion_tokens}
        for m in result.messages
        if m.models_usage is not None
    ]
    transcript = [
        {"persona": m.source, "content": m.content if isinstance(m.content, str) else str(m.content)}
        for m in result.messages
        if m.source != "user"
    ]
    for c in clients:
        await c.close()
    return {"wall_s": wall, "calls": calls, "replies": len(calls), "transcript": transcript}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(deliberate(spec))), encoding="utf-8")


if __name__ == "__main__":
    main()
