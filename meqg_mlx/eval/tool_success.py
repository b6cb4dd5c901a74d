"""Tool success at tight budgets: Diamond episodes whose prompt hands the python tool a program,
the program's printed result being the answer.

The programs are generated with their answers computed here from the same parameters, never by
running them. An episode succeeds when it ends within its budget on a concept that decodes to the
answer: the answer's text is the nearest candidate (the store's concepts plus every task's answer)
to the concept the episode ends on (its last accepted step, else the tool's observation). The tool
runs before the rollout, so whether the tool answered (`tool_answered`) is the same for every
variant by construction; what the gate and the ledger can change is whether the rollout keeps the
answer, drifts off it, or overruns the budget.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import Progress, no_progress
from .chains import Candidates

DEFAULT_TASKS = 24
WARM_UP_SECONDS = 10.0  # the first episode pays for loading and the sandbox probe; it is not counted
WORDS = ("pear", "plum", "fig", "kiwi", "lime", "date", "apple", "mango", "grape", "melon", "peach", "cherry")


@dataclass(frozen=True)
class ToolTask:
    name: str
    code: str
    answer: str

    @property
    def prompt(self) -> str:
        return f"What does this program print?\n```python\n{self.code}\n```"


def _arithmetic(r: random.Random) -> tuple[str, str]:
    a, b, c = r.randint(12, 99), r.randint(12, 99), r.randint(1, 999)
    return f"print({a} * {b} + {c})", str(a * b + c)


def _triangle(r: random.Random) -> tuple[str, str]:
    n = r.randint(20, 400)
    return f"print(sum(range({n})))", str(n * (n - 1) // 2)


def _factorial(r: random.Random) -> tuple[str, str]:
    n = r.randint(5, 14)
    return f"import math\nprint(math.factorial({n}))", str(math.factorial(n))


def _sorted_words(r: random.Random) -> tuple[str, str]:
    words = r.sample(WORDS, 3)
    return f"print('-'.join(sorted({words!r})))", "-".join(sorted(words))


def _reversed_upper(r: random.Random) -> tuple[str, str]:
    word = r.choice(WORDS) + r.choice(WORDS)
    return f"print({word!r}[::-1].upper())", word[::-1].upper()


def _multiples(r: random.Random) -> tuple[str, str]:
    n, k = r.randint(50, 500), r.randint(3, 9)
    return f"print(len([x for x in range({n}) if x % {k} == 0]))", str((n - 1) // k + 1)


def _largest(r: random.Random) -> tuple[str, str]:
    numbers = [r.randint(-500, 500) for _ in range(6)]
    return f"print(max({numbers}) - min({numbers}))", str(max(numbers) - min(numbers))


FAMILIES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "arithmetic": _arithmetic,
    "triangle": _triangle,
    "factorial": _factorial,
    "sorted-words": _sorted_words,
    "reversed-upper": _reversed_upper,
    "multiples": _multiples,
    "spread": _largest,
}


def generate_tasks(count: int = DEFAULT_TASKS, seed: int = 0) -> list[ToolTask]:
    """`count` programs, the families taken in turn, parameters from `seed`: the same list on every machine."""
    if count < 1:
        raise InputError(f"tool tasks: need at least 1, got {count}")
    r = random.Random(seed)
    families = list(FAMILIES.items())
    tasks = []
    for i in range(count):
        family, make = families[i % len(families)]
        code, answer = make(r)
        tasks.append(ToolTask(f"{family}-{i}", code, answer))
    return tasks


def parse_budgets(text: str) -> tuple[float, ...]:
    """'0.1,0.25' -> (0.1, 0.25); '' -> () (tool success not measured); anything else is a one-line error."""
    budgets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            seconds = float(part)
        except ValueError:
            raise InputError(f"--tool-budgets: {part!r} is not a number of seconds") from None
        if not math.isfinite(seconds) or not 0 < seconds <= 60:
            raise InputError(f"--tool-budgets: {part!r} must be in (0, 60] seconds")
        budgets.append(seconds)
    return tuple(sorted(set(budgets)))


def require_sandbox() -> None:
    """Tool episodes run generated programs only under OS isolation; without it, one line before any work."""
    from ..sandbox import SandboxUnavailable, isolation

    found = isolation()
    if not found.safe:
        raise SandboxUnavailable(
            f"tool success needs the OS sandbox, and there is none here ({found.detail or 'unsupported platform'}): "
            "install bubblewrap (Linux), or pass --tool-budgets '' to skip it"
        )


@dataclass
class ToolReport:
    budgets: list[float]
    tasks: int
    success: list[float]  # per budget: share of episodes ending within it on the answer
    tool_answered: list[float]  # per budget: share whose python tool printed the answer in time
    kept: list[float]  # per budget: of those the tool answered, the share the rollout ended on the answer
    mean_seconds: list[float]  # per budget: mean wall seconds of an episode
    mean_steps: list[float]  # per budget: mean accepted rollout steps
    stopped_by: list[dict]  # per budget: why episodes ended, counted

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate_tools(
    engine,
    tasks: list[ToolTask],
    budgets: tuple[float, ...],
    candidates: Candidates,
    answer_rows: list[int],
    progress: Progress = no_progress,
    label: str = "tool episodes",
) -> ToolReport:
    """Every task at every budget (budgets interleaved, so a change in machine load touches them alike);
    `answer_rows[i]` is the candidate row of task i's answer."""
    from ..episode.budget import Budget

    if not budgets:
        raise InputError("tool success needs at least one budget")
    engine.episode(tasks[0].prompt, ["python"], Budget(seconds=WARM_UP_SECONDS))
    outcomes: dict[float, list[Outcome]] = {b: [] for b in budgets}
    total = len(tasks) * len(budgets)
    for i, task in enumerate(tasks):
        for j, seconds in enumerate(budgets):
            result = engine.episode(task.prompt, ["python"], Budget(seconds=seconds))
            outcomes[seconds].append(Outcome.of(result, task.answer, seconds, candidates, answer_rows[i]))
            progress(label, i * len(budgets) + j + 1, total)

    def mean(field: str, b: float, among=lambda o: True) -> float:
        chosen = [getattr(o, field) for o in outcomes[b] if among(o)]
        return float(np.mean(chosen)) if chosen else math.nan

    return ToolReport(
        budgets=list(budgets),
        tasks=len(tasks),
        success=[mean("success", b) for b in budgets],
        tool_answered=[mean("tool_answered", b) for b in budgets],
        kept=[mean("success", b, among=lambda o: o.tool_answered) for b in budgets],
        mean_seconds=[mean("seconds", b) for b in budgets],
        mean_steps=[mean("steps", b) for b in budgets],
        stopped_by=[dict(Counter(o.stopped_by for o in outcomes[b])) for b in budgets],
    )


@dataclass
class Outcome:
    """One episode of one task at one budget."""

    success: bool
    tool_answered: bool
    seconds: float
    steps: int
    stopped_by: str

    @classmethod
    def of(cls, result, answer: str, budget: float, candidates: Candidates, answer_row: int) -> "Outcome":
        telemetry = result.response["telemetry"]
        observation = telemetry["tools"][0]  # {"skipped": why} when there was no time to run it
        ends_on_answer = int(np.argmax(candidates.vectors @ result.final)) == answer_row  # scale cannot move argmax
        spent = telemetry["budget"]["seconds"]
        return cls(
            success=ends_on_answer and spent <= budget,
            tool_answered=bool(observation.get("ok")) and observation["text"] == answer,
            seconds=spent,
            steps=len(result.response["concepts"]),
            stopped_by=telemetry["stopped_by"],
        )


def evaluate_run_tools(
    run_dir,
    budgets: tuple[float, ...],
    count: int = DEFAULT_TASKS,
    embedder=None,
    progress: Progress = no_progress,
    label: str = "tool episodes",
    store_path=None,
) -> ToolReport:
    """The run's latest checkpoint (on its store, or at `store_path`: moved) in Diamond episodes with the
    python tool (it needs the OS sandbox)."""
    from ..concepts.text import normalize_text
    from ..corpus.sequences import ConceptTable
    from ..episode.engine import DiamondEngine
    from .tasks import store_candidates, with_texts

    require_sandbox()
    engine = DiamondEngine.from_run(run_dir, embedder, store_path)
    tasks = generate_tasks(count)
    candidates, row_of = with_texts(
        store_candidates(engine.store, ConceptTable(engine.store)), [t.answer for t in tasks], engine.embedder
    )
    rows = [row_of[normalize_text(t.answer)] for t in tasks]
    return evaluate_tools(engine, tasks, budgets, candidates, rows, progress, label)
