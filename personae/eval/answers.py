"""Reading an answer out of a reply, and checking it. The raw reply is always stored beside it.

The rule is meant to give what a person reading the reply would call its answer, no more:

1. The last line that starts with ``ANSWER:`` (any case, after optional ``**``/``#`` markup) —
   what the cot, sample and crew instructions ask for — or with ``So the final answer is:``,
   self-ask's closing words (Press et al. 2022). The text after the colon is the answer.
2. Otherwise one line of the reply stands for it: the first non-empty line for a method asked
   to answer directly (``single`` and ``sc``), the last for one asked to reason first (``cot``,
   crew personas). A leading ``Name:`` speaker label is dropped.
3. In that text a sentence that states the answer is reduced to what it states: the words after
   the last `` is ``, `` are ``, `` = `` or ``:`` ("The capital of France is Paris." → "Paris").
   Trailing punctuation and a leading article go.

Then the check: ``number`` takes the last number of the answer text; ``choice`` a lone choice
letter (``B``, ``(B)``, ``B)``) or the text of exactly one choice; ``exact`` compares
case-insensitively with punctuation, articles and surrounding spaces ignored; ``regex`` searches
the pattern in the answer text. A reply with no answer in it is wrong, not skipped.
"""

from __future__ import annotations

import json
import re
import unicodedata

from personae.eval.tasks import Task

_ANSWER_LINE = re.compile(
    r"^[\s*#>_`-]*(?:so\s+the\s+final\s+answer\s+is|answer)\s*[:：]\s*(.*)$", re.IGNORECASE
)
_SPEAKER = re.compile(r"^[A-Z][\w .'-]{0,40}:\s+(?=\S)")
_STATES = re.compile(r"(?:\bis\b|\bare\b|=|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")  # ".5" is 0.5, not 5
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_LETTER = re.compile(r"^\(?([A-Z])[).:]?$")


def answer_line(reply: str, *, reasoned: bool) -> str:
    """Rules 1 and 2: the line the answer is read from ('' if the reply is empty)."""
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    for line in reversed(lines):
        match = _ANSWER_LINE.match(line)
        if match and match.group(1).strip(" *_`"):
            return match.group(1).strip(" *_`")
    if not lines:
        return ""
    line = lines[-1] if reasoned else lines[0]
    return _SPEAKER.sub("", line, count=1)


def json_field(reply: str, name: str) -> str | None:
    """The text of the string field ``name`` of a JSON object reply, also when the reply was cut
    (at ``num_predict``) before the string or the object closed; None if it has no such field.
    A structured reply that did not parse is stored as the model wrote it: this reads it."""
    match = re.search(rf'"{re.escape(name)}"\s*:\s*"((?:[^"\\]|\\.)*)', reply)
    if match is None:
        return None
    text = match.group(1)
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:  # cut inside an escape: keep the text as written
        return text


def extract(reply: str, *, reasoned: bool = False) -> str:
    """The answer a reply gives, by rules 1–3 of the module docstring ('' if none)."""
    text = answer_line(reply, reasoned=reasoned)
    parts = _STATES.split(text)
    stated = parts[-1].strip() if len(parts) > 1 and parts[-1].strip() else text
    trimmed = None
    while trimmed != stated:  # '"Paris."' → 'Paris': quotes and end punctuation, in any order
        trimmed, stated = stated, stated.strip().rstrip(".!?;,").strip(" \"'*_`“”")
    return _ARTICLE.sub("", stated).strip()


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = re.sub(r"[^\w\s.-]", " ", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    return _ARTICLE.sub("", text)


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def chosen(answer: str, choices: tuple[str, ...]) -> str | None:
    """The choice an answer names: by its letter alone, or by exactly one choice's text."""
    letter = _LETTER.match(answer.strip().upper()) if len(answer.strip()) <= 3 else None
    if letter and ord(letter.group(1)) - ord("A") < len(choices):
        return choices[ord(letter.group(1)) - ord("A")]
    said = normalize(answer)
    named = [c for c in choices if normalize(c) and re.search(rf"\b{re.escape(normalize(c))}\b", said)]
    return named[0] if len(named) == 1 else None


def is_correct(task: Task, answer: str) -> bool:
    """Is the extracted ``answer`` the task's answer, by the task's check?"""
    if task.score is not None:
        return bool(answer) and task.score(answer) >= 1.0
    if task.check == "number":
        got, want = last_number(answer), last_number(task.answer)
        return got is not None and want is not None and abs(got - want) <= 1e-9 * max(1.0, abs(want))
    if task.check == "choice":
        expected = task.answer
        if expected not in task.choices:  # given as a letter
            expected = task.choices[ord(expected.upper()) - ord("A")]
        return chosen(answer, task.choices) == expected
    if task.check == "regex":
        return bool(answer) and re.search(task.answer, answer, re.IGNORECASE) is not None
    return bool(answer) and normalize(answer) == normalize(task.answer)
