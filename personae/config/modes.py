"""Phase modes: instructions a phase adds on top of each speaker's persona.

A persona says who someone is; a mode says what the group is doing right now. The same Critic
plans differently than it reviews, and small models follow one short, concrete line better than a
change of persona. A scenario may reword these or add its own under ``modes:``.
"""

from __future__ import annotations

from personae.config.models import Scenario

BUILTIN_MODES: dict[str, str] = {
    "plan": "Mode: plan. Propose concrete steps toward the goal; do not criticise yet.",
    "brainstorm": "Mode: brainstorm. Offer new options without judging them.",
    "debate": (
        "Mode: debate. Answer the last point directly: agree or disagree, and give one reason."
    ),
    "critique": (
        "Mode: critique. Find flaws, risks and missing evidence in what was proposed; "
        "do not propose a new plan."
    ),
    "review": "Mode: review. Check the latest proposal against the goal and say what must change.",
    "conclude": (
        "Mode: conclude. Add no new ideas; state what was decided and what is still open."
    ),
}


def mode_table(scenario: Scenario) -> dict[str, str]:
    """Built-in modes, then the scenario's own (which win)."""
    return {**BUILTIN_MODES, **scenario.modes}
