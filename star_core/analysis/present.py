"""Pure helpers behind the app's pages (no streamlit here): why an attempt was kept or
rejected, word-level differences between two rationales as escaped HTML, the accuracy
page's figure data (with Wilson intervals, run colours and legend labels that say what
differs between runs), words for field names, and short formats.

Model text is untrusted: every piece of it that goes into HTML passes html.escape.
"""

from __future__ import annotations

import difflib
import html
import re

import pandas as pd

from ..core.states import TRAINING_KINDS, AttemptKind
from .stats import wilson_interval
from ..tasks.base import choices_from_json, written_share

def choices_of(value) -> list[tuple[str, str]]:
    """problems.choices JSON ([[label, text], ...]) as pairs; [] when there are none."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return []
    try:
        items = choices_from_json(value) if isinstance(value, str) else value
        return [(str(label), str(text)) for label, text in items]
    except (ValueError, TypeError):
        return [("?", str(value))]


# --- differences between two rationales -------------------------------------------

_TOKEN = re.compile(r"\s+|[^\s]+")
_STYLE = ("white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9rem; "
          "padding: 0.6rem; border-radius: 0.4rem; background: rgba(128,128,128,0.08); margin: 0")
_DEL = "background: rgba(255, 80, 80, 0.35); text-decoration: line-through"
_INS = "background: rgba(60, 200, 90, 0.35)"


def diff_html(left: str, right: str) -> tuple[str, str]:
    """Two <pre> blocks: `left` with what `right` lacks struck out, `right` with what it adds highlighted.

    Word-level (whitespace kept), every piece of text HTML-escaped.
    """
    a, b = _TOKEN.findall(left or ""), _TOKEN.findall(right or "")
    out_a, out_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if op == "equal":
            out_a.append(old)
            out_b.append(new)
            continue
        if old:
            out_a.append(f'<span style="{_DEL}">{old}</span>')
        if new:
            out_b.append(f'<span style="{_INS}">{new}</span>')
    wrap = lambda parts: f'<pre style="{_STYLE}">{"".join(parts)}</pre>'  # noqa: E731
    return wrap(out_a), wrap(out_b)


def similarity(left: str, right: str) -> float:
    return difflib.SequenceMatcher(None, _TOKEN.findall(left or ""), _TOKEN.findall(right or ""), autojunk=False).ratio()


def default_pair(attempts: pd.DataFrame, iteration: int | None = None) -> tuple[int | None, int | None]:
    """Which two attempts of one question to compare first: self-generated vs rationalized of one
    iteration where both exist (the latest such, or `iteration`), else the two latest attempts."""
    if attempts.empty:
        return None, None
    train = attempts[attempts.kind.isin(TRAINING_KINDS)]
    both = [it for it, g in train.groupby("iteration") if set(g.kind) >= set(TRAINING_KINDS)]
    if both:
        it = iteration if iteration in both else max(both)
        rows = train[train.iteration == it]
        return int(rows[rows.kind == AttemptKind.GENERATED].attempt_id.iloc[0]), int(rows[rows.kind == AttemptKind.RATIONALIZED].attempt_id.iloc[0])
    ids = list(attempts.attempt_id)
    return (int(ids[-2]), int(ids[-1])) if len(ids) > 1 else (int(ids[0]), None)


# --- accuracy page data -----------------------------------------------------------


# What the accuracy page can colour its lines by: a run each, or the exemplar set a run was
# prompted with (so runs with the same set share a colour, and curated vs default sets compare).
GROUP_BY = {"run": "run", "exemplar set": "exemplar_set"}


def accuracy_figures_data(store, run_ids: list[int]) -> dict[str, pd.DataFrame]:
    """The accuracy page's figures' data, one tidy frame each (also what CSV downloads give).

    Every frame names the run ("run": a legend label saying what differs between the chosen runs)
    and the exemplar set it was prompted with ("exemplar_set", 'name@version'), so a chart can
    colour by either and the CSV keeps both. Accuracy rows carry their 95% Wilson interval
    (ci_low, ci_high) and n. "train_steps" is the loss at every fine-tuning step (empty for runs
    stored before steps were recorded); "train_loss" the final loss per iteration.
    """
    sets = run_exemplar_sets(store)
    labels = legend_labels(store, run_ids, sets)
    acc = with_wilson(store.eval_accuracy(run_ids))
    acc["run"] = acc.run_id.map(labels)
    acc["exemplar_set"] = acc.run_id.map(sets)
    overall = acc[acc.difficulty.isna()].drop(columns=["difficulty"]).reset_index(drop=True)
    by_difficulty = acc[acc.difficulty.notna()].copy()
    by_difficulty["difficulty"] = by_difficulty.difficulty.astype(int)
    cov = store.coverage(run_ids)
    cov["run"] = cov.run_id.map(labels)
    cov["exemplar_set"] = cov.run_id.map(sets)
    coverage = cov.melt(
        id_vars=["run_id", "run", "exemplar_set", "iteration", "train_questions"],
        value_vars=["kept_self", "kept_rationalized"], var_name="source", value_name="questions",
    )
    coverage["source"] = coverage.source.map({"kept_self": "self-generated", "kept_rationalized": "rationalized"})
    coverage["fraction"] = coverage.questions / coverage.train_questions
    coverage = coverage.sort_values(["run_id", "iteration", "source"], ascending=[True, True, False]).reset_index(drop=True)
    loss = store.training_stats(run_ids)
    loss["run"] = loss.run_id.map(labels)
    loss["exemplar_set"] = loss.run_id.map(sets)
    steps = store.train_steps(run_ids)
    steps["run"] = steps.run_id.map(labels)
    steps["exemplar_set"] = steps.run_id.map(sets)
    return {
        "accuracy": overall,
        "accuracy_by_difficulty": by_difficulty.reset_index(drop=True),
        "coverage": coverage,
        "train_loss": loss,
        "train_steps": steps,
    }


def with_wilson(acc: pd.DataFrame) -> pd.DataFrame:
    """Accuracy rows (n, correct) with their 95% Wilson interval and the error-bar lengths a chart needs."""
    acc = acc.copy()
    bounds = [wilson_interval(int(c), int(n)) for c, n in zip(acc["correct"], acc["n"])]
    acc["ci_low"] = [lo for lo, _ in bounds]
    acc["ci_high"] = [hi for _, hi in bounds]
    acc["err_minus"] = acc["accuracy"] - acc["ci_low"]
    acc["err_plus"] = acc["ci_high"] - acc["accuracy"]
    return acc


def runs_with_data(store) -> list[int]:
    """Runs with at least one evaluated iteration (the accuracy page preselects among these, never an empty run)."""
    return sorted({int(r) for r in store.evaluated_iterations().run_id})


# A qualitative palette (Tableau 10, reordered so the first runs are far apart in hue): Streamlit's own
# chart theme would otherwise draw overlaid runs in near-identical blues.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f")


def colors_for(names: list[str]) -> dict[str, str]:
    """A distinct colour per name, in order (the palette repeats after ten)."""
    unique = list(dict.fromkeys(names))
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(unique)}


def legend_labels(store, run_ids: list[int], sets: dict[int, str] | None = None) -> dict[int, str]:
    """run id -> '#id what differs' among `run_ids` (settings and exemplar set), else '#id name'."""
    sets = sets if sets is not None else run_exemplar_sets(store)
    ids = [int(r) for r in run_ids]
    settings = store.run_settings(ids)
    configs = [{**settings.get(r, {}), "exemplars": sets.get(r, settings.get(r, {}).get("exemplars", ""))} for r in ids]
    out = {}
    for r, diff in zip(ids, distinguishing_labels(configs)):
        config = settings.get(r, {})
        out[r] = f"#{r} {diff or config.get('name') or config.get('task', '')}".strip()
    return out


# Settings named first in a legend when several differ: the ones a STaR experiment varies.
_LEGEND_ORDER = ("rationalize", "exemplars", "filter", "seed", "model", "task", "finetune", "lora_rank", "learning_rate",
                 "samples_per_question", "temperature", "train_size", "eval_size", "iterations")
_LEGEND_WORDS = {"lora_rank": "LoRA rank", "learning_rate": "lr", "samples_per_question": "samples",
                 "train_size": "train", "eval_size": "eval", "max_new_tokens": "max tokens", "keep_hint_leaks": "hint leaks kept",
                 "min_difficulty": "min difficulty", "max_difficulty": "max difficulty", "finetune": "fine-tune"}
_LEGEND_SKIP = {"name"}  # free text: the fallback when nothing else differs


def distinguishing_labels(configs: list[dict], most: int = 3) -> list[str]:
    """For each run's settings, the settings in which the runs differ, as words: e.g.
    ["rationalize on", "rationalize off"] or ["exemplars curated@1", "exemplars default@1"].

    At most `most` settings are named (the ones experiments vary first), then '+N more'.
    Runs whose settings are all the same get "".
    """
    if len(configs) < 2:
        return ["" for _ in configs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differ = [k for k in keys if k not in _LEGEND_SKIP and len({repr(c.get(k)) for c in configs}) > 1]
    differ.sort(key=lambda k: (_LEGEND_ORDER.index(k) if k in _LEGEND_ORDER else len(_LEGEND_ORDER), k))
    shown, hidden = differ[:most], len(differ) - most
    out = []
    for c in configs:
        parts = [_legend_part(k, c.get(k)) for k in shown]
        out.append(", ".join(parts) + (f" +{hidden} more" if hidden > 0 else ""))
    return out


def _legend_part(key: str, value) -> str:
    word = _LEGEND_WORDS.get(key, key.replace("_", " "))
    if isinstance(value, bool):
        return f"{word} {'on' if value else 'off'}"
    if value is None or value == "":
        return f"{word} default"
    if isinstance(value, float):
        return f"{word} {value:g}"
    if key == "model" and isinstance(value, str):
        return value.rstrip("/").rsplit("/", 1)[-1]
    return f"{word} {value}"


def run_exemplar_sets(store) -> dict[int, str]:
    """run id -> the exemplar set it was prompted with, as 'name@version'."""
    runs = store.runs_with_exemplar_sets()
    return {int(r): str(s) for r, s in zip(runs.run_id, runs.exemplar_set)}


# --- adding an attempt to an exemplar set -------------------------------------------


def added_to_set_message(name: str, before, after, attempt_id: int) -> str:
    """What happened when attempt `attempt_id` was added to set `name`.

    `before` is the set's latest version before the add (None if the name was new), `after`
    the version now holding the exemplars (both ExemplarSet).
    """
    if before is None:
        return f"Added to a new set, {after.label}."
    if after.id == before.id:
        if any(it.source_attempt_id == attempt_id for it in before.items):
            return f"Already in {after.label}: nothing changed."
        return f"Added to {after.label} (now {len(after.items)} exemplars)."
    return (f"Added to {after.label}, a new version: {before.label} is used by a run, so it stays as it was "
            f"({len(after.items)} exemplars in {after.label}).")


# --- words for field names ----------------------------------------------------------

# Column headers of the app's tables (and the words for stored fields anywhere in the app). The words for
# RunConfig fields are settings_spec.label: a column that shares a field's name may count something else
# (an exemplar set's `exemplars`, an iteration's `steps`).
LABELS = {
    "attempt_id": "Attempt", "run_id": "Run", "run": "Run", "iteration": "Iteration", "kind": "Kind",
    "sample": "Sample", "split": "Split", "difficulty": "Difficulty", "question": "Question", "rationale": "Rationale",
    "completion": "Raw completion", "hint": "Hint", "predicted_answer": "Answer given", "gold_answer": "Gold answer",
    "correct": "Correct", "verified": "Steps verified", "verify_reason": "Step check", "used_for_training": "Trained on",
    "hint_leak": "Hint leak", "prompt_tokens": "Prompt tokens", "new_tokens": "New tokens", "seconds": "Seconds",
    "kept": "Kept", "steps": "Steps", "train_loss": "Final training loss", "loss": "Training loss",
    "train_tokens": "Training tokens", "train_seconds": "Training time (s)", "learning_rate": "Learning rate",
    "n": "Questions (n)", "accuracy": "Accuracy", "ci_low": "95% CI low", "ci_high": "95% CI high",
    "exemplar_set": "Exemplar set", "train_questions": "Training questions", "questions": "Questions",
    "fraction": "Share", "source": "Solved by", "shared": "Shared questions", "accuracy_a": "Accuracy A",
    "accuracy_b": "Accuracy B", "difference": "B − A", "p_value": "p-value", "both_right": "Both right",
    "only_a": "Only A right", "only_b": "Only B right", "both_wrong": "Both wrong", "right_side": "Right on",
    "a_answer": "A's answer", "b_answer": "B's answer", "a_attempt_id": "A's attempt", "b_attempt_id": "B's attempt",
    "problem_id": "Question id", "trajectory": "Trajectory", "path": "Path", "first_right": "First right at",
    "transition": "Change", "step": "Iterations", "outcome": "Outcome", "from_iteration": "From iteration",
    "to_iteration": "To iteration", "answered": "Answered", "eval_questions": "Eval questions",
    "min_difficulty": "Min. difficulty", "max_difficulty": "Max. difficulty",
}


def label(field: str) -> str:
    """The words the app shows for a stored field or column name."""
    return LABELS.get(field) or field.replace("_", " ").capitalize()


# --- formats ----------------------------------------------------------------------

# Streamlit markdown colours for a run's status (no emoji: many Linux browsers lack the font).
STATUS_COLORS = {"running": "green", "cancelling": "orange", "starting": "blue", "pending": "gray", "queued": "violet", "done": "blue", "cancelled": "orange",
                 "failed": "red", "crashed": "red"}


def pct(x, digits: int = 1) -> str:
    """A share as a percent; an en dash where there is none (no evaluation yet, nothing audited)."""
    return "–" if x is None or pd.isna(x) else f"{x:.{digits}%}"


def runs_overview(runs: pd.DataFrame, statuses: list[str]) -> pd.DataFrame:
    """The runs table the Overview page and `star runs` both show, newest first.

    `runs` is Store.list_runs(); `statuses` its status column with each queued run's place
    (run_queue.status_labels), computed by the caller because the queue is above this part.
    """
    now = [
        f"iter {int(i)} · {ph} {int(d)}/{int(t)}" if isinstance(ph, str) and pd.notna(t) else ""
        for i, ph, d, t in zip(runs.cur_iteration, runs.cur_phase, runs.phase_done, runs.phase_total)
    ]
    return pd.DataFrame({
        "run": runs.id,
        "name": runs.name,
        "status": statuses,
        "task": runs.task,
        "model": runs.model.map(lambda m: m.rstrip("/").rsplit("/", 1)[-1]),
        "iterations": [f"{d}/{p}" for d, p in zip(runs.iterations_done, runs.iterations_planned)],
        "now": now,
        "ETA": [duration(e) if n else "" for e, n in zip(runs.eta_s, now)],
        "baseline": runs.baseline_accuracy.map(pct),
        "latest": runs.latest_accuracy.map(pct),
        "best": runs.best_accuracy.map(pct),
        "created": runs.created_at.dt.strftime("%Y-%m-%d %H:%M"),
    }).iloc[::-1]


def duration(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def flag(value) -> str:
    """✓ / ✗ / – for a nullable boolean."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    return "✓" if bool(value) else "✗"


def kept_steps_table(kept: pd.DataFrame, labels: dict[int, str]) -> pd.DataFrame:
    """Per run and iteration: kept rationales, how many had their steps, and the share (Store.kept_with_steps),
    for the runs whose task checks steps."""
    rows = kept[kept.checked > 0]
    return pd.DataFrame({
        "run": rows.run_id.map(labels).fillna(rows.run_id.map(lambda r: f"#{r}")),
        "iteration": rows.iteration.astype(int),
        "kept": rows.kept.astype(int),
        "with steps": rows.with_steps.astype(int),
        "share with steps": rows.with_steps / rows.kept,
        "written by the model": written_shares(rows),
    }).reset_index(drop=True)


def written_shares(kept: pd.DataFrame) -> list[float | None]:
    """Per row of Store.kept_with_steps: the share of the kept rationales' steps the model wrote itself, not given
    in a partial hint (None where no step was counted)."""
    steps = kept.steps if "steps" in kept else pd.Series([None] * len(kept), index=kept.index)
    given = kept.given_steps if "given_steps" in kept else steps
    return [written_share([(s, g)]) if pd.notna(s) else None for s, g in zip(steps, given)]


def given_and_own(rationale: str, given_text: str | None) -> tuple[str, str]:
    """A rationale cut where a partial hint's given steps end: (the given steps, what the model wrote after them);
    ('', the rationale) where nothing was given or the rationale does not start with it."""
    given = (given_text or "").strip()
    if not given or not rationale.startswith(given):
        return "", rationale
    return given, rationale[len(given):].strip()


SEED_NOTE = "Seed row: an exact reference rationale the run started from, written by the task, not by the model."
