"""Export an iteration's model as a folder that transformers loads in one call (`star export --model`).

The folder holds the base model with the iteration's fine-tuning merged in, and its tokenizer, so
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` load it without peft
or this project. Its weights are those the run's evaluation decoded with: load_model merges a LoRA adapter
into the base model in the dtype generation uses on this machine (bf16 where bf16 is fast, else float32;
STAR_BF16 chooses), and the folder keeps that dtype, so the model answers the eval questions as the stored
evaluation did (reevaluate.py checks it). By default the export is the run's best iteration (run_models.py).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..analysis.run_models import on_disk, run_models
from ..core.errors import ExportError
from ..model.loading import load_model
from ..store import EvaluatedIteration, Store

SOURCE_FILE = "star-export.json"  # which run and iteration the folder came from, and its eval accuracy


@dataclass(frozen=True)
class ExportedModel:
    run_id: int
    iteration: EvaluatedIteration
    best: bool  # the run's best iteration
    folder: Path
    dtype: str


def chosen_iteration(store: Store, run_id: int, iteration: int | None = None) -> EvaluatedIteration:
    """The evaluated iteration to export (None: the best), refused with what to do where it has no weights."""
    run = store.get_run(run_id)
    evaluated = store.finished_iterations(run_id)
    models = run_models(evaluated)
    if models is None:
        raise ExportError(f"run {run_id} has no evaluated iteration yet, so no model to export")
    if iteration is None:
        chosen = models.best
    else:
        found = [it for it in evaluated if it.iteration == iteration]
        if not found:
            raise ExportError(f"run {run_id} has no evaluated iteration {iteration} (evaluated: "
                              f"{', '.join(str(it.iteration) for it in evaluated)})")
        chosen = found[0]
    kept = [it.iteration for it in evaluated if on_disk(it) and it.iteration != chosen.iteration]
    other = f"; export one that has with --iteration {kept[-1]}" if kept else ""
    which = "best iteration is" if iteration is None else "iteration"
    if chosen.checkpoint is None:
        why = "the few-shot baseline" if chosen.iteration == 0 else "it kept no rationale, so it was not fine-tuned"
        raise ExportError(f"run {run_id}'s {which} {chosen.iteration}, whose model is the base model {run.config.model} "
                          f"({why}): it has no fine-tuned weights to export; use {run.config.model} itself{other}")
    if not on_disk(chosen):
        raise ExportError(f"the checkpoint of run {run_id}'s {which} {chosen.iteration} ({chosen.checkpoint}) is "
                          f"gone: a run keeps only its best and latest iteration's (runs made before this version "
                          f"kept only the latest){other}")
    return chosen


def export_model(store: Store, run_id: int, out: Path, iteration: int | None = None) -> ExportedModel:
    """Write iteration `iteration`'s model (None: the best iteration's) with its tokenizer to the new folder `out`.

    The folder appears whole or not at all: it is written beside `out` and renamed into place."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ExportError(f"{out} already exists{' and is not empty' if out.is_dir() else ''}; give a new folder")
    chosen = chosen_iteration(store, run_id, iteration)
    best = run_models(store.finished_iterations(run_id)).best.iteration == chosen.iteration
    lm = load_model(store.get_run(run_id).config.model, "cpu", checkpoint=chosen.checkpoint)
    dtype = str(lm.model.dtype).removeprefix("torch.")
    part = out.with_name(f".{out.name}.{os.getpid()}.partial")
    source = {"run_id": run_id, "iteration": chosen.iteration, "best": best, "eval_accuracy": chosen.accuracy,
              "eval_correct": chosen.correct, "eval_n": chosen.n, "base_model": lm.spec, "dtype": dtype,
              "database": str(store.path.resolve())}
    try:
        shutil.rmtree(part, ignore_errors=True)
        lm.model.save_pretrained(part)
        lm.tokenizer.save_pretrained(part)
        (part / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # the empty folder given
        part.replace(out)
    except OSError as exc:
        shutil.rmtree(part, ignore_errors=True)
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return ExportedModel(run_id, chosen, best, out, dtype)
