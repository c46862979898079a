"""The paper's comparison as one experiment: five arms on the same problems and eval questions
(docs/paper.md#presets-stopping-and-the-papers-comparison).

    star experiment paper --db star.duckdb [any star run setting, applied to every arm]

The arms, run in this order, are ordinary runs (they browse, audit and export as any other):

1. few-shot, answer only: mode direct, iterations 0 (the exemplars without rationales);
2. few-shot with rationales: iteration 0 of STaR;
3. direct fine-tuning: mode direct, fine-tuned on every training question's gold answer;
4. STaR without rationalization;
5. STaR.

What makes them comparable:

* the same problems and eval questions: every arm gets the same settings (seed, sizes and
  difficulties decide the problems), and only what names the arm differs (mode, iterations,
  rationalize);
* the same training-step budget per iteration where an arm trains: unless `steps` is given,
  every training arm gets steps = what direct fine-tuning's kept set (every training
  question) would take, max(min_steps, ceil(epochs * train_size / batch_size)), in
  iteration 1, growing by step_growth per iteration as usual. STaR keeps fewer rationales
  than there are questions, so it makes more passes over them in the same steps; its
  rationales are longer, so its training tokens (shown in the table) are more;
* direct fine-tuning has no curriculum (it solves no training questions to widen its range
  by); patience applies to every training arm alike.

The experiment stores the settings it was given, so `--resume EXPERIMENT_ID` continues its
unfinished arms in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..core.config import RunConfig
from ..core.errors import ExperimentError
from .prepare import prepare_run
from ..analysis.comparison import RunRef, compare_runs, p_clause, signed_points
from ..analysis.present import duration
from ..store.compare import ComparisonError
from ..core.states import RunMode, RunStatus, _Text


class Arm(_Text):
    FEWSHOT_ANSWER = "fewshot-answer"
    FEWSHOT_RATIONALE = "fewshot-rationale"
    DIRECT = "direct"
    STAR_NO_RATIONALIZATION = "star-no-rationalization"
    STAR = "star"


@dataclass(frozen=True)
class ArmSpec:
    arm: Arm
    label: str  # as the paper's tables name it
    overrides: dict  # the RunConfig values that make the arm what it is
    trains: bool


PAPER_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec(Arm.FEWSHOT_ANSWER, "few-shot, answer only", {"mode": RunMode.DIRECT.value, "iterations": 0, "curriculum": False}, False),
    ArmSpec(Arm.FEWSHOT_RATIONALE, "few-shot with rationales", {"mode": RunMode.STAR.value, "iterations": 0}, False),
    ArmSpec(Arm.DIRECT, "direct fine-tuning", {"mode": RunMode.DIRECT.value, "curriculum": False}, True),
    ArmSpec(Arm.STAR_NO_RATIONALIZATION, "STaR without rationalization", {"mode": RunMode.STAR.value, "rationalize": False}, True),
    ArmSpec(Arm.STAR, "STaR", {"mode": RunMode.STAR.value, "rationalize": True}, True),
)
EXPERIMENT_KINDS = {"paper": PAPER_ARMS}
ARM_LABELS = {spec.arm.value: spec.label for spec in PAPER_ARMS}


def step_budget(config: RunConfig) -> int:
    """Iteration 1's fine-tuning steps for every training arm: `steps` if set, else direct fine-tuning's."""
    return config.steps or max(config.min_steps, math.ceil(config.epochs * config.train_size / config.batch_size))


# Settings the experiment sets itself, and why a value given for the whole experiment is refused.
ARM_SETTINGS = {
    "mode": "it tells the arms apart",
    "rationalize": "it tells the arms apart",
    "seed_max_digits": "no seed: its arms start from the few-shot model",
}


@dataclass(frozen=True)
class Plan:
    name: str  # the experiment's name: --name, or the kind
    configs: dict[Arm, RunConfig]  # in the order the arms run


def plan(given: dict, preset: str | None, kind: str = "paper") -> Plan:
    """Each arm's validated RunConfig: the settings given (over the preset), the arm's own values, the step budget.

    `iterations` given applies to the arms that train (the few-shot arms have none). InvalidSettings names
    every bad setting once, before any arm, and refuses ARM_SETTINGS.
    """
    from .prepare import InvalidSettings

    refused = [k for k in ARM_SETTINGS if k in given]
    if refused:
        raise InvalidSettings({k: f"is set by the {kind} experiment itself ({ARM_SETTINGS[k]}); leave it out"
                               for k in refused})
    arms = _arms(kind)
    base = prepare_run(given, preset).config
    budget = step_budget(base)
    name = base.name or kind
    configs = {}
    for spec in arms:
        values = {**given, **spec.overrides, "name": f"{name}: {spec.label}", "seed_max_digits": 0}
        if spec.trains:
            values["steps"] = budget  # the same budget per iteration for every arm that trains
        configs[spec.arm] = prepare_run(values, preset).config
    return Plan(name, configs)


def create_experiment(store, given: dict, preset: str | None, kind: str = "paper", reporter=None) -> int:
    """Store an experiment and a (pending) run per arm, every arm checked first; return the experiment's id."""
    from .prepare import create_run

    planned = plan(given, preset, kind)
    runs = {}
    for arm, config in planned.configs.items():  # the first arm finds a bad model, data file or exemplar set: nothing stored
        runs[arm.value] = create_run(store, config, reporter)
    return store.create_experiment(planned.name, {"kind": kind, "preset": preset, "given": given}, runs)


def run_experiment(store, experiment_id: int, reporter=None, queue: bool = True,
                   on_arm: Callable[[str, int], None] | None = None) -> None:
    """Run every unfinished arm of an experiment in order (a done arm is skipped): start or resume.

    A cancelled or failed arm stops the experiment (the error is raised); running it again continues there.
    """
    from .loop import execute_run
    from .prepare import create_run

    experiment = store.get_experiment(experiment_id)
    kind = experiment.config.get("kind", "paper")
    for spec in _arms(kind):
        run_id = experiment.runs.get(spec.arm.value)
        if run_id is None:  # never created (the experiment was stored by an older version): create it now
            config = plan(experiment.config["given"], experiment.config.get("preset"), kind).configs[spec.arm]
            run_id = create_run(store, config, reporter)
            store.add_experiment_run(experiment_id, spec.arm.value, run_id)
        status = store.get_run(run_id).status
        if status == RunStatus.DONE:
            continue
        if status in (RunStatus.RUNNING, RunStatus.QUEUED):
            raise ExperimentError(f"arm '{spec.label}' (run {run_id}) is {status} in another process; "
                                  f"resume the experiment when it has ended")
        if on_arm is not None:
            on_arm(spec.label, run_id)
        execute_run(store, run_id, reporter, queue=queue)


def _arms(kind: str) -> tuple[ArmSpec, ...]:
    try:
        return EXPERIMENT_KINDS[kind]
    except KeyError:
        raise ExperimentError(f"unknown experiment {kind!r}; known: {', '.join(EXPERIMENT_KINDS)}") from None


# --- the table and the figure (pure) -------------------------------------------------


def experiment_table(summary: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """The paper-style table, one row per arm in the experiment's order: eval accuracy overall and per
    difficulty at the arm's last evaluated iteration, its best overall accuracy, iterations trained,
    kept rationales (last trained iteration), training steps and tokens (all iterations), wall seconds.

    `summary`: Store.experiment_summary; `accuracy`: Store.experiment_accuracy (eval rows).
    """
    difficulties = sorted(int(d) for d in accuracy.difficulty.dropna().unique()) if not accuracy.empty else []
    rows = []
    for r in summary.itertuples():
        acc = accuracy[accuracy.run_id == r.run_id]
        overall = acc[acc.difficulty.isna()].sort_values("iteration")
        last = int(overall.iteration.max()) if not overall.empty else None
        row = {"arm": ARM_LABELS.get(r.arm, r.arm), "run": int(r.run_id), "status": str(r.status),
               "iterations": int(r.iterations_done), "evaluated at": last}
        at_last = acc[acc.iteration == last] if last is not None else acc.iloc[0:0]
        row["overall"] = _value(at_last[at_last.difficulty.isna()].accuracy)
        for d in difficulties:
            row[f"difficulty {d}"] = _value(at_last[at_last.difficulty == d].accuracy)
        if overall.empty:
            row["best"], row["best at"] = None, None
        else:
            best = overall.loc[overall.accuracy.idxmax()]  # the first iteration reaching the best
            row["best"], row["best at"] = float(best.accuracy), int(best.iteration)
        row["kept"] = _int(r.kept)
        row["train steps"] = _int(r.train_steps)
        row["train tokens"] = _int(r.train_tokens)
        row["wall s"] = None if pd.isna(r.wall_s) else float(r.wall_s)
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """The table as text for the terminal (percentages, '-' for what an arm does not have)."""
    if table.empty:
        return "no arms"
    shown = table.copy()
    for col in shown.columns:
        if col == "overall" or col == "best" or col.startswith("difficulty "):
            shown[col] = shown[col].map(lambda x: "-" if x is None or pd.isna(x) else f"{x:.1%}")
        elif col == "wall s":
            shown[col] = shown[col].map(duration)
        elif col in ("kept", "train steps", "train tokens", "evaluated at", "best at"):
            shown[col] = shown[col].map(lambda x: "-" if x is None or pd.isna(x) else f"{int(x):,}")
    return shown.rename(columns={"wall s": "wall time"}).to_string(index=False)


def star_against_arms(store, summary: pd.DataFrame) -> pd.DataFrame:
    """STaR paired against every other arm on the eval questions both answered, each at its last evaluated
    iteration (what `star compare ARM STAR` gives): accuracies, STaR - arm with its 95% interval, the exact
    McNemar p, and the questions only one side got right. Arms without an evaluation are left out; no STaR
    evaluation, no rows.

    `summary`: Store.experiment_summary.
    """
    cols = ["arm", "run", "shared", "arm accuracy", "STaR accuracy", "STaR - arm", "ci low", "ci high", "p",
            "only STaR right", "only arm right"]
    star = summary[summary.arm == Arm.STAR.value]
    if star.empty:
        return pd.DataFrame(columns=cols)
    star_run = RunRef(int(star.run_id.iloc[0]))
    rows = []
    for r in summary[summary.arm != Arm.STAR.value].itertuples():
        try:
            c = compare_runs(store, RunRef(int(r.run_id)), star_run).overall
        except ComparisonError:  # not evaluated yet (a pending or crashed arm)
            continue
        rows.append({"arm": ARM_LABELS.get(r.arm, r.arm), "run": int(r.run_id), "shared": c.shared,
                     "arm accuracy": c.accuracy_a, "STaR accuracy": c.accuracy_b, "STaR - arm": c.difference,
                     "ci low": c.ci_low, "ci high": c.ci_high, "p": c.p_value,
                     "only STaR right": c.only_b, "only arm right": c.only_a})
    return pd.DataFrame(rows, columns=cols)


def format_star_against_arms(pairs: pd.DataFrame) -> str:
    """star_against_arms as lines for the terminal, one per arm."""
    if pairs.empty:
        return "no arm to pair with STaR yet"
    return "\n".join(
        f"STaR - {r.arm} (run {r.run}): {signed_points(r['STaR - arm'])}, 95% CI {signed_points(r['ci low'])} to "
        f"{signed_points(r['ci high'])}, {p_clause(r.p)}; right only with STaR {r['only STaR right']}, only with the "
        f"arm {r['only arm right']}, of {r.shared} shared questions"
        for _, r in pairs.iterrows())


def figure_data(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Eval accuracy per difficulty against iteration, one row per arm, iteration and difficulty, with the arm's
    label and whether it rationalizes (for the with/without rationalization overlay)."""
    cols = ["arm", "arm_key", "run_id", "iteration", "difficulty", "n", "correct", "accuracy", "rationalization"]
    rows = accuracy[accuracy.difficulty.notna()].copy() if not accuracy.empty else pd.DataFrame(columns=accuracy.columns)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows["arm_key"] = rows.arm
    rows["arm"] = rows.arm_key.map(lambda a: ARM_LABELS.get(a, a))
    rows["difficulty"] = rows.difficulty.astype(int)
    rows["rationalization"] = rows.arm_key.map({Arm.STAR.value: "with rationalization",
                                                Arm.STAR_NO_RATIONALIZATION.value: "without rationalization"})
    return rows[cols].reset_index(drop=True)


def arm_order(accuracy_or_summary: pd.DataFrame) -> list[str]:
    """The arms' labels in the paper's order (those present)."""
    present = set(accuracy_or_summary.arm) if not accuracy_or_summary.empty else set()
    return [spec.label for spec in PAPER_ARMS if spec.arm.value in present or spec.label in present]


def _value(series: pd.Series):
    return float(series.iloc[0]) if len(series) else None


def _int(x):
    return None if x is None or pd.isna(x) else int(x)


__all__ = ["ARM_LABELS", "ARM_SETTINGS", "Arm", "ArmSpec", "PAPER_ARMS", "Plan", "create_experiment", "experiment_table",
           "figure_data", "format_star_against_arms", "format_table", "plan", "run_experiment", "star_against_arms",
           "step_budget"]
