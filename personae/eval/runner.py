"""Running one method on one task: ordinary Personae runs, then the answer read out of them.

Every sample and every deliberation is a run in the store (``personae show RUN`` shows it,
``personae replay RUN`` re-executes it); this module only drives them and reads the answers.
What a run cost is read back from the store: the evaluated prompt tokens and the completion
tokens of every call it made (turns, retries, collapses, speaker selection).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from personae.config.loader import LoadedScenario, load_scenario_text
from personae.eval.answers import chosen, extract, is_correct, json_field, last_number, normalize
from personae.eval.methods import SAMPLE_TEMPERATURE, Method, one_call_scenario
from personae.eval.task_documents import common_folder, named_from
from personae.eval.tasks import Task
from personae.llm.base import Backend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.models import Message
from personae.store.repo import Store

HUMAN = "User"
FINAL_STEP = "final answer"  # self-ask's closing step, "So the final answer is"
SINGLE_TOKENS = 48  # num_predict of a direct answer: a short line
REASONED_TOKENS = 200  # num_predict of a cot answer or sample: a few sentences and ANSWER:


@dataclass(frozen=True)
class RunCost:
    run_id: int
    evaluated_prompt_tokens: int
    completion_tokens: int
    wall_ns: int
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Outcome:
    """One method on one task: the answer, whether it is right, what it cost, and its runs."""

    answer: str
    correct: bool
    reply: str  # the reply the answer was read from, as the model wrote it
    run_ids: tuple[int, ...]
    evaluated_prompt_tokens: int
    completion_tokens: int
    wall_ns: int
    votes: tuple[str, ...] = ()  # sc and vote: every answer that voted
    first_answer: str | None = None  # crew: the first speaker's first answer
    first_correct: bool | None = None

    @property
    def tokens(self) -> int:
        """The budget currency: evaluated prompt tokens plus completion tokens."""
        return self.evaluated_prompt_tokens + self.completion_tokens


ScenarioLoader = Callable[[Method, Task], LoadedScenario]


@dataclass
class Runner:
    """Runs methods on tasks against one backend and store. ``seed`` makes every run repeatable;
    ``load_crew`` loads a crew scenario with the task's question as its ``question`` variable."""

    backend: Backend
    store: Store
    load_crew: ScenarioLoader
    seed: int = 0
    num_ctx: int = 2048
    # crew:S and vote:S on one scenario read the same deliberation (same scenario, question and
    # seed give the same run): it runs once, and each method is charged its tokens.
    _deliberations: dict[tuple[str, str], RunCost] = field(default_factory=dict)

    def run(self, method: Method, task: Task, *, samples: int | None = None) -> Outcome:
        if method.kind == "single":
            return self._one_call(task, reasoned=False, temperature=0.0)
        if method.kind == "cot":
            return self._one_call(task, reasoned=True, temperature=0.0)
        if method.kind == "sc":
            return self.sample(task, [self._sample_run(task, i) for i in range(samples or method.samples)])
        return self._deliberate(method, task)

    def sample_run(self, task: Task, index: int) -> RunCost:
        """The ``index``-th self-consistency sample of ``task`` (seed + index)."""
        return self._sample_run(task, index)

    def sample(self, task: Task, runs: Sequence[RunCost]) -> Outcome:
        """Self-consistency over sample runs: the majority answer."""
        replies = [_last_said(r.messages) for r in runs]
        answers = [extract(reply, reasoned=True) for reply in replies]
        winner = majority(task, answers)
        reply = replies[answers.index(winner)] if winner in answers else (replies[0] if replies else "")
        return _outcome(task, winner, reply, runs, votes=tuple(answers))

    def _sample_run(self, task: Task, index: int) -> RunCost:
        loaded = one_call(task, reasoned=True, temperature=SAMPLE_TEMPERATURE,
                          num_predict=REASONED_TOKENS, num_ctx=self.num_ctx)
        return self._execute(loaded, seed=self.seed + index)

    def _one_call(self, task: Task, *, reasoned: bool, temperature: float) -> Outcome:
        loaded = one_call(task, reasoned=reasoned, temperature=temperature,
                          num_predict=REASONED_TOKENS if reasoned else SINGLE_TOKENS,
                          num_ctx=self.num_ctx)
        run = self._execute(loaded, seed=self.seed)
        reply = _last_said(run.messages)
        return _outcome(task, extract(reply, reasoned=reasoned), reply, [run])

    def _deliberate(self, method: Method, task: Task) -> Outcome:
        key = (str(method.scenario), task.id)
        if key not in self._deliberations:
            self._deliberations[key] = self._execute(self.load_crew(method, task), seed=self.seed)
        run = self._deliberations[key]
        spoken = [m for m in run.messages if m.persona != HUMAN]
        first = persona_answer(spoken[0]) if spoken else ""
        first_correct = is_correct(task, first) if spoken else None
        if method.kind == "vote":
            last: dict[str, Message] = {}
            for message in spoken:
                last[message.persona] = message
            answers = [persona_answer(m) for m in last.values()]
            winner = majority(task, answers)
            reply = next((_said(m) for m in last.values() if persona_answer(m) == winner), "")
            return _outcome(task, winner, reply, [run], votes=tuple(answers),
                            first_answer=first, first_correct=first_correct)
        final = spoken[-1] if spoken else None
        answer = persona_answer(final) if final is not None else ""
        return _outcome(task, answer, _said(final) if final is not None else "", [run],
                        first_answer=first, first_correct=first_correct)

    def _execute(self, loaded: LoadedScenario, *, seed: int) -> RunCost:
        settings = settings_for(loaded, self.backend, seed=seed)
        orchestrator = Orchestrator(loaded, self.backend, self.store, settings)
        run_id = start_run(self.store, loaded, self.backend, settings)
        started = time.monotonic_ns()
        for _event in orchestrator.run(run_id):
            pass
        wall = time.monotonic_ns() - started
        totals = self.store.totals(run_id)
        return RunCost(run_id, totals.evaluated_tokens, totals.completion_tokens, wall,
                       tuple(self.store.messages(run_id)))


def one_call(task: Task, *, reasoned: bool, temperature: float, num_predict: int,
             num_ctx: int) -> LoadedScenario:
    """The one-call scenario of ``task`` (single, cot, a sample), loaded. A task with documents
    gets them as the scenario's ``documents:``, named from the folder that holds them all (so
    they lie inside the scenario's folder: the task file already checked where they may lie)."""
    base = common_folder(task.documents) if task.documents else None
    text = one_call_scenario(
        task.question, reasoned=reasoned, temperature=temperature, num_predict=num_predict,
        num_ctx=num_ctx, documents=named_from(base, task.documents) if base is not None else (),
    )
    return load_scenario_text(text, base_dir=base)


def persona_answer(message: Message) -> str:
    """A persona's answer: its structured ``answer`` field if it has one (the eval crew's Decider,
    the chain's Manager), else its reply, read by the rules of ``answers.py`` (as a reasoned
    reply: ANSWER: or "So the final answer is:" line, else last line). A structured reply
    without that field is read as the others read it — its rendered text (self-ask's
    ``{"step": "So the final answer is", "text": …}`` renders to "So the final answer is: …"),
    not the raw JSON the model wrote. A structured reply cut at ``num_predict`` before its JSON
    closed did not parse: its ``answer`` field (or self-ask's final ``text``) is read from the
    raw text as far as it goes."""
    if message.structured and isinstance(message.structured.get("answer"), (str, int, float)):
        # The field may hold a sentence ("The capital of France is Paris."): rule 3 applies.
        return extract(str(message.structured["answer"]), reasoned=True)
    if message.structured:
        return extract(message.content, reasoned=True)
    said = _said(message)
    cut = json_field(said, "answer")  # a structured reply cut before its JSON closed
    if cut is None and FINAL_STEP in (json_field(said, "step") or "").lower():
        cut = json_field(said, "text")
    return extract(said if cut is None else cut, reasoned=True)


def vote_key(task: Task, answer: str) -> str:
    """What makes two answers the same vote: the number, the choice, or the normalized text."""
    if task.check == "number":
        value = last_number(answer)
        return "" if value is None else repr(value)
    if task.check == "choice":
        return chosen(answer, task.choices) or ""
    return normalize(answer)


def majority(task: Task, answers: Sequence[str]) -> str:
    """The answer most answers agree on (by ``vote_key``); ties go to the one given first; an
    empty answer never wins over a real one."""
    keys = [vote_key(task, a) for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return answers[0] if answers else ""
    best = max(counts.values())
    for key, answer in zip(keys, answers):
        if key and counts[key] == best:
            return answer
    raise AssertionError("unreachable: a counted key is among the keys")


def _said(message: Message) -> str:
    return message.raw if message.raw is not None else message.content


def _last_said(messages: Sequence[Message]) -> str:
    spoken = [m for m in messages if m.persona != HUMAN]
    return _said(spoken[-1]) if spoken else ""


def _outcome(task: Task, answer: str, reply: str, runs: Sequence[RunCost], *,
             votes: tuple[str, ...] = (), first_answer: str | None = None,
             first_correct: bool | None = None) -> Outcome:
    return Outcome(
        answer=answer,
        correct=is_correct(task, answer),
        reply=reply,
        run_ids=tuple(r.run_id for r in runs),
        evaluated_prompt_tokens=sum(r.evaluated_prompt_tokens for r in runs),
        completion_tokens=sum(r.completion_tokens for r in runs),
        wall_ns=sum(r.wall_ns for r in runs),
        votes=votes,
        first_answer=first_answer,
        first_correct=first_correct,
    )
