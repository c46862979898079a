"""The STaR loop: iteration 0 is the few-shot baseline (or, with a seed, the model fine-tuned on the seed alone);
then, per iteration, generate -> rationalize -> filter -> fine-tune -> evaluate. Fine-tuning starts from the base
model as in the paper, or, in a seeded run, from the seed's model (its steps are paid once, not every iteration).

Every phase is resumable: attempts are stored in batches as they are made, a
phase skips the questions that already have attempts, fine-tuning restarts from
its starting model (it is deterministic given the seed and the kept set), and the
iteration row records which phase is next. A run killed at any moment continues
from the last stored batch with nothing lost and nothing duplicated.

The science lives in small parts: `judge` (a completion's verdict),
`select_kept` (the filter), `PhaseClock` (progress); this module only orders them.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from pathlib import Path
from typing import NamedTuple, Protocol

from . import heartbeat, run_queue
from ..analysis.run_models import checkpoints_to_discard
from ..model import train_state
from ..model.batch_decoder import BatchDecoder, DecodeBatch, LocalDecoder, batch_seed, plan_batches
from ..core.config import RunConfig
from .curriculum import curriculum_top, in_range
from ..core.errors import RunStateError, StarError
from .exemplars import exemplars_for_run
from .filtering import Candidate, rule_for, select_kept
from ..model.finetune import Example, FinetuneResult, TrainSettings, finetune, save_checkpoint
from ..model.generate import Decoding, PrefixGenerator
from .judge import judge
from .seeding import hint_share, seed_problems, training_rows
from ..model.loading import LoadedModel, load_model, precision_note, resolve_device
from .phase_clock import PhaseClock
from ..core.states import AttemptKind, Phase, RunMode, RunStatus
from .stopping import budget_message, next_iteration_seconds, over_budget, should_stop, stop_message
from ..store import AttemptRow, Store
from ..tasks import Problem, Task, get_task
from ..tasks.base import STOP_TEXT, Reference, answer_only_completion, build_prefix, cut_at_stop, given_count


def decoding_order(problems: list[Problem]) -> list[Problem]:
    """The order a phase decodes its questions in, before they are cut into batches: similar lengths together."""
    return sorted(problems, key=lambda p: len(p.question))


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


class KeptSet(NamedTuple):
    """What an iteration fine-tunes on, and a line saying where it came from (for the log)."""

    examples: list[Example]
    described: str
    kept: int | None = None  # the rationales the model wrote among them (seed and earlier rows not counted); None: all


def execute_run(store: Store, run_id: int, reporter: Reporter | None = None, queue: bool = True) -> None:
    """Run (or resume) every remaining phase of a run, recording how it ended.

    With `queue` the run first takes a slot of this machine (run_queue.py), waiting as
    'queued' while none is free; without, it starts at once. Either way a CPU run then
    sets its torch threads to its share of the cores.
    """
    reporter = reporter or _Silent()
    try:
        slots = run_queue.device_slots(store.get_run(run_id).config.device)
    except StarError as exc:  # e.g. a GPU asked for on a machine without one: a failure of the run, recorded
        store.claim_run(run_id)
        store.finish_run(run_id, RunStatus.FAILED, str(exc))
        raise
    with heartbeat.beating(store, run_id):  # from its claim (queued or running) to its end
        try:
            slot = run_queue.wait_for_slot(store, run_id, slots, reporter.message) if queue else \
                run_queue.unqueued(store, run_id, slots)
        except KeyboardInterrupt:
            store.finish_run(run_id, RunStatus.CANCELLED, "interrupted from the keyboard while queued")
            raise
        if slot is None:  # cancelled while it waited: no model was loaded
            store.finish_run(run_id, RunStatus.CANCELLED, "cancelled while queued")
            raise Cancelled(f"run {run_id} was cancelled while queued")
        with slot:
            store.claim_run(run_id, from_queue=queue)
            _select_gpu(slot)
            threads = slot.share_cores()
            if threads is not None and queue is False:
                reporter.message(f"--no-queue: {threads} torch thread(s), this process's share of the cores")
            _execute(store, run_id, reporter)


def _select_gpu(slot: run_queue.Slot) -> None:
    if slot.gpu_index is not None:
        import torch

        torch.cuda.set_device(slot.gpu_index)  # 'cuda' (the current device) is then the slot's GPU


def _execute(store: Store, run_id: int, reporter: Reporter) -> None:
    try:
        if store.cancel_requested(run_id):  # asked while it waited for its slot
            raise Cancelled(f"run {run_id} was cancelled")
        reporter.message(precision_note(resolve_device(store.get_run(run_id).config.device)))
        _Runner(store, run_id, reporter).run()
    except Cancelled:
        store.finish_run(run_id, RunStatus.CANCELLED)
        raise
    except KeyboardInterrupt:
        store.finish_run(run_id, RunStatus.CANCELLED, "interrupted from the keyboard")
        raise
    except StarError as exc:
        store.finish_run(run_id, RunStatus.FAILED, str(exc))
        raise
    except Exception as exc:
        store.finish_run(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        raise
    store.finish_run(run_id, RunStatus.DONE)


class _Runner:
    def __init__(self, store: Store, run_id: int, reporter: Reporter):
        self.store, self.run_id, self.reporter = store, run_id, reporter
        run = store.get_run(run_id)
        self.config: RunConfig = run.config
        self.task: Task = get_task(self.config.task, self.config)
        if self.task.key != run.task_key:  # its exemplars were validated for the stored key
            raise RunStateError(f"run {run_id} was made for task {run.task_key.describe()}, but its settings now make "
                                f"{self.task.key.describe()}; start a new run")
        problems = store.load_problems(run_id) or self._save_problems()
        self.train = [p for p in problems if p.split == "train"]
        self.eval = [p for p in problems if p.split == "eval"]
        self.direct = self.config.mode == RunMode.DIRECT
        # The seed: exact rationales of the easy training questions (seeding.py); the loop generates for the rest.
        has_reference = getattr(self.task, "reference", None) is not None
        self.seed = [] if self.direct or not has_reference else [
            p for p in seed_problems(self.train, self.config.seed_max_digits, self.config.seed_per_longer_digit)
            if self._reference(p) is not None]
        seeded = {p.id for p in self.seed}
        self.unseeded = [p for p in self.train if p.id not in seeded]
        exemplars = exemplars_for_run(store, run_id, self.task)
        # Direct mode prompts, trains and evaluates on the answer alone: its exemplars lose their rationales.
        self.prefix = build_prefix(self.task, exemplars, with_hints=False, answer_only=self.direct)
        self.hint_prefix = build_prefix(self.task, exemplars, with_hints=True)
        self.rule = rule_for(self.config, self.task.can_verify_steps)
        self.models = _GenerationModels(self.config)

    def _save_problems(self) -> list[Problem]:
        problems = self.task.problems(self.config)
        self.store.save_problems(self.run_id, problems)
        return problems

    # --- the loop -----------------------------------------------------------

    def run(self) -> None:
        if self._phase(0) != Phase.DONE:
            if self.seed and self._phase(0).order < Phase.EVALUATE.order:
                self._enter(0, Phase.FINETUNE)  # the iteration's clock starts with the seed's fine-tuning
                self._finetune(0, self._seed_set())
            elif not self.seed:
                self._enter(0, Phase.EVALUATE)
            self._evaluate(0)
        iteration = self._direct_iteration if self.direct else self._iteration
        for n in range(1, self.config.iterations + 1):
            self._keep_best_and_latest()  # here, not at an iteration's end: a run killed in between cleans up on resume
            if self._plateaued(before=n) or self._out_of_time(before=n):
                return
            if self._phase(n) != Phase.DONE:
                iteration(n)
        self._keep_best_and_latest()

    def _iteration(self, n: int) -> None:
        """One STaR iteration, from whichever phase it stopped in (each phase skips what is stored)."""
        previous = self._checkpoint(n - 1) if n > 1 or self.seed else None
        if self._phase(n).order < Phase.FINETUNE.order:
            train = self._training_questions(n)
            model = self._generate(n, train, previous)
            self._rationalize(n, train, model)
            self._enter(n, Phase.FINETUNE)  # the attempts are stored: a resume goes straight to the filter
        if self._phase(n) == Phase.FINETUNE:
            self._finetune(n, self._filter(n))
        self._evaluate(n)

    def _direct_iteration(self, n: int) -> None:
        """Direct fine-tuning: from the base model on the gold answers of every training question, with STaR's
        iteration-n step count (the schedule grows it); nothing is generated, so nothing is filtered."""
        if self._phase(n).order < Phase.FINETUNE.order:
            self._enter(n, Phase.FINETUNE)
        if self._phase(n) == Phase.FINETUNE:
            examples = [Example(self.task.format_question(p), answer_only_completion(self.task, p.answer) + STOP_TEXT)
                        for p in self.train]
            self._finetune(n, KeptSet(examples, f"direct: {len(examples)} gold answers"))
        self._evaluate(n)

    def _plateaued(self, before: int) -> bool:
        """Whether eval accuracy of iterations 0..before-1 has stopped improving (RunConfig.patience); says so."""
        if not self.config.patience:
            return False
        accuracies = self.store.eval_accuracies(self.run_id, before)
        if not should_stop(accuracies, self.config.patience):
            return False
        self.reporter.message(stop_message(accuracies, self.config.patience) + f"; --iterations {self.config.iterations} "
                              "was the upper bound")
        return True

    def _out_of_time(self, before: int) -> bool:
        """Whether iteration `before` would end past the run's time budget (RunConfig.time_budget_minutes); says so."""
        budget_s = self.config.time_budget_minutes * 60
        if not budget_s:
            return False
        clock = self.store.run_clock(self.run_id, before)
        next_s = next_iteration_seconds(clock.last_s, clock.last_train_s, self.config.step_growth)
        if not over_budget(clock.spent_s, next_s, budget_s):
            return False
        self.reporter.message(budget_message(before, clock.spent_s, next_s, budget_s))
        return True

    def _training_questions(self, n: int) -> list[Problem]:
        """The training questions iteration n generates for: all of them, or its curriculum range (curriculum.py)."""
        if not self.config.curriculum:
            return self.unseeded
        solved = self.store.train_accuracy_by_difficulty(self.run_id, before=n)
        seed_top = self.config.seed_max_digits if self.seed else 0
        top = curriculum_top(self.config.min_difficulty, self.config.max_difficulty, self.config.curriculum_threshold, solved,
                             seed_top=seed_top)
        chosen = [p for p in self.unseeded if in_range(p.difficulty, top)]
        self.reporter.message(f"iteration {n}: curriculum: difficulty {self.config.min_difficulty}-{top}, "
                              f"{len(chosen)} of {len(self.unseeded)} training questions"
                              + (" the seed does not answer" if self.seed else ""))
        return chosen

    # --- the paper's steps ---------------------------------------------------

    def _generate(self, n: int, train: list[Problem], previous: Path | None) -> BatchDecoder:
        """Sample rationales for the training questions with the current model (the previous iteration's);
        return it, for rationalization."""
        self._enter(n, Phase.GENERATE)
        model = self.models.get(previous)
        self._decode(n, AttemptKind.GENERATED, train, model, samples=self.config.samples_per_question,
                     trained=previous is not None)
        return model

    def _rationalize(self, n: int, train: list[Problem], model: BatchDecoder) -> None:
        """Retry, with the gold answer as a hint, each question no sample solved (unless --no-rationalize)."""
        if not self.config.rationalize:
            return
        self._enter(n, Phase.RATIONALIZE)
        solved = {c.problem_id for c in self._kept(n, rationalized=False)}
        self._decode(n, AttemptKind.RATIONALIZED, [p for p in train if p.id not in solved], model)

    def _filter(self, n: int) -> KeptSet:
        """The rationales that pass the filter, marked in the store, with the seed (and, with keep_earlier_rows,
        earlier iterations' kept rows) as training examples."""
        kept = self._kept(n)
        self.store.mark_training(self.run_id, n, [c.attempt_id for c in kept])
        seed = self.store.attempts_of(self.run_id, 0, AttemptKind.SEED) if self.seed else []
        earlier = [self.store.kept_of(self.run_id, i) for i in range(1, n)] if self.config.keep_earlier_rows else []
        rows = training_rows(seed, earlier, kept, self.config.keep_earlier_rows)
        own = sum(c.kind == AttemptKind.GENERATED for c in kept)
        described = f"keeping {own} self-generated + {len(kept) - own} rationalized rationales"
        if self.seed or earlier:
            described += f" (training on {len(rows)} rows: {len(seed)} seed, {len(rows) - len(seed) - len(kept)} earlier)"
        return KeptSet(self._examples(rows), described, kept=len(kept))

    def _examples(self, rows: list[Candidate]) -> list[Example]:
        by_id = {p.id: p for p in self.train}
        # The saved example is the question without the hint, then the rationale written with it (given steps and all).
        return [Example(self.task.format_question(by_id[c.problem_id]), cut_at_stop(c.completion) + STOP_TEXT)
                for c in rows]

    def _seed_set(self) -> KeptSet:
        """The seed as training examples, stored first (once) as attempts of kind 'seed' of iteration 0."""
        if not self.store.done_problems(self.run_id, 0, AttemptKind.SEED):
            prompt_id = self.store.prompt_id("")
            rows = [self._seed_attempt(p, prompt_id) for p in self.seed]
            self.store.add_attempts(rows)
            self.store.mark_training(self.run_id, 0, [c.attempt_id for c in self.store.attempts_of(
                self.run_id, 0, AttemptKind.SEED)])
        seed = self.store.attempts_of(self.run_id, 0, AttemptKind.SEED)
        difficulties = sorted({p.difficulty for p in self.seed})
        return KeptSet(self._examples(seed), f"the seed: {len(seed)} exact rationales of difficulty "
                                              f"{', '.join(map(str, difficulties))}", kept=0)

    def _seed_attempt(self, problem: Problem, prompt_id: int) -> AttemptRow:
        reference = self._reference(problem)
        completion = reference.completion + STOP_TEXT
        verdict = judge(self.task, problem, AttemptKind.SEED, completion)
        steps = len(reference.steps)
        return AttemptRow(
            run_id=self.run_id, iteration=0, problem_id=problem.id, kind=AttemptKind.SEED, sample=0, prompt_id=prompt_id,
            question_prompt=self.task.format_question(problem), hint=None, completion=completion,
            rationale=verdict.rationale, predicted=verdict.predicted, correct=verdict.correct, verified=verdict.verified,
            verify_reason=verdict.verify_reason, prompt_tokens=0, new_tokens=0, seconds=0.0,
            given_text=reference.completion, given_steps=steps, steps=steps,
        )

    def _reference(self, problem: Problem) -> Reference | None:
        reference = getattr(self.task, "reference", None)
        return reference(problem) if reference is not None else None

    def _finetune(self, n: int, kept: KeptSet) -> None:
        """Fine-tune on the kept set (from the base model, or the seed's); the checkpoint is the model iteration n
        evaluates."""
        examples = kept.examples
        steps = self.config.steps_for(max(n, 1), len(examples)) if examples else 0  # the seed's: iteration 1's rule
        self.reporter.message(f"iteration {n}: {kept.described}; {steps} fine-tuning steps")
        if not examples:
            self.reporter.message(f"iteration {n}: no rationale passed the filter; the model stays the base model")
            self._enter(n, Phase.EVALUATE, kept=0, steps=0, checkpoint=None)
            return
        checkpoint = self.store.run_folder(self.run_id) / f"iteration-{n}"
        result = self._train(n, examples, steps, checkpoint)
        kept_count = len(examples) if kept.kept is None else kept.kept
        self._enter(n, Phase.EVALUATE, kept=kept_count, steps=result.steps, train_loss=result.final_loss,
                    train_tokens=result.tokens, train_seconds=result.seconds, checkpoint=str(checkpoint))

    def _evaluate(self, n: int) -> None:
        """Greedy answers to the held-out questions with iteration n's model (the base model if it has none)."""
        checkpoint = self._checkpoint(n)
        self._decode(n, AttemptKind.EVAL, self.eval, self.models.get(checkpoint), trained=checkpoint is not None)
        self._enter(n, Phase.DONE)

    def _keep_best_and_latest(self) -> None:
        """Delete the checkpoints of evaluated iterations other than the best, the latest and the seed's
        (run_models.py): going on needs the latest and the model fine-tuning starts from; the best is the model a
        user wants."""
        keep = frozenset({0} if self.seed else ())
        for folder in checkpoints_to_discard(self.store.finished_iterations(self.run_id), also_keep=keep):
            if folder.exists():
                shutil.rmtree(folder)

    # --- decoding and training ------------------------------------------------

    def _decode(self, n: int, kind: AttemptKind, problems: list[Problem], decoder: BatchDecoder, samples: int = 1,
                trained: bool = False) -> None:
        """Decode every (problem, sample) not yet stored for this iteration and kind, batch by batch.

        Batches are planned over all the phase's problems and the stored ones skipped (batch_decoder.py), so a
        resumed phase decodes the same batches with the same seeds; each is judged and stored as it comes back.
        `trained`: the decoder's model is fine-tuned (with --no-prompt-trained it is asked without exemplars).
        """
        done = self.store.done_problems(self.run_id, n, kind)
        ordered = decoding_order(problems)
        hinted = kind == AttemptKind.RATIONALIZED
        unprompted = trained and not self.config.prompt_trained
        # A seeded model learned the format from the seed: it is asked as it was trained, hint or not.
        prefix = "" if unprompted and (self.seed or not hinted) else self.hint_prefix if hinted else self.prefix
        prompt_id = self.store.prompt_id(prefix)
        temperature = self.config.temperature if kind != AttemptKind.EVAL else 0.0  # eval is always greedy
        decoding = Decoding(self.config.max_new_tokens, temperature, self.config.top_p)
        clock = PhaseClock(n, kind.phase, len(problems), done=len(done & {p.id for p in problems}))
        self.reporter.phase(n, clock.phase, clock.total)
        self.store.set_progress(self.run_id, **clock.values())
        per_batch = max(1, self.config.gen_batch_size // samples)
        share = hint_share(self.config.partial_hint_start, self.config.partial_hint_end, n, self.config.iterations)
        planned: dict[int, tuple[list, list[str | None], list[str]]] = {}
        batches = []
        for index, chunk in plan_batches(ordered, per_batch, lambda p: p.id in done):
            jobs = [(p, s) for p in chunk for s in range(samples)]
            hints = [self.task.format_hint(p) if hinted else None for p, _ in jobs]
            # The partial hint: the reference's first steps, written for the model after 'Answer:' (QuestA).
            given = [self._given(p, share) if hinted else ("", 0) for p, _ in jobs]
            questions = tuple(self.task.format_question(p, h) + g for (p, _), h, (g, _) in zip(jobs, hints, given))
            planned[index] = (jobs, hints, given)
            batches.append(DecodeBatch(index, batch_seed(self.config.seed, n, kind.value, index), questions))
        if batches:
            self._check_cancel()
        with contextlib.closing(decoder.decode(prefix, decoding, batches)) as results:
            for batch, completions in results:
                jobs, hints, given = planned.pop(batch.index)
                rows = [
                    self._attempt(n, kind, p, s, prompt_id, q[: len(q) - len(g[0])], h, c, g)
                    for (p, s), q, h, c, g in zip(jobs, batch.questions, hints, completions, given)
                ]
                clock.done += len(jobs) // samples
                clock.new_tokens += sum(c.new_tokens for c in completions)
                self.store.add_attempts(rows, progress=clock.values())
                self.reporter.advance(clock.done, clock.total, clock.tokens_per_s())
                if planned:  # before the next batch is stored
                    self._check_cancel()

    def _given(self, problem: Problem, share: float) -> tuple[str, int]:
        """The first steps of the problem's reference a partial hint gives at `share`, and how many they are."""
        reference = self._reference(problem) if share > 0 else None
        if reference is None:
            return "", 0
        count = given_count(share, len(reference.steps))
        return reference.prefix(count), count

    def _attempt(self, n, kind, problem: Problem, sample, prompt_id, question, hint, completion,
                 given: tuple[str, int] = ("", 0)) -> AttemptRow:
        """The stored attempt; with a partial hint its completion is the given steps followed by the model's text."""
        text = given[0] + completion.text
        verdict = judge(self.task, problem, kind, text)
        reference = self._reference(problem)
        steps = len(reference.steps) if reference else None
        given_steps = given[1] if reference else None
        return AttemptRow(
            run_id=self.run_id, iteration=n, problem_id=problem.id, kind=kind, sample=sample, prompt_id=prompt_id,
            question_prompt=question, hint=hint, completion=text, rationale=verdict.rationale,
            predicted=verdict.predicted, correct=verdict.correct, verified=verdict.verified,
            verify_reason=verdict.verify_reason, prompt_tokens=completion.prompt_tokens, new_tokens=completion.new_tokens,
            seconds=completion.seconds, hint_leak=verdict.hint_leak, given_text=given[0] or None, given_steps=given_steps,
            steps=steps,
        )

    def _kept(self, n: int, rationalized: bool = True) -> list[Candidate]:
        """The iteration's kept rationales (self-generated first; see filtering.select_kept)."""
        generated = self.store.attempts_of(self.run_id, n, AttemptKind.GENERATED)
        hinted = self.store.attempts_of(self.run_id, n, AttemptKind.RATIONALIZED) if rationalized else []
        return select_kept(generated, hinted, self.rule)

    def _train(self, n: int, examples: list[Example], steps: int, checkpoint: Path) -> FinetuneResult:
        """Fine-tune the base model (in a seeded run after the seed: the seed's model) and save it to `checkpoint`,
        resuming from the saved training state if any.

        With --train-processes each of those processes loads its own base model, and their main one saves.
        """
        self.models.release()
        lm = None if self.config.train_processes > 1 else load_model(self.config.model, self.config.device,
                                                                        for_training=True)
        state_dir = self.store.run_folder(self.run_id) / f"iteration-{n}.train"
        saved = train_state.saved_step(state_dir) or 0
        if saved:
            self.reporter.message(f"iteration {n}: fine-tuning continues from its saved state at step {saved} of {steps}")
        clock = PhaseClock(n, Phase.FINETUNE, steps, done=saved)
        self.reporter.phase(n, clock.phase, steps)
        self.reporter.advance(saved, steps, None)
        self.store.set_progress(self.run_id, **clock.values())
        recorder = _StepRecorder(self.store, self.run_id, n, clock, self.reporter)
        prefix = self.prefix if self.config.train_prefix else ""  # --no-train-prefix: question, rationale, answer
        settings = TrainSettings(steps, self.config.batch_size, self.config.learning_rate, self.config.finetune,
                                 self.config.lora_rank, seed=self.config.seed + n, start=self._start_model(n))
        if lm is None:
            from ..model.distributed.train_processes import finetune_in_processes

            result = finetune_in_processes(
                self.config.model, self.config.device, self.config.train_processes, prefix, examples, settings,
                state_dir.with_name(f"iteration-{n}.train-job"), checkpoint, on_step=recorder.on_step,
                should_stop=self._cancel_requested, state_dir=state_dir)
        else:
            result = finetune(lm, prefix, examples, settings, on_step=recorder.on_step,
                              should_stop=self._cancel_requested, state_dir=state_dir)
        recorder.flush()  # a cancel stops early: its last steps are stored too
        self._check_cancel()  # a cancel during fine-tuning left its state in state_dir: a resume continues from it
        if lm is not None:
            save_checkpoint(lm, checkpoint)
        shutil.rmtree(state_dir, ignore_errors=True)  # the final checkpoint is saved: the state is not needed
        return result

    def _start_model(self, n: int) -> str | None:
        """The checkpoint iteration n's fine-tuning goes on from: the seed's model after the seed, else none (base)."""
        if not self.seed or n == 0:
            return None
        seed_model = self._checkpoint(0)
        return str(seed_model) if seed_model is not None else None

    # --- state --------------------------------------------------------------

    def _phase(self, n: int) -> Phase:
        """Where iteration n is (GENERATE if it has not started)."""
        return Phase(self.store.iteration_phases(self.run_id).get(n, Phase.GENERATE))

    def _enter(self, n: int, phase: Phase, **stats) -> None:
        self.store.set_iteration_phase(self.run_id, n, phase, **stats)

    def _checkpoint(self, n: int) -> Path | None:
        path = self.store.iteration_checkpoint(self.run_id, n)
        if path is not None and not path.exists():
            raise RunStateError(f"the checkpoint of iteration {n} ({path}) is missing; the run cannot resume from it")
        return path

    def _cancel_requested(self) -> bool:
        return self.store.cancel_requested(self.run_id)

    def _check_cancel(self) -> None:
        if self._cancel_requested():
            raise Cancelled(f"run {self.run_id} was cancelled")


class _StepRecorder:
    """Fine-tuning's steps into the store and the reporter, as they come."""

    def __init__(self, store: Store, run_id: int, n: int, clock: PhaseClock, reporter: Reporter):
        self.store, self.run_id, self.n, self.clock, self.reporter = store, run_id, n, clock, reporter
        self._losses: list[tuple[int, float]] = []  # not yet stored
        self._last_write = 0.0

    def on_step(self, step: int, total: int, loss: float, tokens_per_s: float) -> None:
        if self._last_write == 0.0:  # this process's first step: where it started, for the ETA at its own pace
            self.clock.resumed_at = step - 1
        self.clock.done = step
        self._losses.append((step, loss))
        # Steps take 0.1 s to a minute: write about every 2 s, so the page follows without a write per step.
        if time.monotonic() - self._last_write >= 2.0 or step == total:
            self.flush()
            self.store.set_progress(self.run_id, **self.clock.values(tokens_per_s))
            self._last_write = time.monotonic()
        self.reporter.advance(step, total, tokens_per_s, f"loss {loss:.3f}")

    def flush(self) -> None:
        self.store.add_train_steps(self.run_id, self.n, self._losses)
        self._losses.clear()


class _GenerationModels:
    """The decoder of the model kept loaded for decoding, by checkpoint (bf16 where that is fast; it is never
    trained): in this process, or on the run's Ray workers with --workers (distributed/ray_generation.py)."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._model: LoadedModel | None = None
        self._key: str | None = None
        self._pool = None  # the Ray actors, started by the first phase that needs them

    def get(self, checkpoint: Path | None) -> BatchDecoder:
        if self.config.workers:
            if self._pool is None:
                # Ray is imported only for runs with workers.
                from ..model.distributed.ray_generation import RayDecoderPool

                self._pool = RayDecoderPool(self.config)
            return self._pool.for_checkpoint(checkpoint)
        if self._model is None or self._key != str(checkpoint):
            self.release()
            self._model = load_model(self.config.model, self.config.device, checkpoint=checkpoint)
            self._key = str(checkpoint)
        return LocalDecoder(self._model, PrefixGenerator)  # the name looked up here, so that tests can replace it

    def release(self) -> None:
        """Free the decoding model(s): fine-tuning needs the memory and the devices."""
        self._model = self._key = None
        if self._pool is not None:
            self._pool.release()
