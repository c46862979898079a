"""RunConfig: every knob of a STaR run, validated and serialisable to JSON.

Each field's metadata says what the CLI and the app say about it: its ``label``, its
``group`` (a section of the Runs form), its ``help``, and ``choices``, bounds or flag
``aliases`` where it has them. core/settings_spec.py builds `star run`'s flags and the
form's widgets from it, so a knob is added in exactly one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Callable

from .embedded import DEFAULT_MODEL, EMBEDDED_MODELS
from .errors import ConfigError
from .states import TASK_NAMES, ArithmeticFormat, RunMode

FILTER_MODES = ("verified", "answer")
DEVICES = ("auto", "cpu", "cuda")
FINETUNE_METHODS = ("lora", "full")
ANSWER_TYPES = ("number", "choice", "exact", "regex")
MAP_ROLES = ("question", "answer", "choices", "id", "difficulty")
# A field's annotation is text (`from __future__ import annotations`); this is the type its values have.
TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class Group(str, Enum):
    """The Runs form's sections, in the order the form shows them."""

    RUN = "Run"
    CURRICULUM = "Curriculum over difficulties"
    SEED = "Seed and partial hints"
    DATASET = "Dataset file (gsm8k, commonsenseqa, jsonl)"
    FILTERING = "Filtering"
    DECODING = "Decoding"
    FINETUNING = "Fine-tuning"
    MACHINE = "Machine"
    OTHER = "Other"

    def __str__(self) -> str:
        return self.value


def _f(default, label: str, group: Group, help: str, **meta):
    return field(default=default, metadata={"label": label, "group": group, "help": help, **meta})


@dataclass
class RunConfig:
    name: str = _f("", "Name", Group.RUN, "A label for the run (free text).")
    task: str = _f(
        "arithmetic", "Task", Group.RUN, "Which task's problems, prompt format and answer check to use.",
        choices=TASK_NAMES,
    )
    data: str = _f(
        "", "Dataset file", Group.DATASET,
        "Dataset file (.jsonl or .csv) for gsm8k, commonsenseqa and jsonl; empty = download from the Hugging Face hub "
        "(needs the 'datasets' extra and a network).",
    )
    # --map: the short spelling the docs use (--map question=q,answer=a).
    data_map: str = _f(
        "", "Field map (jsonl)", Group.DATASET,
        "jsonl task: which field holds what, as ROLE=FIELD pairs separated by commas. Roles: question and answer "
        "(default: the fields named so), choices, id, difficulty (optional). FIELD may be a dotted path into nested "
        "JSON (question.stem). Example: question=q,answer=a,choices=options.",
        aliases=("--map",),
    )
    answer_type: str = _f(
        "number", "Answer type (jsonl)", Group.DATASET,
        "jsonl task: how answers are compared: number (numerically, '1,000' = '1000.0'), choice (label or choice text), "
        "exact (case- and space-insensitive text) or regex (the gold answer is a regular expression the whole answer must match).",
        choices=ANSWER_TYPES,
    )
    # The paper's format makes every step a mechanical line a verifier checks exactly; the place-value one
    # measured better few-shot (tasks/arithmetic.py) but its multi-digit rationales collapse into bare sums.
    arithmetic_format: str = _f(
        ArithmeticFormat.PLACE_VALUE.value, "Arithmetic format", Group.OTHER,
        "arithmetic task: how a sum is prompted and written out. place-value: '47 + 85 = 120 + 12 = 132. The answer "
        "is 132.'; scratchpad: the STaR paper's format, spaced digits and a <scratch> block of one line per place "
        "with its carry (docs/tasks.md).",
        choices=tuple(f.value for f in ArithmeticFormat),
    )
    skip_bad_lines: bool = _f(
        False, "Skip bad data rows", Group.DATASET,
        "Skip malformed or incomplete data rows (and report how many) instead of stopping at the first.",
    )
    model: str = _f(
        DEFAULT_MODEL, "Model", Group.RUN,
        f"Embedded model name ({', '.join(EMBEDDED_MODELS)}), local folder, .gguf file, or hub id.",
    )
    exemplars: str = _f(
        "", "Exemplar set", Group.RUN,
        "Exemplar set NAME or NAME@VERSION for the few-shot prompt; empty = the task's default set.",
    )
    # Sizes: 256 train problems keep a CPU iteration at a few minutes while giving
    # the filter enough correct rationales (with 160, only 23-40 were kept: docs/measurements.md).
    train_size: int = _f(256, "Training questions", Group.RUN, "Training questions per iteration.", min=1)
    eval_size: int = _f(96, "Eval questions", Group.RUN, "Held-out questions evaluated after every iteration.", min=1)
    min_difficulty: int = _f(1, "Min. digits/difficulty", Group.RUN, "Smallest difficulty (digits, for arithmetic).", min=1)
    max_difficulty: int = _f(3, "Max. digits/difficulty", Group.RUN, "Largest difficulty (digits, for arithmetic).", min=1)
    # The paper widened its digit range as the model improved; starting on the easy digits gives the first
    # iterations questions the model can solve, so that there are rationales to learn from.
    curriculum: bool = _f(
        False, "Curriculum", Group.CURRICULUM,
        "Widen the training range as the model improves: iteration 1 trains on the lowest two difficulties (with a "
        "seed: up to seed_max_digits+1); self-solved accuracy above curriculum_threshold on the top one adds the next. "
        "The eval set always spans the full range.",
    )
    curriculum_threshold: float = _f(
        0.8, "Curriculum threshold", Group.CURRICULUM,
        "With curriculum: self-solved accuracy on the current top difficulty above which the next one is added.",
        min=0.0, max=1.0,
    )
    # Few-shot, the embedded model writes no verified multi-digit rationale, and a loop without one teaches bare sums;
    # every small-model self-improvement loop starts from exact traces (docs/paper.md#the-seeded-loop).
    seed_max_digits: int = _f(
        2, "Seed: exact up to difficulty", Group.SEED,
        "Seed with the exact reference rationale (arithmetic, gsm8k) of every training question up to this difficulty: "
        "fine-tuned on first (iteration 0 evaluates the seed alone) and kept in every iteration's rows. 0 = no seed: "
        "iteration 0 is the few-shot model (docs/paper.md#the-seeded-loop).", min=0,
    )
    # The size of the shipped exemplar file: a few exact rows show the model the next length's layout.
    seed_per_longer_digit: int = _f(
        8, "Seed: exact rows per longer difficulty", Group.SEED,
        "With a seed: also this many exact rationales of each difficulty above seed_max_digits (taken from the "
        "training questions).", min=0, max=8,
    )
    # QuestA (arXiv 2507.13266) anneals a partial gold solution as the hint from 50% to 25% of its steps.
    partial_hint_start: float = _f(
        0.5, "Partial hint: share of steps given (iteration 1)", Group.SEED,
        "Rationalization's hint also gives this share of the reference rationale's first steps (rounded down) in "
        "iteration 1, annealed linearly to partial_hint_end in the last; the row trains on them and the model's own. "
        "0 = the answer hint alone (the paper).", min=0.0, max=1.0,
    )
    partial_hint_end: float = _f(
        0.25, "Partial hint: share of steps given (last iteration)", Group.SEED,
        "The share of steps given in the last iteration (see partial_hint_start).", min=0.0, max=1.0,
    )
    # Self-Improving Transformers (arXiv 2502.01612) train each round on every earlier round's rows.
    keep_earlier_rows: bool = _f(
        False, "Keep earlier iterations' rows", Group.SEED,
        "Fine-tune each iteration on the seed and the kept rationales of every iteration so far (a question's latest "
        "kept ones), not only its own.",
    )
    iterations: int = _f(3, "Iterations", Group.RUN, "STaR iterations after the few-shot baseline (iteration 0).", min=0)
    # The paper iterates until performance plateaus; a fixed count either stops too early or wastes iterations.
    patience: int = _f(
        0, "Patience (iterations)", Group.RUN,
        "Stop when eval accuracy has not improved for this many iterations (0 = off); --iterations stays the "
        "upper bound.", min=0,
    )
    # A laptop user asks "the best within 30 minutes", not "after n iterations": the clock, not patience, ended
    # the 1-5 digit runs (docs/measurements.md#2026-12-02-star-on-15-digits-three-seeds).
    time_budget_minutes: float = _f(
        0.0, "Time budget (minutes)", Group.RUN,
        "Start no iteration that would end past this many minutes of the run's wall time (iteration 0 "
        "included), judged by the last iteration's length with its fine-tuning grown by step_growth (0 = off); "
        "--iterations stays the upper bound.", min=0.0,
    )
    # Direct fine-tuning on the final answers is the paper's main baseline: it tells how much of a gain is the rationales'.
    mode: str = _f(
        RunMode.STAR.value, "Mode", Group.RUN,
        "star: fine-tune on the model's own rationales (generate, rationalize, filter). direct: fine-tune on the gold "
        "answer of every training question with no rationale, prompted and evaluated answer-only (the paper's "
        "baseline); with --iterations 0, answer-only few-shot.",
        choices=tuple(m.value for m in RunMode),
    )
    # The paper decodes almost greedily (T=0.01); higher temperatures made worse models.
    temperature: float = _f(
        0.0, "Temperature", Group.DECODING, "Sampling temperature; 0 decodes greedily, as the paper nearly does.",
        min=0.0, max=2.0,
    )
    top_p: float = _f(0.9, "Top-p", Group.DECODING, "Nucleus sampling mass (used when temperature > 0).", min=0.01, max=1.0)
    samples_per_question: int = _f(
        1, "Samples per question", Group.DECODING, "Rationales sampled per training question (k).", min=1
    )
    # RFT / ReST-EM keep every distinct correct sample; a cap stops easy questions from dominating the kept set.
    max_kept_per_question: int = _f(
        4, "Most kept per question", Group.FILTERING,
        "Most rationales kept per question after de-duplication (identical up to case and whitespace count once).", min=1
    )
    keep_hint_leaks: bool = _f(
        False, "Keep hint leaks", Group.FILTERING,
        "Keep rationalized rationales flagged as restating the hint (quoting '(CORRECT)' or giving the answer before any reasoning)."
    )
    max_new_tokens: int = _f(
        96, "Max. new tokens", Group.DECODING,
        "Longest rationale the model may write, in tokens (star run uses 192 for gsm8k and 64 for commonsenseqa unless given).",
        min=4,
    )
    rationalize: bool = _f(True, "Rationalize", Group.RUN, "Retry wrong answers with the correct answer as a hint.")
    filter: str = _f(
        "verified", "Keep filter", Group.RUN,
        "Which rationales to keep: 'answer' = right final answer (the paper); "
        "'verified' = right answer and steps verified (falls back to 'answer' where a task cannot check steps).",
        choices=FILTER_MODES,
    )
    # The paper's arithmetic rows carry no few-shot prompt (its code refuses few_shot_train there): rows of
    # 40-190 tokens instead of a 300-900 token prefix each step.
    # Default off since the seed (2026-12-07 in docs/measurements.md): short rows make the seed's steps affordable.
    train_prefix: bool = _f(
        False, "Few-shot prompt in training rows", Group.OTHER,
        "Fine-tune on rows that follow the few-shot prompt, as they were generated; --no-train-prefix: rows "
        "are the question, rationale and answer alone (completion-only loss either way)."
    )
    # The paper's --no_prompt: a model fine-tuned on rows without the prompt is asked as it was trained.
    prompt_trained: bool = _f(
        False, "Few-shot prompt after fine-tuning", Group.OTHER,
        "Prompt a fine-tuned model with the few-shot exemplars; --no-prompt-trained: generate and evaluate "
        "with the question alone once the model is fine-tuned (iteration 0 and rationalization keep the exemplars: "
        "the model was never trained on a hint)."
    )
    finetune: str = _f(
        "lora", "Fine-tuning method", Group.FINETUNING,
        "Fine-tuning method: 'lora' (adapters on every linear layer) or 'full' (every weight).", choices=FINETUNE_METHODS
    )
    lora_rank: int = _f(16, "LoRA rank", Group.FINETUNING, "LoRA rank (with finetune=lora).", min=1, max=1024)
    # 1e-3 taught the place sums in 256 steps (docs/measurements.md, 2026-12-06) and beat 2e-4 (2026-12-04).
    learning_rate: float = _f(
        1e-3, "Learning rate", Group.FINETUNING,
        "Fine-tuning learning rate (AdamW); full fine-tuning usually wants about 10x less than LoRA.", min=0.0, max=1.0
    )
    batch_size: int = _f(
        8, "Fine-tuning batch size", Group.FINETUNING, "Fine-tuning batch size (sequences per step).", min=1
    )
    # Official STaR: 40 steps, +20% per iteration, on far larger sets. We scale the first iteration to about
    # `epochs` passes over the kept set (with a seed, its rows too): 4 keeps the default run near 20 minutes, and
    # teaches the layout but not yet the 2-digit sums (docs/measurements.md, 2026-12-07; 8 passes did, 2026-12-06).
    epochs: float = _f(
        4.0, "Epochs (iteration 1)", Group.FINETUNING,
        "Passes over the kept rationales in iteration 1 (steps grow 20% per iteration).", min=0.1,
    )
    min_steps: int = _f(20, "Min. fine-tuning steps", Group.FINETUNING, "Fewest fine-tuning steps in an iteration.", min=1)
    # Arms of an experiment that keep different numbers of rationales get the same budget this way.
    steps: int = _f(
        0, "Fine-tuning steps (iteration 1)", Group.FINETUNING,
        "Fine-tuning steps in iteration 1, whatever the kept set's size (they grow by step_growth per iteration); "
        "0 = from the kept set (epochs passes, at least min_steps).", min=0,
    )
    step_growth: float = _f(
        0.2, "Step growth per iteration", Group.FINETUNING, "Growth of the step count per iteration (0.2 = +20%).",
        min=0.0, max=5.0,
    )
    gen_batch_size: int = _f(32, "Generation batch size", Group.DECODING, "Questions decoded together.", min=1)
    device: str = _f(
        "auto", "Device", Group.MACHINE, "Where to run: auto (CUDA when present), cpu or cuda.", choices=DEVICES
    )
    # Where a run computes, not what it computes: they are stored with the run so that a resume runs the same
    # way, and greedy results are the same with or without them (docs/scale.md).
    workers: int = _f(
        0, "Decode workers (Ray)", Group.MACHINE,
        "Decode each generation phase on this many Ray actors, each with its own model replica (one GPU each where "
        "the cluster has GPUs, else an equal share of the CPU cores); 0 = in this process. Needs the 'ray' extra. "
        "Does not change what is generated.", min=0,
    )
    # --ray: the short spelling the docs use.
    ray_address: str = _f(
        "", "Ray cluster address", Group.MACHINE,
        "With --workers: the Ray cluster to join (host:6379, or ray://host:10001); empty = start Ray on this machine.",
        aliases=("--ray",),
    )
    train_processes: int = _f(
        1, "Fine-tuning processes", Group.MACHINE,
        "Fine-tune in this many processes with data parallelism (one GPU each where there are GPUs, else a share "
        "of the cores); each takes its part of every batch, so the steps and the result are those of one process, up "
        "to float rounding.", min=1,
    )
    seed: int = _f(0, "Seed", Group.MACHINE, "Seed for problem generation, splits, sampling and fine-tuning.", min=0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            _check_type(f.name, value, f.type)
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise ConfigError(f.name, f"{value!r} is not one of {', '.join(f.metadata['choices'])}")
            if "min" in f.metadata and value < f.metadata["min"]:
                raise ConfigError(f.name, f"must be at least {f.metadata['min']}, got {value}")
            if "max" in f.metadata and value > f.metadata["max"]:
                raise ConfigError(f.name, f"must be at most {f.metadata['max']}, got {value}")
        if self.max_difficulty < self.min_difficulty:
            raise ConfigError("max_difficulty", f"must be at least min_difficulty ({self.min_difficulty}), got {self.max_difficulty}")
        if self.curriculum and self.mode == RunMode.DIRECT:
            raise ConfigError("curriculum", "needs mode star: a direct run solves no training questions to widen the range by")
        if not self.model.strip():
            raise ConfigError("model", "must name a model")
        if self.ray_address.strip() and not self.workers:
            raise ConfigError("ray_address", "needs --workers N: how many decode workers to start on that cluster")
        if self.train_processes > self.batch_size:
            raise ConfigError("train_processes", f"must be at most batch_size ({self.batch_size}): each process "
                              "trains on its part of every batch")
        parse_data_map(self.data_map)

    def steps_for(self, iteration: int, kept: int) -> int:
        """Fine-tuning steps for an iteration (1-based) with `kept` training rationales (`steps`, when set, instead)."""
        first = self.steps or max(self.min_steps, math.ceil(self.epochs * kept / self.batch_size))
        return math.ceil(first * (1 + self.step_growth) ** (iteration - 1))

    # --- serialisation -----------------------------------------------------

    def to_json(self) -> str:
        """The stored form: every field, and the settings version they are written in."""
        return json.dumps({**asdict(self), VERSION_KEY: settings_version()}, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Stored settings of any version up to this one (upgraded on the way: UPGRADES); a dict without a
        version is version 1, what runs stored before versions were."""
        values = upgraded(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"is not a RunConfig field at settings version {settings_version()} "
                                          f"(known: {', '.join(sorted(known))})")
        return cls(**values)

    @classmethod
    def parse_values(cls, texts: dict[str, str]) -> dict:
        """Field values given as text (a task key's, a form's) in their fields' types; ConfigError naming the field."""
        return {name: field_value(name, text) for name, text in texts.items()}

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))


# Stored settings carry their version, so that renaming or removing a field keeps older databases readable:
# append a function to UPGRADES that turns the previous version's dict into the new one (the version follows).
VERSION_KEY = "settings_version"
UPGRADES: list[Callable[[dict], dict]] = []  # UPGRADES[k - 1]: version k -> k + 1


def settings_version() -> int:
    """The version today's RunConfig fields are: 1, plus one per upgrade step."""
    return len(UPGRADES) + 1


def upgraded(values: dict) -> dict:
    """Stored settings in today's version, without the version key; ConfigError for a version newer than this."""
    values = dict(values)
    version = values.pop(VERSION_KEY, 1)
    current = settings_version()
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= current:
        raise ConfigError(VERSION_KEY, f"{version!r} is not a settings version this STaR Studio reads (1 to "
                                       f"{current}); a newer version of it wrote these settings")
    for step in UPGRADES[version - 1:]:
        values = step(values)
    return values


def parse_data_map(text: str) -> dict[str, str]:
    """'question=q,answer=a' as {'question': 'q', 'answer': 'a'}; ConfigError naming the bad pair."""
    out: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        role, sep, path = (x.strip() for x in pair.partition("="))
        if not sep or not role or not path:
            raise ConfigError("data_map", f"{pair!r} is not ROLE=FIELD (e.g. question=q,answer=a)")
        if role not in MAP_ROLES:
            raise ConfigError("data_map", f"unknown role {role!r} in {pair!r}; roles are {', '.join(MAP_ROLES)}")
        if role in out:
            raise ConfigError("data_map", f"role {role!r} is mapped twice")
        out[role] = path
    return out


def field_help() -> dict[str, dict]:
    """Each field's default and metadata, for generating forms and CLI options."""
    return {f.name: {"default": f.default, **f.metadata} for f in fields(RunConfig)}


def field_value(name: str, value):
    """`value` in field `name`'s type: text (a task key's, a form's) parsed, an int a float where the field holds
    floats (a number widget gives either); ConfigError naming the field."""
    annotation = _ANNOTATIONS.get(name)
    if annotation is None:
        raise ConfigError(name, "is not a RunConfig field")
    if isinstance(value, str) and annotation != "str":
        if annotation == "bool":
            return value == "True"
        try:
            return TYPES[annotation](value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a {annotation}") from None
    if annotation == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_ANNOTATIONS = {f.name: f.type for f in fields(RunConfig)}


def _check_type(name: str, value, annotation: str) -> None:
    expected = (int, float) if annotation == "float" else TYPES[annotation]
    # bool is an int in Python; a flag given where a number belongs is still a mistake.
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, expected):
        raise ConfigError(name, f"must be of type {annotation}, got {type(value).__name__} {value!r}")
    if annotation == "float" and not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value}")
