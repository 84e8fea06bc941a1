"""Scale of inspection: `show`, `runs` and `search` on a database of 1,000,000 messages.

Run from the repository root, in the project venv:

    python benchmarks/scale.py                      # builds benchmarks/.results/scale.db once (~2-4 min)
    python benchmarks/scale.py --runs 100 --turns 10000 --reps 5 --rebuild

The database is made by Personae's own migrations (``Store.open``), then filled by bulk SQL:
``--runs`` runs of ``--turns`` turns each (default 100 × 10,000 = 1,000,000 messages), each message
40 words drawn from a 5,000-word vocabulary with a Zipf-like skew, plus a few planted phrases
("eviction policy" in 1 message of 1,000) so searches have rare and common terms to find. The
full-text index is rebuilt once after the insert (FTS5 ``rebuild``) instead of row by row through
the trigger, which is the same index, 10× faster to build. Only the tables these commands read are
filled (runs, messages, messages_fts); llm_calls and the memory graph stay empty.

Timed, as medians of ``--reps`` (after one warm-up), in wall seconds and in CPU seconds of this
process and its children (on a machine shared with other work the CPU figure is the steady one):
- show of one 10,000-turn run through the library (``Store.run`` + ``Store.messages`` +
  ``run_format.run_text``) and through the CLI (``personae show RUN``, a subprocess: Python start-up and
  imports included);
- runs: ``Store.runs()`` and ``personae runs``;
- search: ``Store.search`` for a rare phrase, a mid-frequency word and a common word, and
  ``personae search`` for the phrase.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers_env import median  # noqa: E402

PERSONAS = ("Planner", "Analyst", "Critic", "Summarizer")
PHRASE = "eviction policy"
PHRASE_EVERY = 1000  # one message in this many mentions the phrase


def vocabulary(size: int, rng: random.Random) -> list[str]:
    syllables = ["ca", "che", "lo", "ra", "ti", "ser", "ver", "pro", "mi", "na", "da", "ta", "ko", "re", "la", "po"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def message_pool(rng: random.Random, size: int = 20_000) -> list[str]:
    """Distinct 40-word messages; the word ranks follow a Zipf-like skew as real text does."""
    words = vocabulary(5000, rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=40)) for _ in range(size)]


def build(db: Path, runs: int, turns: int) -> dict[str, Any]:
    from personae.store.repo import Store

    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    Store.open(db).close()  # the schema, exactly as migrations make it
    rng = random.Random(7)
    pool = message_pool(rng)
    started = time.perf_counter()
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    triggers = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='messages'"
    ).fetchall()
    now = datetime.utcnow().isoformat(sep=" ")
    with connection:
        for name, _sql in triggers:
            connection.execute(f"DROP TRIGGER {name}")
        for run_id in range(1, runs + 1):
            connection.execute(
                *_insert(connection, "runs", {
                    "id": run_id, "scenario_name": f"scale-{run_id}", "scenario_path": None,
                    "scenario_yaml": "name: scale\n", "status": "completed", "stop_reason": "max_turns",
                    "backend": "scripted", "model": "scripted", "layout": "cache_friendly",
                    "num_ctx": 4096, "max_turns": turns, "started_at": now, "finished_at": now,
                    "turns": turns, "prompt_tokens": 0, "evaluated_tokens": 0, "completion_tokens": 0,
                    "personae_version": "scale",
                })
            )
            rows = (
                (run_id, turn, PERSONAS[(turn - 1) % 4],
                 pool[rng.randrange(len(pool))] + (f" The {PHRASE} matters." if rng.randrange(PHRASE_EVERY) == 0 else ""),
                 now)
                for turn in range(1, turns + 1)
            )
            connection.executemany(
                "INSERT INTO messages (run_id, turn, persona, content, created_at) VALUES (?, ?, ?, ?, ?)", rows
            )
        connection.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        for _name, sql in triggers:
            connection.execute(sql)
    connection.execute("PRAGMA optimize")
    count = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    connection.close()
    return {"messages": count, "build_s": time.perf_counter() - started, "size_mb": db.stat().st_size / 2**20}


def _insert(connection: sqlite3.Connection, table: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """An INSERT with ``values``, filling any other NOT NULL column without a default (columns a
    later migration may add) with 0 or ''."""
    columns = connection.execute(f"PRAGMA table_info({table})").fetchall()
    row = dict(values)
    for _cid, name, kind, notnull, default, pk in columns:
        if name not in row and notnull and default is None and not pk:
            row[name] = 0 if "INT" in (kind or "").upper() else ""
    row = {k: v for k, v in row.items() if k in {c[1] for c in columns}}
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values())


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process plus its children: a CLI run)."""
    fn()  # warm-up: page cache and imports, as a second `show` would find them
    walls, cpus = [], []
    for _ in range(reps):
        before = _cpu()
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - before)
    return median(walls), median(cpus)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cli(db: Path, *args: str) -> Callable[[], int]:
    def run() -> int:
        done = subprocess.run(
            [sys.executable, "-m", "personae", *args, "--db", str(db)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        if done.returncode not in (0, 1):
            raise RuntimeError(done.stderr.decode()[-2000:])
        return len(done.stdout)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="show / runs / search on a 1,000,000-message database.")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--db", type=Path, default=HERE / ".results" / "scale.db")
    parser.add_argument("--rebuild", action="store_true", help="Build the database again.")
    args = parser.parse_args()

    from personae.run_format import run_text
    from personae.store.repo import Store

    args.db.parent.mkdir(parents=True, exist_ok=True)
    expected = args.runs * args.turns
    have = 0
    if args.db.exists() and not args.rebuild:
        with sqlite3.connect(args.db) as c:
            have = c.execute("SELECT count(*) FROM messages").fetchone()[0]
    if have != expected:
        print(f"building {args.db}: {args.runs} runs × {args.turns:,} turns …", flush=True)
        built = build(args.db, args.runs, args.turns)
        print(f"built {built['messages']:,} messages in {built['build_s']:.0f} s, {built['size_mb']:.0f} MB", flush=True)
    store = Store.open(args.db)
    run_id = args.runs // 2

    def show_library() -> int:
        run = store.run(run_id)
        return len(run_text(run, store.messages(run_id)))

    results: dict[str, tuple[float, float]] = {}
    results["show (library)"] = timed(show_library, args.reps)
    results["show (CLI)"] = timed(cli(args.db, "show", str(run_id)), args.reps)
    results["runs (library)"] = timed(lambda: len(store.runs()), args.reps)
    results["runs (CLI)"] = timed(cli(args.db, "runs"), args.reps)
    with sqlite3.connect(args.db) as c:
        mid_word, common_word = _words_by_frequency(c)
    for label, query in ((f'"{PHRASE}" (rare)', PHRASE), (f"{mid_word} (mid)", mid_word), (f"{common_word} (common)", common_word)):
        results[f"search {label} (library)"] = timed(lambda q=query: store.search(q), args.reps)
    results[f'search "{PHRASE}" (CLI)'] = timed(cli(args.db, "search", PHRASE), args.reps)
    store.close()

    print()
    print(f"{expected:,} messages in {args.runs} runs of {args.turns:,} turns; medians of {args.reps}")
    print("| operation | median wall s | median CPU s |")
    print("|---|---|---|")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    out = HERE / ".results" / "scale.json"
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"all numbers: {out}")


def _words_by_frequency(connection: sqlite3.Connection) -> tuple[str, str]:
    """A word in about 1% of messages and the most common word, from the FTS vocabulary."""
    connection.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_vocab USING fts5vocab(main, messages_fts, row)")
    total = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    common = connection.execute("SELECT term FROM temp.fts_vocab ORDER BY doc DESC LIMIT 1").fetchone()[0]
    mid = connection.execute(
        "SELECT term FROM temp.fts_vocab WHERE doc <= ? ORDER BY doc DESC LIMIT 1", (total // 100,)
    ).fetchone()[0]
    return mid, common


if __name__ == "__main__":
    main()
