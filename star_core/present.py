"""Pure helpers behind the app's pages (no streamlit here): why an attempt was kept or
rejected, word-level differences between two rationales as escaped HTML, the accuracy
page's figure data, and short formats.

Model text is untrusted: every piece of it that goes into HTML passes html.escape.
"""

from __future__ import annotations

import difflib
import html
import json
import re

import pandas as pd

# --- why an attempt was kept ------------------------------------------------------


def why_kept(attempt: dict) -> str:
    """One sentence on why an attempt went into fine-tuning or did not."""
    kind = attempt.get("kind")
    if kind == "eval":
        return "Evaluation attempt: scored for accuracy, never trained on."
    correct, verified = attempt.get("correct"), attempt.get("verified")
    reason = (attempt.get("verify_reason") or "").strip()
    if attempt.get("used_for_training"):
        how = "self-generated" if kind == "generated" else "rationalized (written with the answer as a hint)"
        checked = " and its steps verified" if verified is True else ""
        return f"Kept for fine-tuning: {how}, its final answer is correct{checked}."
    if not correct:
        return "Rejected: the extracted answer is not the gold answer."
    if verified is False:
        return f"Rejected: the answer is right but a step does not hold ({reason or 'verification failed'})."
    if attempt.get("hint_leak"):
        return "Rejected: the rationale restates the hint instead of reasoning (hint leak)."
    if kind == "rationalized":
        return ("Not kept: correct, but the question was already solved without a hint, "
                "or the iteration has not been filtered yet.")
    return "Not kept: correct, but a duplicate rationale or the iteration has not been filtered yet."


def choices_of(value) -> list[tuple[str, str]]:
    """problems.choices JSON ([[label, text], ...]) as pairs; [] when there are none."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return []
    try:
        items = json.loads(value) if isinstance(value, str) else value
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
    train = attempts[attempts.kind.isin(["generated", "rationalized"])]
    both = [it for it, g in train.groupby("iteration") if set(g.kind) >= {"generated", "rationalized"}]
    if both:
        it = iteration if iteration in both else max(both)
        rows = train[train.iteration == it]
        return int(rows[rows.kind == "generated"].attempt_id.iloc[0]), int(rows[rows.kind == "rationalized"].attempt_id.iloc[0])
    ids = list(attempts.attempt_id)
    return (int(ids[-2]), int(ids[-1])) if len(ids) > 1 else (int(ids[0]), None)


# --- accuracy page data -----------------------------------------------------------


# What the accuracy page can colour its lines by: a run each, or the exemplar set a run was
# prompted with (so runs with the same set share a colour, and curated vs default sets compare).
GROUP_BY = {"run": "run", "exemplar set": "exemplar_set"}


def accuracy_figures_data(store, run_ids: list[int]) -> dict[str, pd.DataFrame]:
    """The accuracy page's four figures' data, one tidy frame each (also what CSV downloads give).

    Every frame names the run ("run") and the exemplar set it was prompted with ("exemplar_set",
    'name@version'), so a chart can colour by either and the CSV keeps both.
    """
    labels = store.run_labels()
    sets = run_exemplar_sets(store)
    acc = store.eval_accuracy(run_ids)
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
    return {
        "accuracy": overall,
        "accuracy_by_difficulty": by_difficulty.reset_index(drop=True),
        "coverage": coverage,
        "train_loss": loss,
    }


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


# --- formats ----------------------------------------------------------------------

# Streamlit markdown colours for a run's status (no emoji: many Linux browsers lack the font).
STATUS_COLORS = {"running": "green", "cancelling": "orange", "starting": "blue", "pending": "gray", "done": "blue", "cancelled": "orange",
                 "failed": "red", "crashed": "red"}


def pct(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1%}"


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
