"""The shared vocabulary: run statuses, iteration phases, attempt kinds, the task names, audit ratings.

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
    CRASHED = "crashed"  # shown, never stored: 'running' or 'queued' whose process is gone (store/runs.py)


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
    SEED = "seed"  # an exact rationale the run starts from (written by the task, never by the model)

    @property
    def phase(self) -> Phase:
        return {AttemptKind.GENERATED: Phase.GENERATE, AttemptKind.RATIONALIZED: Phase.RATIONALIZE,
                AttemptKind.EVAL: Phase.EVALUATE, AttemptKind.SEED: Phase.FINETUNE}[self]


TRAINING_KINDS = (AttemptKind.GENERATED, AttemptKind.RATIONALIZED)  # attempts on training questions


class ImportFormat(_Text):
    """The files `star import` reads: another framework's generations (docs/import.md)."""

    TRL_GRPO = "trl-grpo"  # TRL GRPOTrainer, log_completions=True: completions/completions_{step:05d}.parquet
    VERL = "verl"  # verl trainer.rollout_data_dir / validation_data_dir: {step}.jsonl
    INSPECT = "inspect"  # an Inspect AI eval log (.eval or .json)


IMPORT_FORMATS = tuple(f.value for f in ImportFormat)


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


class TaskName(_Text):
    """The tasks a run can use (tasks/__init__.py maps each to its class)."""

    ARITHMETIC = "arithmetic"
    GSM8K = "gsm8k"
    COMMONSENSEQA = "commonsenseqa"
    JSONL = "jsonl"


TASK_NAMES = tuple(t.value for t in TaskName)


class ArithmeticFormat(_Text):
    """How a sum is prompted and written out (RunConfig.arithmetic_format)."""

    PLACE_VALUE = "place-value"  # 'Question: 47 + 85 = ?' / '47 + 85 = 120 + 12 = 132. The answer is 132.'
    SCRATCHPAD = "scratchpad"  # the paper's: spaced digits, a <scratch> line per place, lowest first


class Rating(_Text):
    SOUND = "sound"
    FLAWED = "flawed"
    WRONG = "wrong"


RATINGS = tuple(r.value for r in Rating)
RATING_HELP = {
    "sound": "the reasoning is right and supports the answer",
    "flawed": "the final answer is right but the reasoning is not (lucky guess, copies the hint, a slip)",
    "wrong": "the rationale and its answer are wrong",
}
QUEUE_ORDERS = ("random", "oldest", "disagreement")


class QueueMode(_Text):
    """Which items the audit queue offers an auditor."""

    ALL = "all"  # every rationale the filters select
    SECOND_OPINION = "second-opinion"  # rated by another auditor, not yet by this one
    ADJUDICATE = "adjudicate"  # auditors disagree: this auditor gives the label that settles it


# The automatic filter's verdicts, as the audit's agreement table names its rows (the first passes).
VERIFIER_ROWS = ("passes (right answer, steps hold)", "right answer, steps fail", "wrong answer", "cannot verify")
