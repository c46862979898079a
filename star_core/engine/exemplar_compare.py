"""Exemplar sets chosen by evidence: two sets evaluated few-shot on the same eval questions.

    star exemplars compare arithmetic-default mine@2 --db star.duckdb [--eval-size 96] [--format json]

Each set gets an ordinary run, the few-shot baseline alone (mode star, iteration 0 only),
with every other setting the same, so both draw the same problems and eval questions. The
two runs are stored as an experiment of kind `exemplars` (arms `set-a` and `set-b`): they
browse, audit and compare as any other run, and the Exemplars page finds them again. The
result is `star compare` on their iteration 0, plus the two sets' labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..analysis.comparison import RunComparison, RunRef, compare_runs
from ..core.errors import ExperimentError
from ..core.states import ExemplarArm, ExperimentKind, RunMode, RunStatus
from ..store.exemplar_sets import ExemplarSet, ExemplarSetError
from ..tasks import KEY_FIELDS, TASK_NAMES


# Settings that make the two runs what they are: given, they would be ignored or make the sides differ
# (the task and its key settings come from the sets; no seed, so that iteration 0 is the prompt's model).
FIXED = ("task", *KEY_FIELDS, "exemplars", "iterations", "mode", "name", "seed_max_digits")


@dataclass(frozen=True)
class ExemplarComparison:
    experiment_id: int
    set_a: str  # NAME@VERSION
    set_b: str
    run_a: int
    run_b: int
    comparison: RunComparison | None  # None until both runs have evaluated

    def to_dict(self) -> dict:
        """`star compare`'s JSON keys, then set_a, set_b and experiment_id."""
        if self.comparison is None:
            raise ExperimentError(f"exemplar comparison {self.experiment_id} has not finished: "
                                  f"runs {self.run_a} and {self.run_b} have not both evaluated")
        return {**self.comparison.to_dict(), "set_a": self.set_a, "set_b": self.set_b,
                "experiment_id": self.experiment_id}


def find_set(store, ref: str) -> ExemplarSet:
    """The set `ref` names; a task's shipped default set ('arithmetic-default') is registered if no run used it yet."""
    from .exemplars import default_set_id, default_set_name
    from ..tasks import get_task

    try:
        return store.find_exemplar_set(ref)
    except ExemplarSetError:
        for name in TASK_NAMES:  # each task with its default settings (jsonl: its default answer type)
            task = get_task(name)
            if ref.strip() == default_set_name(task):
                return store.exemplar_set(default_set_id(store, task))
        raise


def plan(store, ref_a: str, ref_b: str, given: dict | None = None):
    """The two sets and each side's validated RunConfig: `given` (eval_size, seed, model, data, ...) for both,
    the task from the sets' key, iteration 0 only. Nothing is stored but a default set not registered yet."""
    from .prepare import InvalidSettings, prepare_run

    given = dict(given or {})
    refused = [k for k in FIXED if k in given]
    if refused:
        raise InvalidSettings({k: "is set by the exemplar comparison itself (the sets' task, iteration 0); "
                                  "leave it out" for k in refused})
    prepare_run(given)  # a bad setting is named before the sets are looked up
    a = find_set(store, ref_a)
    b = find_set(store, ref_b)
    if a.id == b.id:
        raise ExemplarSetError(f"{ref_a} and {ref_b} are the same set ({a.label}); compare two different sets")
    if a.task_key != b.task_key:
        raise ExemplarSetError(f"{a.label} is for {a.task_key.describe()} and {b.label} for {b.task_key.describe()}; "
                               "only sets of one task key share eval questions")
    configs = {}
    for arm, s in zip(ExemplarArm, (a, b)):
        values = {**given, "task": s.task_key.name, **s.task_key.config_values(), "exemplars": s.label,
                  "iterations": 0, "mode": RunMode.STAR.value, "name": f"set {s.label}", "seed_max_digits": 0}
        configs[arm.value] = prepare_run(values).config
    return a, b, configs


def create(store, ref_a: str, ref_b: str, given: dict | None = None, reporter=None) -> int:
    """Store the two runs (pending) as an experiment of kind exemplars; return the experiment's id."""
    from .prepare import create_run

    a, b, configs = plan(store, ref_a, ref_b, given)
    runs = {arm: create_run(store, config, reporter) for arm, config in configs.items()}
    config = {"kind": ExperimentKind.EXEMPLARS.value, "set_a": a.label, "set_b": b.label, "given": dict(given or {})}
    return store.create_experiment(f"exemplars {a.label} vs {b.label}", config, runs)


def run(store, experiment_id: int, reporter=None, queue: bool = True,
        on_arm: Callable[[str, int], None] | None = None) -> None:
    """Evaluate each side not done yet, A then B (a done side is skipped, so this also resumes)."""
    from .loop import execute_run

    experiment = _experiment(store, experiment_id)
    for arm in ExemplarArm:
        run_id = experiment.runs[arm]
        status = store.get_run(run_id).status
        if status == RunStatus.DONE:
            continue
        if status in (RunStatus.RUNNING, RunStatus.QUEUED):
            raise ExperimentError(f"run {run_id} ({_set_label(experiment, arm)}) is {status} in another process; "
                                  "resume the comparison when it has ended")
        if on_arm is not None:
            on_arm(_set_label(experiment, arm), run_id)
        execute_run(store, run_id, reporter, queue=queue)


def result(store, experiment_id: int) -> ExemplarComparison:
    """The comparison of the two sides' iteration 0; `comparison` is None while either has not evaluated."""
    experiment = _experiment(store, experiment_id)
    run_a, run_b = (experiment.runs[arm] for arm in ExemplarArm)
    done = all(store.get_run(r).status == RunStatus.DONE for r in (run_a, run_b))
    comparison = compare_runs(store, RunRef(run_a, 0), RunRef(run_b, 0)) if done else None
    return ExemplarComparison(experiment_id, experiment.config["set_a"], experiment.config["set_b"], run_a, run_b,
                              comparison)


def _experiment(store, experiment_id: int):
    experiment = store.get_experiment(experiment_id)
    if experiment.config.get("kind") != ExperimentKind.EXEMPLARS:
        raise ExperimentError(f"experiment {experiment_id} is not an exemplar comparison "
                              f"(it is {experiment.config.get('kind')!r})")
    return experiment


def _set_label(experiment, arm: str) -> str:
    return experiment.config["set_a" if arm == ExemplarArm.A else "set_b"]
