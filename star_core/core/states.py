"""The loop's vocabulary: run statuses, iteration phases and attempt kinds.

They are str enums so that a value is its own database text ('generated', 'done')
and compares equal to it: the stored schema and the public views keep their text
columns, and code that reads them back gets plain strings that match.
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunStatus(_Text):
    PENDING = "pending"  # created; no worker has claimed it yet
    QUEUED = "queued"  # waiting for a free slot on this machine before it loads a model
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"  # shown, never stored: 'running' whose worker process is gone


ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.QUEUED, RunStatus.RUNNING)


class Phase(_Text):
    """Where an iteration is; iteration 0 (the few-shot baseline) only evaluates."""

    GENERATE = "generate"
    RATIONALIZE = "rationalize"
    FINETUNE = "finetune"
    EVALUATE = "evaluate"
    DONE = "done"

    @property
    def order(self) -> int:
        return list(Phase).index(self)


class AttemptKind(_Text):
    GENERATED = "generated"  # self-generated on a training question
    RATIONALIZED = "rationalized"  # retried with the gold answer as a hint
    EVAL = "eval"  # a held-out question, decoded greedily

    @property
    def phase(self) -> Phase:
        return {AttemptKind.GENERATED: Phase.GENERATE, AttemptKind.RATIONALIZED: Phase.RATIONALIZE,
                AttemptKind.EVAL: Phase.EVALUATE}[self]


TRAINING_KINDS = (AttemptKind.GENERATED, AttemptKind.RATIONALIZED)  # attempts on training questions


class RunMode(_Text):
    """What a run fine-tunes on (RunConfig.mode)."""

    STAR = "star"  # its own rationales: generate, rationalize, filter, fine-tune
    DIRECT = "direct"  # the gold answers of every training question, no rationale (the paper's main baseline)


class ExperimentKind(_Text):
    """What groups an experiment's runs (experiments.config's kind)."""

    PAPER = "paper"  # the paper's five arms (experiments.py)
    EXEMPLARS = "exemplars"  # two exemplar sets, few-shot on the same eval questions (exemplar_compare.py)


class ExemplarArm(_Text):
    """The two sides of an exemplar comparison, as stored in experiment_runs.arm (A is made and run first)."""

    A = "set-a"
    B = "set-b"
