"""llama-cpp-python's OpenAI-compatible server, plus a ledger of every generation it ran.

    python benchmarks/llama_server.py --model FILE.gguf --port 8765 --ledger calls.jsonl

This is ``python -m llama_cpp.server`` (same ``create_app``, same settings, verbose log on), with
one addition for measurement: ``Llama.generate`` is wrapped to append one JSON line per call to
``--ledger`` — the prompt token ids it was given and the completion token ids it produced (end of
generation tokens excluded, as the server's ``usage.completion_tokens`` excludes them). The wrapper
passes every argument and token through untouched, so the server behaves exactly as shipped. The
ledger lets ``peers.py`` count tokens for frameworks whose client never sees ``usage`` (streamed
replies; llama-cpp-python sends no usage in streams) and compute the ideal prefix reuse. What the
server actually re-evaluated comes from its own verbose log ("N prefix-match hit, remaining M prompt
tokens to eval", and llama.cpp's per-request "prompt eval time … / M tokens").

Runs in the project venv, where llama-cpp-python is installed with Personae's ``embedded`` extra
and the server extras of its ``test`` extra (fastapi, uvicorn, sse-starlette, starlette-context,
pydantic-settings).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def install_ledger(path: Path) -> None:
    import llama_cpp
    from llama_cpp import Llama

    original = Llama.generate
    sink = path.open("a", encoding="utf-8", buffering=1)
    lock = threading.Lock()

    def generate(self: Llama, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        prompt = [int(t) for t in tokens]
        completion: list[int] = []
        started = time.perf_counter()
        try:
            for token in original(self, prompt, *args, **kwargs):
                if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                    completion.append(int(token))
                yield token
        finally:
            record = {"prompt": prompt, "completion": completion, "seconds": time.perf_counter() - started}
            with lock:
                sink.write(json.dumps(record) + "\n")

    Llama.generate = generate  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ledger", type=Path, required=True)
    args = parser.parse_args()

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    install_ledger(args.ledger)
    app = create_app(
        server_settings=ServerSettings(host=args.host, port=args.port),
        model_settings=[
            ModelSettings(
                model=str(args.model),
                model_alias="smollm2",
                n_ctx=args.n_ctx,
                n_threads=args.threads,
                n_threads_batch=args.threads,
                verbose=True,
            )
        ],
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
