"""The STaR loop: iteration 0 is the few-shot baseline; then, per iteration,
generate -> rationalize -> filter -> fine-tune from the base model -> evaluate.

Every phase is resumable: attempts are stored in batches as they are made, a
phase skips the questions that already have attempts, fine-tuning restarts from
the base model (it is deterministic given the seed and the kept set), and the
iteration row records which phase is next. A run killed at any moment continues
from the last stored batch with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .config import RunConfig
from .errors import RunStateError, StarError
from .exemplars import exemplars_for_run, resolve_run_set
from .finetune import Example, TrainSettings, finetune, save_checkpoint
from .generate import Decoding, PrefixGenerator
from .model import LoadedModel, check_model_spec, load_model
from .store import AttemptRow, KeptCandidate, Store
from .tasks import Problem, Task, get_task, hint_leak
from .tasks.base import STOP_TEXT, build_prefix, cut_at_stop, rationale_of


class Reporter(Protocol):
    """Where a run reports progress besides the store (the CLI's progress bars)."""

    def phase(self, iteration: int, phase: str, total: int) -> None: ...

    def advance(self, done: int, total: int, tokens_per_s: float | None, note: str = "") -> None: ...

    def message(self, text: str) -> None: ...


class _Silent:
    def phase(self, iteration, phase, total): pass

    def advance(self, done, total, tokens_per_s, note=""): pass

    def message(self, text): pass


class Cancelled(Exception):
    """The user asked the run to stop; it can be resumed."""


def start_run(store: Store, config: RunConfig, reporter: Reporter | None = None) -> int:
    """Create a run (validating its task, exemplars and data first: a bad file stores nothing) and return its id."""
    task = get_task(config.task, config)
    exemplar_set = resolve_run_set(store, task, config.exemplars)  # NAME, NAME@VERSION, or '' = the task's default
    check_model_spec(config.model)
    problems = task.problems(config)
    report = getattr(task, "report", None)
    if report is not None and reporter is not None:
        reporter.message(report.summary())
    run_id = store.create_run(config)
    store.use_exemplar_set(run_id, exemplar_set.id)  # frozen: the run keeps pointing to this exact version
    store.save_problems(run_id, problems)
    return run_id


def execute_run(store: Store, run_id: int, reporter: Reporter | None = None) -> None:
    """Run (or resume) every remaining phase of a run, recording how it ended."""
    store.claim_run(run_id)
    try:
        _Runner(store, run_id, reporter or _Silent()).run()
    except Cancelled:
        store.finish_run(run_id, "cancelled")
        raise
    except KeyboardInterrupt:
        store.finish_run(run_id, "cancelled", "interrupted from the keyboard")
        raise
    except StarError as exc:
        store.finish_run(run_id, "failed", str(exc))
        raise
    except Exception as exc:
        store.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        raise
    store.finish_run(run_id, "done")


@dataclass
class _Phase:
    iteration: int
    name: str
    total: int
    started: float
    done: int = 0
    new_tokens: int = 0


class _Runner:
    def __init__(self, store: Store, run_id: int, reporter: Reporter):
        self.store, self.run_id, self.reporter = store, run_id, reporter
        run = store.get_run(run_id)
        self.config: RunConfig = run.config
        self.task: Task = get_task(self.config.task, self.config)
        self.problems = store.load_problems(run_id) or self._save_problems()
        self.train = [p for p in self.problems if p.split == "train"]
        self.eval = [p for p in self.problems if p.split == "eval"]
        exemplars = exemplars_for_run(store, run_id, self.task)
        self.prefix = build_prefix(self.task, exemplars, with_hints=False)
        self.hint_prefix = build_prefix(self.task, exemplars, with_hints=True)
        self.folder = store.run_folder(run_id)
        self.filter_steps = self.config.filter == "verified" and self.task.can_verify_steps
        self._model: LoadedModel | None = None
        self._model_key: str | None = None

    def _save_problems(self) -> list[Problem]:
        problems = self.task.problems(self.config)
        self.store.save_problems(self.run_id, problems)
        return problems

    # --- the loop -----------------------------------------------------------

    def run(self) -> None:
        phases = self.store.iteration_phases(self.run_id)
        if phases.get(0) != "done":
            self.store.set_iteration_phase(self.run_id, 0, "evaluate")
            self._attempts(0, "eval", self.eval, self._generation_model(None))
            self.store.set_iteration_phase(self.run_id, 0, "done")
        for n in range(1, self.config.iterations + 1):
            phase = self.store.iteration_phases(self.run_id).get(n, "generate")
            if phase == "done":
                continue
            self._iteration(n, phase)

    def _iteration(self, n: int, phase: str) -> None:
        order = ["generate", "rationalize", "finetune", "evaluate"]
        previous = self._checkpoint(n - 1) if n > 1 else None
        if order.index(phase) <= order.index("rationalize"):
            self.store.set_iteration_phase(self.run_id, n, "generate")
            model = self._generation_model(previous)
            self._attempts(n, "generated", self.train, model, samples=self.config.samples_per_question)
            if self.config.rationalize:
                self.store.set_iteration_phase(self.run_id, n, "rationalize")
                kept = self._keepers(self.store.attempts_of(self.run_id, n, "generated"))
                wrong = [p for p in self.train if p.id not in {c.problem_id for c in kept}]
                self._attempts(n, "rationalized", wrong, model)
            phase = "finetune"
        if phase == "finetune":
            self.store.set_iteration_phase(self.run_id, n, "finetune")
            self._finetune(n)
        self.store.set_iteration_phase(self.run_id, n, "evaluate")
        self._attempts(n, "eval", self.eval, self._generation_model(self._checkpoint(n)))
        self.store.set_iteration_phase(self.run_id, n, "done")
        if previous and previous.exists():
            shutil.rmtree(previous)  # fine-tuning restarts from the base model: only the latest is needed

    # --- phases -------------------------------------------------------------

    def _attempts(self, n: int, kind: str, problems: list[Problem], lm: LoadedModel, samples: int = 1) -> None:
        """Decode every (problem, sample) not yet stored for this iteration and kind, batch by batch."""
        done = self.store.done_problems(self.run_id, n, kind)
        todo = [p for p in problems if p.id not in done]
        hinted = kind == "rationalized"
        prefix = self.hint_prefix if hinted else self.prefix
        prompt_id = self.store.prompt_id(prefix)
        temperature = self.config.temperature if kind != "eval" else 0.0
        decoding = Decoding(self.config.max_new_tokens, temperature, self.config.top_p)
        generator = PrefixGenerator(lm, prefix, decoding, seed=self.config.seed * 1000 + n)
        phase = _Phase(n, {"generated": "generate", "rationalized": "rationalize", "eval": "evaluate"}[kind], len(problems), time.perf_counter(), len(done))
        self.reporter.phase(n, phase.name, phase.total)
        self._progress(phase)
        todo.sort(key=lambda p: len(p.question))  # similar lengths decode together
        per_batch = max(1, self.config.gen_batch_size // samples)
        for start in range(0, len(todo), per_batch):
            self._check_cancel()
            batch = todo[start : start + per_batch]
            jobs = [(p, s) for p in batch for s in range(samples)]
            hints = [self.task.format_hint(p) if hinted else None for p, _ in jobs]
            questions = [self.task.format_question(p, h) for (p, _), h in zip(jobs, hints)]
            completions = generator.generate(questions)
            rows = [
                self._judge(n, kind, p, s, prompt_id, q, h, c)
                for (p, s), q, h, c in zip(jobs, questions, hints, completions)
            ]
            phase.done += len(batch)
            phase.new_tokens += sum(c.new_tokens for c in completions)
            self.store.add_attempts(rows, progress=self._progress_values(phase))
            self.reporter.advance(phase.done, phase.total, self._rate(phase))

    def _judge(self, n, kind, problem: Problem, sample, prompt_id, question, hint, completion) -> AttemptRow:
        predicted = self.task.extract_answer(completion.text)
        verdict = self.task.verify_steps(completion.text, problem) if self.task.can_verify_steps else None
        leak = None
        if kind == "rationalized":
            leak = hint_leak(rationale_of(completion.text), self.task.answer_pattern(problem)) is not None
        return AttemptRow(
            run_id=self.run_id, iteration=n, problem_id=problem.id, kind=kind, sample=sample, prompt_id=prompt_id,
            question_prompt=question, hint=hint, completion=completion.text, rationale=rationale_of(completion.text),
            predicted=predicted, correct=self.task.is_correct(predicted, problem),
            verified=verdict.ok if verdict else None, verify_reason=verdict.reason if verdict else "",
            prompt_tokens=completion.prompt_tokens, new_tokens=completion.new_tokens, seconds=completion.seconds,
            hint_leak=leak,
        )

    def _keepers(self, candidates: list[KeptCandidate]) -> list[KeptCandidate]:
        """Candidates that pass the filter, de-duplicated, at most max_kept_per_question per question.

        Two rationales of a question are the same when they are equal after case-folding
        and collapsing whitespace; the first stored (lowest sample) is kept. A hint leak
        is kept only with keep_hint_leaks.
        """
        seen: set[tuple[str, str]] = set()
        per_question: dict[str, int] = {}
        out = []
        for c in candidates:
            passes = c.correct and (not self.filter_steps or c.verified is True)
            passes = passes and (self.config.keep_hint_leaks or not c.hint_leak)
            key = (c.problem_id, " ".join(c.rationale.casefold().split()))
            if passes and key not in seen and per_question.get(c.problem_id, 0) < self.config.max_kept_per_question:
                seen.add(key)
                per_question[c.problem_id] = per_question.get(c.problem_id, 0) + 1
                out.append(c)
        return out

    def _finetune(self, n: int) -> None:
        generated = self._keepers(self.store.attempts_of(self.run_id, n, "generated"))
        solved = {c.problem_id for c in generated}
        rationalized = [c for c in self._keepers(self.store.attempts_of(self.run_id, n, "rationalized")) if c.problem_id not in solved]
        kept = generated + rationalized
        self.store.mark_training(self.run_id, n, [c.attempt_id for c in kept])
        by_id = {p.id: p for p in self.train}
        examples = [
            # The saved example is the question without the hint, then the rationale written with it.
            Example(self.task.format_question(by_id[c.problem_id]), cut_at_stop(c.completion) + STOP_TEXT)
            for c in kept
        ]
        steps = self.config.steps_for(n, len(kept)) if kept else 0
        self.reporter.message(
            f"iteration {n}: keeping {len(generated)} self-generated + {len(rationalized)} rationalized rationales; "
            f"{steps} fine-tuning steps"
        )
        checkpoint = self.folder / f"iteration-{n}"
        if not kept:
            self.reporter.message(f"iteration {n}: no rationale passed the filter; the model stays the base model")
            self.store.set_iteration_phase(self.run_id, n, "evaluate", kept=0, steps=0, checkpoint=None)
            return
        self._release_model()
        lm = load_model(self.config.model, self.config.device, for_training=True)  # always from the base model (STaR)
        phase = _Phase(n, "finetune", steps, time.perf_counter())
        self.reporter.phase(n, "finetune", steps)
        self._progress(phase)

        def on_step(step: int, total: int, loss: float, tokens_per_s: float) -> None:
            phase.done = step
            if step % 5 == 0 or step == total:
                self.store.set_progress(self.run_id, **self._progress_values(phase, tokens_per_s))
            self.reporter.advance(step, total, tokens_per_s, f"loss {loss:.3f}")

        settings = TrainSettings(steps, self.config.batch_size, self.config.learning_rate, self.config.finetune,
                                 self.config.lora_rank, seed=self.config.seed + n)
        result = finetune(lm, self.prefix, examples, settings, on_step=on_step, should_stop=self.store_cancel_requested)
        self._check_cancel()
        save_checkpoint(lm, checkpoint)
        del lm
        self.store.set_iteration_phase(
            self.run_id, n, "evaluate", kept=len(kept), steps=result.steps, train_loss=result.final_loss,
            train_tokens=result.tokens, train_seconds=result.seconds, checkpoint=str(checkpoint),
        )

    # --- models -------------------------------------------------------------

    def _checkpoint(self, n: int) -> Path | None:
        row = self.store.iterations(self.run_id)
        row = row[row.iteration == n]
        if row.empty or row.checkpoint.isna().all() or not row.checkpoint.iloc[0]:
            return None
        path = Path(row.checkpoint.iloc[0])
        if not path.exists():
            raise RunStateError(f"the checkpoint of iteration {n} ({path}) is missing; the run cannot resume from it")
        return path

    def _generation_model(self, checkpoint: Path | None) -> LoadedModel:
        """The model to decode with, in bf16 where that is fast (it is never trained)."""
        key = str(checkpoint)
        if self._model is None or self._model_key != key:
            self._release_model()
            lm = load_model(self.config.model, self.config.device, checkpoint=checkpoint)
            self._model, self._model_key = lm, key
        return self._model

    def _release_model(self) -> None:
        self._model = self._model_key = None

    # --- progress and cancellation ------------------------------------------

    def _rate(self, phase: _Phase) -> float | None:
        elapsed = time.perf_counter() - phase.started
        return phase.new_tokens / elapsed if elapsed > 0 and phase.new_tokens else None

    def _progress_values(self, phase: _Phase, tokens_per_s: float | None = None) -> dict:
        elapsed = time.perf_counter() - phase.started
        remaining = phase.total - phase.done
        eta = elapsed / phase.done * remaining if phase.done and remaining >= 0 else None
        return dict(iteration=phase.iteration, phase=phase.name, done=phase.done, total=phase.total,
                    tokens_per_s=tokens_per_s if tokens_per_s is not None else self._rate(phase),
                    eta_s=eta if eta is None or math.isfinite(eta) else None)

    def _progress(self, phase: _Phase) -> None:
        self.store.set_progress(self.run_id, **self._progress_values(phase))

    def store_cancel_requested(self) -> bool:
        return self.store.cancel_requested(self.run_id)

    def _check_cancel(self) -> None:
        if self.store.cancel_requested(self.run_id):
            raise Cancelled(f"run {self.run_id} was cancelled")
