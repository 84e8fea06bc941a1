"""``personae model serve``: the embedded engine as an OpenAI-compatible HTTP endpoint.

The very server the embedded backend runs in-process (llama.cpp's own, through xllamacpp), on a
port other tools can reach: Personae's ``openai`` backend, AutoGen or CrewAI in
``benchmarks/peers.py``, curl. So a comparison between them uses the same engine and the same model.
"""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from personae.cli.output import out, shown, user_errors


@user_errors
def serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless others must reach it.")] = "127.0.0.1",
    model: Annotated[
        str | None, typer.Option(help="A .gguf file (default: the bundled SmolLM2-135M-Instruct).")
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Requests served at once, each with its own cache (default: $PERSONAE_SLOTS, else 1)."),
    ] = None,
    num_ctx: Annotated[
        int | None, typer.Option("--num-ctx", min=64, help="The window of each slot in tokens (default: the model's trained window, split across slots)."),
    ] = None,
) -> None:
    """Serve the embedded model over HTTP (OpenAI-compatible /v1), until Ctrl-C."""
    from personae.llm.backends import check_model_flag
    from personae.llm.embedded import Engine, resolve_model_path, slots_setting

    check_model_flag("embedded", model)
    path = resolve_model_path(model)
    engine = Engine(
        path, num_ctx=num_ctx, slots=slots_setting(slots), host=host, port=port, api_key=None,
        alias=path.stem,
    )
    try:
        out.print(
            f"serving {shown(path.stem)} at {shown(engine.base_url)}/v1 (OpenAI-compatible; "
            f"{engine.slots} slot(s) of {engine.slot_ctx} tokens). Ctrl-C stops it.",
            highlight=False,
        )
        out.file.flush()
        threading.Event().wait()
    except KeyboardInterrupt:
        out.print("stopped.")
    finally:
        engine.close()
