"""Compare runs: two (run, iteration) evaluations paired on the eval questions both answered.

Each side's accuracy, the difference B − A with its 95% interval and p-value, the four cells,
the same per difficulty, and the questions only one side got right, opened side by side.
The statistics are star_core.analysis.stats'; the pairing is the store's (star_core/store/compare.py).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import _ui as ui
from star_core.analysis.comparison import RunRef, compare_runs, p_text, signed_points
from star_core.analysis.present import label, pct
from star_core.analysis.stats import CI_METHOD, TEST_METHOD


def _pick_side(col, name: str, evaluated: pd.DataFrame, labels: dict, default_run: int, default_it: int | None):
    runs = list(dict.fromkeys(int(r) for r in evaluated.run_id))
    run_key, it_key = f"cmp_{name.lower()}_run", f"cmp_{name.lower()}_iteration"
    if run_key not in st.session_state:
        st.session_state[run_key] = default_run if default_run in runs else runs[-1]
    run_id = col.selectbox(f"Run {name}", runs, key=run_key, format_func=lambda r: labels.get(r, f"#{r}"))
    done = evaluated[evaluated.run_id == run_id]
    its = [int(i) for i in done.iteration]
    complete = [int(i) for i in done[done.answered >= done.eval_questions].iteration] or its
    wanted = default_it if default_it in its else complete[-1]
    if st.session_state.get(it_key) not in its:
        st.session_state[it_key] = wanted
    answered = dict(zip(its, (int(n) for n in done.answered)))
    iteration = col.selectbox(f"Iteration of {name}", its, key=it_key,
                              format_func=lambda i: f"{i} ({answered[i]} eval answers)" + (" · few-shot" if i == 0 else ""))
    return RunRef(run_id, iteration)


# Runs with these settings alike ask the same eval questions.
SAME_QUESTIONS = ("task", "data", "seed", "eval_size", "min_difficulty", "max_difficulty")


def _defaults(store, evaluated: pd.DataFrame) -> tuple[tuple[int, int | None], tuple[int, int | None]]:
    """A = ?a=RUN[@IT], else the newest earlier run asking the same eval questions as B; B = ?b=, else the newest
    evaluated run. One run alone (or none alike): its first vs its last evaluated iteration."""
    runs = list(dict.fromkeys(int(r) for r in evaluated.run_id))
    parsed = {}
    for side in ("a", "b"):
        value = st.query_params.get(side)
        try:
            ref = RunRef.parse(value) if value else None
        except Exception:  # noqa: BLE001 - a bad URL parameter falls back to the defaults
            ref = None
        parsed[side] = (ref.run_id, ref.iteration) if ref else None
    b_run = parsed["b"][0] if parsed["b"] else runs[-1]
    settings = store.run_settings(runs)
    key = lambda r: tuple(settings.get(r, {}).get(k) for k in SAME_QUESTIONS)  # noqa: E731
    alike = [r for r in runs if r != b_run and key(r) == key(b_run)]
    if alike:
        fallback_a = (alike[-1], None)
    else:
        its = sorted(int(i) for i in evaluated[evaluated.run_id == b_run].iteration)
        fallback_a = (b_run, its[0])
    return parsed["a"] or fallback_a, parsed["b"] or (b_run, None)


def summary(c, labels: dict) -> None:
    o = c.overall
    name = lambda s: f"{labels.get(s.run_id, '#' + str(s.run_id))} · iteration {s.iteration}"  # noqa: E731
    if c.shared_note:
        st.info(c.shared_note)
    m = st.columns(4)
    m[0].metric("Accuracy A", pct(o.accuracy_a), help=ui.md_escape(name(c.a)))
    m[1].metric("Accuracy B", pct(o.accuracy_b), help=ui.md_escape(name(c.b)))
    m[2].metric("Difference B − A", signed_points(o.difference), help="percentage points, on the questions both answered")
    m[3].metric("p-value", p_text(o.p_value), help=TEST_METHOD)
    st.markdown(f"**95% confidence interval of B − A: {signed_points(o.ci_low)} to {signed_points(o.ci_high)}** "
                f"on {o.shared} shared eval questions ({o.discordant} answered right by one side only).")
    st.caption(f"Interval: {CI_METHOD}. p-value: {TEST_METHOD}. Questions are paired: both sides answered the same ones.")
    cells = pd.DataFrame({"": ["A right", "A wrong"], "B right": [o.both_right, o.only_b], "B wrong": [o.only_a, o.both_wrong]})
    per = c.difficulty_table()
    left, right = st.columns([1, 3])
    with left:
        st.markdown("**The four cells**")
        st.dataframe(cells, hide_index=True, key="cmp_cells")
    with right:
        if len(per) > 1:
            st.plotly_chart(_forest(c), key="fig_compare_difference")
    st.markdown("**Per difficulty**")
    shown = per.assign(**{k: per[k].map(pct) for k in ("accuracy_a", "accuracy_b")},
                       difference=per.difference.map(signed_points),
                       ci=[f"{signed_points(lo)} to {signed_points(hi)}" for lo, hi in zip(per.ci_low, per.ci_high)],
                       p_value=per.p_value.map(p_text))
    shown = shown[["difficulty", "shared", "accuracy_a", "accuracy_b", "difference", "ci", "p_value", "both_right",
                   "only_a", "only_b", "both_wrong"]]
    st.dataframe(shown, hide_index=True, key="cmp_by_difficulty", width="stretch",
                 column_config=ui.column_config(shown.columns, ci=st.column_config.Column("95% CI of B − A")))
    ui.download_csv(c.difficulty_table(overall=True), "comparison")


def _forest(c) -> go.Figure:
    """The difference and its interval, overall and per difficulty."""
    rows = [("all", c.overall)] + [(f"difficulty {d}" if d is not None else "no difficulty", x) for d, x in c.by_difficulty.items()]
    names = [r[0] for r in rows][::-1]
    diffs = [r[1].difference for r in rows][::-1]
    fig = go.Figure(go.Scatter(
        x=diffs, y=names, mode="markers", marker=dict(size=10, color="#1f77b4"),
        error_x=dict(type="data", symmetric=False, array=[r[1].ci_high - r[1].difference for r in rows][::-1],
                     arrayminus=[r[1].difference - r[1].ci_low for r in rows][::-1]),
        customdata=[[r[1].shared, r[1].p_value] for r in rows][::-1],
        hovertemplate="%{y}: %{x:+.1%} (n %{customdata[0]}, p %{customdata[1]:.3f})<extra></extra>"))
    fig.add_vline(x=0, line_dash="dot", line_color="gray")
    fig.update_layout(title="Difference B − A with its 95% interval", height=120 + 40 * len(rows),
                      margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(tickformat="+.0%", title="B − A"))
    return fig


def discordant(store, c) -> None:
    st.subheader("Questions only one side got right")
    d = c.discordant
    if d.empty:
        st.caption("None: both sides got the same questions right and wrong.")
        return
    shown = d.assign(right_side=d.right_side.map({"A": "A only", "B": "B only"}))
    shown = shown[["right_side", "gold_answer", "a_answer", "b_answer", "difficulty", "question", "problem_id",
                   "a_attempt_id", "b_attempt_id"]]
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="cmp_discordant_table", height=min(38 + 35 * len(shown), 320),
                         column_config=ui.column_config(shown.columns, question=st.column_config.TextColumn(label("question"), width="large")))
    ui.download_csv(d, "discordant_questions")
    ids = list(range(len(d)))
    picked = event.selection.rows[0] if event is not None and event.selection.rows else None
    if picked is not None and st.session_state.get("cmp_last_pick") != picked:
        st.session_state["cmp_last_pick"] = picked
        st.session_state["cmp_open"] = picked
    if st.session_state.get("cmp_open") not in ids:
        st.session_state["cmp_open"] = 0
    i = st.selectbox("Open a question (or select a row above)", ids, key="cmp_open",
                     format_func=lambda i: f"{d.problem_id.iloc[i]} · {d.right_side.iloc[i]} only right · {d.question.iloc[i][:70]}")
    row = d.iloc[i]
    a, b = store.attempt_detail(int(row.a_attempt_id)), store.attempt_detail(int(row.b_attempt_id))
    st.markdown("**Question**")
    st.code(row.question, language=None, wrap_lines=True)
    st.text(f"Gold answer: {row.gold_answer}")
    ui.diff_columns(a, b, f"A: run #{a['run_id']} · iteration {a['iteration']} · {'right' if a['correct'] else 'wrong'}",
                    f"B: run #{b['run_id']} · iteration {b['iteration']} · {'right' if b['correct'] else 'wrong'}")


def main() -> None:
    st.title("Compare runs")
    st.caption("Two evaluations paired on the eval questions both answered: two runs (e.g. with and without "
               "rationalization, same seed), or two iterations of one run.")
    store = ui.get_store()
    evaluated = store.evaluated_iterations()
    if evaluated.empty:
        st.info("No evaluated run yet: a run evaluates its few-shot baseline (iteration 0) first. Start one on the Runs page.")
        return
    labels = store.run_labels()
    (a_run, a_it), (b_run, b_it) = _defaults(store, evaluated)
    c = st.columns(2)
    a = _pick_side(c[0], "A", evaluated, labels, a_run, a_it)
    b = _pick_side(c[1], "B", evaluated, labels, b_run, b_it)
    result = compare_runs(store, a, b)  # a ComparisonError (no shared questions) shows as one message
    summary(result, labels)
    st.divider()
    discordant(store, result)


ui.require_app("pages/compare.py")
with ui.guard():
    main()
