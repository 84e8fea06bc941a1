"""An OpenAI-compatible server, started for tests on 127.0.0.1: ``personae model serve``.

The openai backend must be exercised through the official ``openai`` client against a real server
that generates, not a stand-in: this starts ``personae model serve`` (llama.cpp's own server,
through xllamacpp) with the bundled SmolLM2-135M GGUF on a free loopback port, in a subprocess
that tests may kill, and stops it afterwards. It needs ``personae[embedded]``.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SERVER_MODULES = ("xllamacpp",)


def missing_modules() -> list[str]:
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # ends in /v1, as OpenAI clients expect
    log: Path  # the server's output


@contextmanager
def model_server(model: Path, log_dir: Path, *, n_ctx: int = 2048, startup_s: float = 120) -> Iterator[RunningServer]:
    port = free_port()
    log = log_dir / "model-serve.log"
    command = [
        sys.executable, "-c", "from personae.cli import main; main()", "model", "serve",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--num-ctx", str(n_ctx),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"personae model serve exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"personae model serve did not answer in {startup_s} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield RunningServer(base_url=base_url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
