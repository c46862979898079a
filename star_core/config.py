"""RunConfig: every knob of a STaR run, validated and serialisable to JSON.

The CLI's options and the app's form are both generated from the field metadata
(``help``, and ``choices`` or bounds where a field has them), so a knob is added
in exactly one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError

TASKS = ("arithmetic", "gsm8k", "commonsenseqa", "jsonl")
FILTER_MODES = ("verified", "answer")
DEVICES = ("auto", "cpu", "cuda")
FINETUNE_METHODS = ("lora", "full")


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class RunConfig:
    name: str = _f("", "A label for the run (free text).")
    task: str = _f("arithmetic", "Which task's problems, prompt format and answer check to use.", choices=TASKS)
    data: str = _f("", "Dataset file for tasks that read one (gsm8k, commonsenseqa, jsonl).")
    model: str = _f(
        "smollm2-135m",
        "Embedded model name (smollm2-135m, gemma3-270m), local folder, .gguf file, or hub id.",
    )
    exemplars: str = _f("", "Exemplar set NAME or NAME@VERSION for the few-shot prompt; empty = the task's default set.")
    # Sizes: 256 train problems keep a CPU iteration at a few minutes while giving
    # the filter enough correct rationales (DESIGN §3: 160 gave only 23-40 kept).
    train_size: int = _f(256, "Training questions per iteration.", min=1)
    eval_size: int = _f(96, "Held-out questions evaluated after every iteration.", min=1)
    min_difficulty: int = _f(1, "Smallest difficulty (digits, for arithmetic).", min=1)
    max_difficulty: int = _f(3, "Largest difficulty (digits, for arithmetic).", min=1)
    iterations: int = _f(3, "STaR iterations after the few-shot baseline (iteration 0).", min=0)
    # The paper decodes almost greedily (T=0.01); higher temperatures made worse models.
    temperature: float = _f(0.0, "Sampling temperature; 0 decodes greedily, as the paper nearly does.", min=0.0, max=2.0)
    top_p: float = _f(0.9, "Nucleus sampling mass (used when temperature > 0).", min=0.01, max=1.0)
    samples_per_question: int = _f(1, "Rationales sampled per training question (k).", min=1)
    max_new_tokens: int = _f(96, "Longest rationale the model may write, in tokens.", min=4)
    rationalize: bool = _f(True, "Retry wrong answers with the correct answer as a hint.")
    filter: str = _f(
        "verified",
        "Which rationales to keep: 'answer' = right final answer (the paper); "
        "'verified' = right answer and steps verified (falls back to 'answer' where a task cannot check steps).",
        choices=FILTER_MODES,
    )
    finetune: str = _f(
        "lora", "Fine-tuning method: 'lora' (adapters on every linear layer) or 'full' (every weight).", choices=FINETUNE_METHODS
    )
    lora_rank: int = _f(16, "LoRA rank (with finetune=lora).", min=1, max=1024)
    learning_rate: float = _f(
        2e-4, "Fine-tuning learning rate (AdamW); full fine-tuning usually wants about 10x less than LoRA.", min=0.0, max=1.0
    )
    batch_size: int = _f(8, "Fine-tuning batch size (sequences per step).", min=1)
    # Official STaR: 40 steps, +20% per iteration, on far larger sets. We scale the
    # first iteration to about `epochs` passes over the kept set.
    epochs: float = _f(2.0, "Passes over the kept rationales in iteration 1 (steps grow 20% per iteration).", min=0.1)
    min_steps: int = _f(20, "Fewest fine-tuning steps in an iteration.", min=1)
    step_growth: float = _f(0.2, "Growth of the step count per iteration (0.2 = +20%).", min=0.0, max=5.0)
    gen_batch_size: int = _f(32, "Questions decoded together.", min=1)
    device: str = _f("auto", "Where to run: auto (CUDA when present), cpu or cuda.", choices=DEVICES)
    seed: int = _f(0, "Seed for problem generation, splits, sampling and fine-tuning.", min=0)

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
        if not self.model.strip():
            raise ConfigError("model", "must name a model")

    def steps_for(self, iteration: int, kept: int) -> int:
        """Fine-tuning steps for an iteration (1-based) with `kept` training rationales."""
        first = max(self.min_steps, math.ceil(self.epochs * kept / self.batch_size))
        return math.ceil(first * (1 + self.step_growth) ** (iteration - 1))

    # --- serialisation -----------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"is not a RunConfig field (known: {', '.join(sorted(known))})")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))


def field_help() -> dict[str, dict]:
    """Each field's default and metadata, for generating forms and CLI options."""
    return {f.name: {"default": f.default, **f.metadata} for f in fields(RunConfig)}


def _check_type(name: str, value, annotation: str) -> None:
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[annotation]
    # bool is an int in Python; a flag given where a number belongs is still a mistake.
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, expected):
        raise ConfigError(name, f"must be of type {annotation}, got {type(value).__name__} {value!r}")
    if annotation == "float" and not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value}")
