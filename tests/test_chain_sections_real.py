"""A chain of agents by sections on the bundled model (SmolLM2-135M, embedded): the packing is
measured with the model's own tokenizer and chat template, so the prompts the engine reports must
stay within the window less the reply, and sections must still be packed several chunks a turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae.llm.embedded import EmbeddedBackend
from tests.builders import make_scenario
from tests.durable_support import run_to_end
from tests.test_recipes_real import keepers_log, prompt_sizes_and_citations

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WINDOW = 640
REPLY = 24


def test_a_chain_by_sections_packs_chunks_within_the_real_window(tmp_path: Path) -> None:
    backend = EmbeddedBackend(num_ctx=WINDOW)
    try:
        document = keepers_log(tmp_path, 4 * WINDOW, backend)
        text = make_scenario(
            "policy: {type: chain, worker: Worker, manager: Manager, unit: section}\n",
            name="sections-real", goal="Which ships did the keepers sight?",
            personas="personas:\n"
            f"  - {{name: Worker, description: reads, system: Keep notes., options: {{num_predict: {REPLY}}}}}\n"
            f"  - {{name: Manager, description: answers, system: Answer., options: {{num_predict: {REPLY}}}}}\n",
            extra=f"documents: [{document.name}]\nmemory: {{num_ctx: {WINDOW}, collapse: null}}\n"
            "termination: {max_turns: 40}\noptions: {temperature: 0}\n",
        )
        store, run_id = run_to_end(tmp_path / "real.db", text, backend, seed=1)
    finally:
        backend.close()
    chunks = [c.id for c in store.memory_nodes(run_id, ["chunk"])]
    messages = store.messages(run_id)
    units = messages[:-1]
    assert [c for m in units for c in m.meta["chunks"]] == chunks  # each once, in order
    sections = [m.meta["section"] for m in units]
    assert sections == sorted(sections) and len(set(sections)) == units[0].meta["of"]
    assert any(len(m.meta["chunks"]) > 1 for m in units)  # really packed, not a chunk walk
    assert messages[-1].persona == "Manager" and store.run(run_id).stop_reason == "answered"
    sizes, cited = prompt_sizes_and_citations(tmp_path / "real.db", run_id)
    assert len(sizes) == len(messages) and 0 < max(sizes) <= WINDOW - REPLY
    assert cited == len(chunks)
