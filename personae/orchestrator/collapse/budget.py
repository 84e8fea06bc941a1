"""The token budgets of collapse→rebuild, all derived from the served window."""

from __future__ import annotations

from dataclasses import dataclass

from personae.config.loader import LoadedScenario
from personae.llm.base import Backend
from personae.orchestrator.prompts import instructions_text, layout_header
from personae.orchestrator.state import RunSettings, TurnPlan

MEMORY_SHARE = 0.4  # of the room left under the trigger once header and instructions are in
MESSAGE_OVERHEAD = 24  # a transcript entry's cue (or name and phase) and template tokens
GROWTH = 2  # messages a rebuilt prompt must be able to take before it collapses again
TEMPLATE_SLACK = 48  # tokens a chat template and a retry note may add to a collapse prompt


@dataclass(frozen=True)
class Budget:
    """Token budgets, all derived from the served window."""

    window: int
    reply: int  # kept free for the persona's reply
    trigger: int  # collapse when the next prompt passes this
    memory: int  # the memory block's budget
    fixed: int = 0  # what every prompt holds anyway: header, the longest instructions, template
    message: int = 0  # room one more message takes in the transcript

    @property
    def limit(self) -> int:
        """No prompt may be larger than this."""
        return self.window - self.reply

    @classmethod
    def derive(cls, window: int, reply: int, at_fraction: float, fixed: int) -> Budget:
        """The memory block gets a share of what the trigger leaves beside the fixed parts, but
        never so much that a rebuilt prompt could not take two more messages before the next
        collapse."""
        limit = window - reply
        trigger = max(1, min(int(window * at_fraction), limit))
        message = reply + MESSAGE_OVERHEAD
        free = max(0, trigger - fixed)
        memory = max(64, min(int(free * MEMORY_SHARE), free - GROWTH * message))
        return cls(window, reply, trigger, memory, fixed, message)


def budget_for(
    loaded: LoadedScenario, backend: Backend, settings: RunSettings, reply_reserve: int, at_fraction: float
) -> Budget:
    """The run's budgets: from the served window (``settings.num_ctx``) and what every prompt
    of its layout holds anyway (the header and the longest persona instructions)."""
    scenario, personas = loaded.scenario, loaded.personas
    layout = settings.layout
    header = backend.count_text_tokens(layout_header(scenario, personas, layout))
    instructions = max(
        backend.count_text_tokens(
            instructions_text(scenario, personas[name], TurnPlan(name, "phase"), layout)
        )
        for name in scenario.roster
    )
    return Budget.derive(
        settings.num_ctx, reply_reserve, at_fraction, header + instructions + TEMPLATE_SLACK
    )
