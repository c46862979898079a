"""Named presets: sets of RunConfig values that reproduce a result with one flag.

A preset is data: each value with the reason it was chosen. `star run --preset NAME` and the
Runs form's preset picker apply one; a setting given beside it wins. The order is: given >
preset > the task's suggestion > RunConfig's default (prepare.prepare_run).
"""

from __future__ import annotations

from .config import RunConfig
from .errors import ConfigError

PRESETS: dict[str, dict] = {
    # The paper's setting on a CPU laptop: the best measured on 1-5 digits, short of the 30-minute goal
    # (docs/measurements.md#2026-12-02-star-on-15-digits-three-seeds).
    "paper-arithmetic": {
        "task": "arithmetic",  # the paper's first task: n-digit addition
        # In the paper's scratchpad neither embedded model wrote one right sum few-shot; place-value starts at 27.5%
        # (docs/measurements.md#2026-12-03-the-papers-scratchpad-on-the-embedded-models-and-prefix-free-fine-tuning).
        "arithmetic_format": "place-value",
        "min_difficulty": 1,  # the paper's range: 1 to 5 digits
        "max_difficulty": 5,
        "train_size": 128,  # an iteration takes 6-8 minutes on a 2-core CPU at this size: 3 iterations fit 30 minutes
        "eval_size": 80,  # 16 questions per digit count: the eval is a fifth of an iteration's decoding
        "iterations": 16,  # the paper's 16 iterations, now an upper bound: patience stops earlier
        "patience": 2,  # the paper iterates until accuracy plateaus; 2 iterations without a gain ends a run
        # The goal is the best within 30 minutes; while each iteration still gains, the clock ends the run, not patience
        # (docs/measurements.md#2026-12-04-the-preset-a-curriculum-at-099-and-full-fine-tuning-on-a-cpu-with-bf16).
        "time_budget_minutes": 30,
        # Without it the 4-5 digit questions are rationalized from iteration 1; at 0.99 it never passed 2 digits
        # (docs/measurements.md#2026-12-04-the-preset-a-curriculum-at-099-and-full-fine-tuning-on-a-cpu-with-bf16).
        "curriculum": False,
        "curriculum_threshold": 0.8,  # used only with --curriculum
        # The paper's one near-greedy sample; 8 at T 0.7 found no verified 2-3 digit steps
        # (docs/measurements.md#2026-12-03-no-way-found-to-a-verified-multi-digit-rationale-on-the-embedded-models).
        "samples_per_question": 1,
        "finetune": "lora",  # a 19 MB adapter per checkpoint and no optimizer state for the base weights
        # Rank 64 taught 2-digit steps no better than 16; more steps did
        # (docs/measurements.md#2026-12-06-the-embedded-model-learns-verified-place-sums-given-600-steps).
        "lora_rank": 16,
        # Reaches 2e-4's best one or two iterations sooner, so a slow CPU's 30 minutes still reach it
        # (docs/measurements.md#2026-12-04-star-on-15-digits-at-learning-rate-1e-3-three-seeds).
        "learning_rate": 1e-3,
        # The model writes no right multi-digit place sums few-shot: `verified` kept 1-digit rationales only
        # (docs/measurements.md#2026-12-02-at-15-digits-requiring-the-steps-leaves-only-1-digit-rationales).
        "filter": "answer",
        "rationalize": True,  # the paper's STaR: rationalization fills in what the model cannot solve alone
        "max_new_tokens": 96,  # a 5-digit place-value rationale with its answer is about 50 tokens
        "seed_max_digits": 0,  # the paper's loop starts from the few-shot model: no seed (its figures were measured so)
        "partial_hint_start": 0.0,  # the paper's hint is the answer alone
        "partial_hint_end": 0.0,
        "train_prefix": True,  # the values its figures were measured with, before the seeded defaults of 2026-12-07
        "prompt_trained": True,
        "epochs": 2.0,
    },
    # The seeded loop (docs/paper.md#the-seeded-loop) aimed at 1-5 digits within 45 minutes; each value follows the
    # measurement cited. Best run (seed 0, 2026-12-08): 37.5%, 3-5 digits at 0, no better than the seed trained as
    # long: far from the goal (docs/measurements.md).
    "seeded-arithmetic": {
        "task": "arithmetic",  # the paper's n-digit addition
        "arithmetic_format": "place-value",  # the one format the seed probes and the 600-step ceiling measured (2026-12-06)
        "min_difficulty": 1,  # the paper's range: 1 to 5 digits
        "max_difficulty": 5,
        "train_size": 512,  # twice 256's seed rows: 2 digits 14/16 after two iterations, not 1-2/16 (2026-12-08)
        "eval_size": 80,  # 16 per digit count, as the 2026-12-06 ceiling asked
        "seed_max_digits": 2,  # the seed; trained on 1-2 digits only the model drops a place at 3 (2026-12-06)
        "seed_per_longer_digit": 8,  # the exemplar file's size; 8 exact 3-digit rows gave 2/16 verified 3-digit sums (2026-12-07)
        "partial_hint_start": 0.5,  # QuestA's 50%; half the place sums given: 1 verified 3-digit row of 87 (2026-12-07)
        "partial_hint_end": 0.25,  # QuestA's 25% in the last iteration, so the model writes more of each kept rationale
        "curriculum": True,  # the default run kept 0-1 3-digit rows an iteration (2026-12-07): 4-5 digits would be wasted
        "curriculum_threshold": 0.5,  # not yet measured seeded; 0.99 never passed 2 digits unseeded (2026-12-04)
        "keep_earlier_rows": True,  # Self-Improving Transformers train on every round's rows
        "samples_per_question": 1,  # 8 samples at T 0.7 added 1 of 16 verified 3-digit sums to greedy (2026-12-07)
        "learning_rate": 1e-3,  # taught the place sums in 256 steps (2026-12-06)
        "lora_rank": 16,  # rank 64 moved nothing (2026-12-06)
        "epochs": 4.0,  # 8 passes over 256's ~50 two-digit rows memorised them (loss 0.002, 2026-12-08)
        "iterations": 8,  # an upper bound: the time budget ends the run
        "time_budget_minutes": 45,  # the 45 minutes on the 2-core bf16 CPU
        "filter": "verified",  # it rejected 24 right hinted 3-digit sums with a wrong step (2026-12-07)
        "train_prefix": False,  # short rows: 256 steps took 350 s (2026-12-06)
        "prompt_trained": False,  # asked as it was trained, the seeded model wrote place sums at every size (2026-12-07)
        "max_new_tokens": 96,  # a 5-digit place-value rationale with its answer is about 50 tokens
    },
}

# The preset `star experiment paper` uses for a task unless another (or none) is given.
PAPER_EXPERIMENT_PRESETS = {"arithmetic": "paper-arithmetic"}


def paper_experiment_preset(task: str | None = None, chosen: str | None = None) -> str | None:
    """The preset `star experiment paper` (and the Runs page's comparison) applies: the one `chosen`, 'none' for
    none, else the task's entry in PAPER_EXPERIMENT_PRESETS (task None: RunConfig's default task)."""
    if chosen is None:
        chosen = PAPER_EXPERIMENT_PRESETS.get(task or RunConfig.__dataclass_fields__["task"].default)
    return None if chosen == "none" else chosen


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_values(name: str) -> dict:
    """A preset's RunConfig values (a copy); ConfigError naming `preset` for an unknown name."""
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ConfigError("preset", f"unknown preset {name!r}; presets: {', '.join(PRESETS) or 'none'}") from None


def presets_for(task: str) -> list[str]:
    """The presets that fit a task: those made for it, and those that name no task."""
    return [name for name, values in PRESETS.items() if values.get("task", task) == task]


def describe(name: str) -> str:
    """A preset as the flags it stands for (for help texts and notes)."""
    def flag(key: str, value) -> str:
        name = key.replace("_", "-")
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no-{name}"
        return f"--{name} {value}"

    return " ".join(flag(k, v) for k, v in PRESETS[name].items())
