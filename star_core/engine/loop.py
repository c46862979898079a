"""The STaR loop: iteration 0 is the few-shot baseline; then, per iteration,
generate -> rationalize -> filter -> fine-tune from the base model -> evaluate.

Every phase is resumable: attempts are stored in batches as they are made, a
phase skips the questions that already have attempts, fine-tuning restarts from
the base model (it is deterministic given the seed and the kept set), and the
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
from typing import Protocol

from . import run_queue
from ..model import train_state
from ..model.batch_decoder import BatchDecoder, DecodeBatch, LocalDecoder, batch_seed, plan_batches
from ..core.config import RunConfig
from .curriculum import curriculum_top, in_range
from ..core.errors import RunStateError, StarError
from .exemplars import exemplars_for_run, resolve_run_set
from .filtering import Candidate, rule_for, select_kept
from ..model.finetune import Example, TrainSettings, finetune, save_checkpoint
from ..model.generate import Decoding, PrefixGenerator
from .judge import judge
from ..model.loading import LoadedModel, check_model_spec, load_model, precision_note, resolve_device
from .phase_clock import PhaseClock
from ..core.states import AttemptKind, Phase, RunMode, RunStatus
from .stopping import should_stop, stop_message
from ..store import AttemptRow, Store
from ..tasks import Problem, Task, get_task
from ..tasks.base import STOP_TEXT, answer_only_completion, build_prefix, cut_at_stop


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
    """Create a run and return its id.

    Everything a run needs is checked first (task, model spec, data file, exemplar set),
    so that a bad setting stores nothing: not a run, not even the task's default exemplar set.
    """
    task = get_task(config.task, config)
    check_model_spec(config.model)
    problems = task.problems(config)
    report = getattr(task, "report", None)
    if report is not None and reporter is not None:
        reporter.message(report.summary())
    exemplar_set = resolve_run_set(store, task, config.exemplars)  # NAME, NAME@VERSION, or '' = the task's default
    run_id = store.create_run(config)
    store.use_exemplar_set(run_id, exemplar_set.id)  # frozen: the run keeps pointing to this exact version
    store.save_problems(run_id, problems)
    return run_id


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
        exemplars = exemplars_for_run(store, run_id, self.task)
        self.direct = self.config.mode == RunMode.DIRECT
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
            self._enter(0, Phase.EVALUATE)
            self._decode(0, AttemptKind.EVAL, self.eval, self.models.get(None))
            self._enter(0, Phase.DONE)
        for n in range(1, self.config.iterations + 1):
            if self._plateaued(before=n):
                return
            if self._phase(n) != Phase.DONE:
                self._iteration(n)

    def _plateaued(self, before: int) -> bool:
        """Whether eval accuracy of iterations 0..before-1 has stopped improving (RunConfig.patience); says so."""
        if not self.config.patience:
            return False
        acc = self.store.accuracy(self.run_id)
        overall = acc[(acc.split == "eval") & acc.difficulty.isna() & (acc.iteration < before)].sort_values("iteration")
        accuracies = [float(a) for a in overall.accuracy]
        if not should_stop(accuracies, self.config.patience):
            return False
        self.reporter.message(stop_message(accuracies, self.config.patience) + f"; --iterations {self.config.iterations} "
                              "was the upper bound")
        return True

    def _iteration(self, n: int) -> None:
        """One STaR iteration, from whichever phase it stopped in.

        Direct mode has no generate or rationalize phase: every iteration fine-tunes from the base
        model on the gold answers of every training question, with iteration n's step count (the
        schedule grows it), so iteration n is direct fine-tuning with STaR's iteration-n budget.
        """
        previous = self._checkpoint(n - 1) if n > 1 else None
        if self._phase(n).order <= Phase.RATIONALIZE.order and self.direct:
            self._enter(n, Phase.FINETUNE)
        if self._phase(n).order <= Phase.RATIONALIZE.order:
            train = self._training_questions(n)
            self._enter(n, Phase.GENERATE)
            model = self.models.get(previous)  # the current model: the previous iteration's
            self._decode(n, AttemptKind.GENERATED, train, model, samples=self.config.samples_per_question,
                         trained=previous is not None)
            if self.config.rationalize:
                self._enter(n, Phase.RATIONALIZE)
                solved = {c.problem_id for c in self._kept(n, rationalized=False)}
                self._decode(n, AttemptKind.RATIONALIZED, [p for p in train if p.id not in solved], model)
            self._enter(n, Phase.FINETUNE)
        if self._phase(n) == Phase.FINETUNE:
            self._finetune(n)
        checkpoint = self._checkpoint(n)
        self._decode(n, AttemptKind.EVAL, self.eval, self.models.get(checkpoint), trained=checkpoint is not None)
        self._enter(n, Phase.DONE)
        if previous and previous.exists():
            shutil.rmtree(previous)  # fine-tuning restarts from the base model: only the latest is needed

    def _training_questions(self, n: int) -> list[Problem]:
        """The training questions iteration n generates for: all of them, or its curriculum range (curriculum.py)."""
        if not self.config.curriculum:
            return self.train
        acc = self.store.accuracy(self.run_id)
        train = acc[(acc.split == "train") & acc.difficulty.notna() & (acc.iteration >= 1) & (acc.iteration < n)]
        solved = [{int(d): float(a) for d, a in zip(rows.difficulty, rows.accuracy)}
                  for _, rows in sorted(train.groupby("iteration"), key=lambda g: g[0])]
        top = curriculum_top(self.config.min_difficulty, self.config.max_difficulty, self.config.curriculum_threshold, solved)
        chosen = [p for p in self.train if in_range(p.difficulty, top)]
        self.reporter.message(f"iteration {n}: curriculum: difficulty {self.config.min_difficulty}-{top}, "
                              f"{len(chosen)} of {len(self.train)} training questions")
        return chosen

    # --- phases -------------------------------------------------------------

    def _decode(self, n: int, kind: AttemptKind, problems: list[Problem], decoder: BatchDecoder, samples: int = 1,
                trained: bool = False) -> None:
        """Decode every (problem, sample) not yet stored for this iteration and kind, batch by batch.

        Batches are planned over all the phase's problems and the stored ones skipped (batch_decoder.py), so a
        resumed phase decodes the same batches with the same seeds; each is judged and stored as it comes back.
        `trained`: the decoder's model is fine-tuned (with --no-prompt-trained it is asked without exemplars).
        """
        done = self.store.done_problems(self.run_id, n, kind)
        ordered = sorted(problems, key=lambda p: len(p.question))  # similar lengths together
        hinted = kind == AttemptKind.RATIONALIZED
        prefix = self.hint_prefix if hinted else "" if trained and not self.config.prompt_trained else self.prefix
        prompt_id = self.store.prompt_id(prefix)
        temperature = self.config.temperature if kind != AttemptKind.EVAL else 0.0  # eval is always greedy
        decoding = Decoding(self.config.max_new_tokens, temperature, self.config.top_p)
        clock = PhaseClock(n, kind.phase, len(problems), done=len(done & {p.id for p in problems}))
        self.reporter.phase(n, clock.phase, clock.total)
        self.store.set_progress(self.run_id, **clock.values())
        per_batch = max(1, self.config.gen_batch_size // samples)
        planned: dict[int, tuple[list, list[str | None]]] = {}
        batches = []
        for index, chunk in plan_batches(ordered, per_batch, lambda p: p.id in done):
            jobs = [(p, s) for p in chunk for s in range(samples)]
            hints = [self.task.format_hint(p) if hinted else None for p, _ in jobs]
            questions = tuple(self.task.format_question(p, h) for (p, _), h in zip(jobs, hints))
            planned[index] = (jobs, hints)
            batches.append(DecodeBatch(index, batch_seed(self.config.seed, n, kind.value, index), questions))
        if batches:
            self._check_cancel()
        with contextlib.closing(decoder.decode(prefix, decoding, batches)) as results:
            for batch, completions in results:
                jobs, hints = planned.pop(batch.index)
                rows = [
                    self._attempt(n, kind, p, s, prompt_id, q, h, c)
                    for (p, s), q, h, c in zip(jobs, batch.questions, hints, completions)
                ]
                clock.done += len(jobs) // samples
                clock.new_tokens += sum(c.new_tokens for c in completions)
                self.store.add_attempts(rows, progress=clock.values())
                self.reporter.advance(clock.done, clock.total, clock.tokens_per_s())
                if planned:  # before the next batch is stored
                    self._check_cancel()

    def _attempt(self, n, kind, problem: Problem, sample, prompt_id, question, hint, completion) -> AttemptRow:
        verdict = judge(self.task, problem, kind, completion.text)
        return AttemptRow(
            run_id=self.run_id, iteration=n, problem_id=problem.id, kind=kind, sample=sample, prompt_id=prompt_id,
            question_prompt=question, hint=hint, completion=completion.text, rationale=verdict.rationale,
            predicted=verdict.predicted, correct=verdict.correct, verified=verdict.verified,
            verify_reason=verdict.verify_reason, prompt_tokens=completion.prompt_tokens, new_tokens=completion.new_tokens,
            seconds=completion.seconds, hint_leak=verdict.hint_leak,
        )

    def _kept(self, n: int, rationalized: bool = True) -> list[Candidate]:
        """The iteration's kept rationales (self-generated first; see filtering.select_kept)."""
        generated = self.store.attempts_of(self.run_id, n, AttemptKind.GENERATED)
        hinted = self.store.attempts_of(self.run_id, n, AttemptKind.RATIONALIZED) if rationalized else []
        return select_kept(generated, hinted, self.rule)

    def _finetune(self, n: int) -> None:
        if self.direct:  # every training question's gold answer, no rationale: nothing is filtered
            kept = self.train
            examples = [Example(self.task.format_question(p), answer_only_completion(self.task, p.answer) + STOP_TEXT)
                        for p in kept]
            steps = self.config.steps_for(n, len(kept)) if kept else 0
            self.reporter.message(f"iteration {n}: direct: {len(kept)} gold answers; {steps} fine-tuning steps")
        else:
            kept = self._kept(n)
            self.store.mark_training(self.run_id, n, [c.attempt_id for c in kept])
            by_id = {p.id: p for p in self.train}
            examples = [
                # The saved example is the question without the hint, then the rationale written with it.
                Example(self.task.format_question(by_id[c.problem_id]), cut_at_stop(c.completion) + STOP_TEXT)
                for c in kept
            ]
            own = sum(c.kind == AttemptKind.GENERATED for c in kept)
            steps = self.config.steps_for(n, len(kept)) if kept else 0
            self.reporter.message(
                f"iteration {n}: keeping {own} self-generated + {len(kept) - own} rationalized rationales; "
                f"{steps} fine-tuning steps"
            )
        if not kept:
            self.reporter.message(f"iteration {n}: no rationale passed the filter; the model stays the base model")
            self._enter(n, Phase.EVALUATE, kept=0, steps=0, checkpoint=None)
            return
        self.models.release()
        # Always from the base model (STaR); with --train-processes each of those processes loads its own.
        lm = None if self.config.train_processes > 1 else load_model(self.config.model, self.config.device,
                                                                        for_training=True)
        state_dir = self.store.run_folder(self.run_id) / f"iteration-{n}.train"  # fine-tuning's saved state
        saved = train_state.saved_step(state_dir) or 0
        if saved:
            self.reporter.message(f"iteration {n}: fine-tuning continues from its saved state at step {saved} of {steps}")
        clock = PhaseClock(n, Phase.FINETUNE, steps, done=saved)
        self.reporter.phase(n, clock.phase, steps)
        self.reporter.advance(saved, steps, None)
        self.store.set_progress(self.run_id, **clock.values())

        losses: list[tuple[int, float]] = []  # not yet stored
        last_write = [0.0]

        def on_step(step: int, total: int, loss: float, tokens_per_s: float) -> None:
            if last_write[0] == 0.0:  # this process's first step: where it started, for the ETA at its own pace
                clock.resumed_at = step - 1
            clock.done = step
            losses.append((step, loss))
            # Steps take 0.1 s to a minute: write about every 2 s, so the page follows without a write per step.
            if time.monotonic() - last_write[0] >= 2.0 or step == total:
                self.store.add_train_steps(self.run_id, n, losses)
                self.store.set_progress(self.run_id, **clock.values(tokens_per_s))
                losses.clear()
                last_write[0] = time.monotonic()
            self.reporter.advance(step, total, tokens_per_s, f"loss {loss:.3f}")

        prefix = self.prefix if self.config.train_prefix else ""  # --no-train-prefix: question, rationale, answer
        settings = TrainSettings(steps, self.config.batch_size, self.config.learning_rate, self.config.finetune,
                                 self.config.lora_rank, seed=self.config.seed + n)
        checkpoint = self.store.run_folder(self.run_id) / f"iteration-{n}"
        if lm is None:  # the processes train; the main one saves the checkpoint as this process would
            from ..model.distributed.train_processes import finetune_in_processes

            result = finetune_in_processes(
                self.config.model, self.config.device, self.config.train_processes, prefix, examples, settings,
                state_dir.with_name(f"iteration-{n}.train-job"), checkpoint, on_step=on_step,
                should_stop=self._cancel_requested, state_dir=state_dir)
        else:
            result = finetune(lm, prefix, examples, settings, on_step=on_step, should_stop=self._cancel_requested,
                              state_dir=state_dir)
        self.store.add_train_steps(self.run_id, n, losses)  # the steps since the last write (a cancel stops early)
        self._check_cancel()  # a cancel during fine-tuning left its state in state_dir: a resume continues from it
        if lm is not None:
            save_checkpoint(lm, checkpoint)
        shutil.rmtree(state_dir, ignore_errors=True)  # the final checkpoint is saved: the state is not needed
        del lm
        self._enter(n, Phase.EVALUATE, kept=len(kept), steps=result.steps, train_loss=result.final_loss,
                    train_tokens=result.tokens, train_seconds=result.seconds, checkpoint=str(checkpoint))

    # --- state --------------------------------------------------------------

    def _phase(self, n: int) -> Phase:
        """Where iteration n is (GENERATE if it has not started)."""
        return Phase(self.store.iteration_phases(self.run_id).get(n, Phase.GENERATE))

    def _enter(self, n: int, phase: Phase, **stats) -> None:
        self.store.set_iteration_phase(self.run_id, n, phase, **stats)

    def _checkpoint(self, n: int) -> Path | None:
        row = self.store.iterations(self.run_id)
        row = row[row.iteration == n]
        if row.empty or row.checkpoint.isna().all() or not row.checkpoint.iloc[0]:
            return None
        path = Path(row.checkpoint.iloc[0])
        if not path.exists():
            raise RunStateError(f"the checkpoint of iteration {n} ({path}) is missing; the run cannot resume from it")
        return path

    def _cancel_requested(self) -> bool:
        return self.store.cancel_requested(self.run_id)

    def _check_cancel(self) -> None:
        if self._cancel_requested():
            raise Cancelled(f"run {self.run_id} was cancelled")


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
                from ..model.distributed.ray_generation import RayDecoderPool  # Ray is imported only for runs with workers

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
