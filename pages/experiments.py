"""Experiments: the paper's comparison (star experiment paper) as its table and its figure.

Each arm is an ordinary run; this page puts them side by side: eval accuracy overall and per
difficulty, iterations, kept rationales, training tokens and wall time per arm; STaR paired with
each other arm on the same questions (difference, 95% interval, p); and eval
accuracy per difficulty against iteration, one panel per arm, with STaR with and without
rationalization overlaid. Every table's data downloads as CSV.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from pages import _ui as ui
from star_core.runtime import jobs
from star_core.core.errors import StarError
from star_core.analysis.stats import CI_METHOD, TEST_METHOD
from star_core.engine.experiments import ARM_LABELS, Arm, arm_order, experiment_table, figure_data, star_against_arms
from star_core.analysis.present import duration
from star_core.core.states import ExperimentKind

PERCENT = st.column_config.NumberColumn(format="percent")


def _table(table) -> None:
    config = {c: PERCENT for c in table.columns if c in ("overall", "best") or c.startswith("difficulty ")}
    config["wall s"] = st.column_config.NumberColumn("wall time (s)", format="%.0f")
    config["run"] = st.column_config.NumberColumn("run", format="%d", width="small")
    st.dataframe(table, hide_index=True, width="stretch", column_config=config)


def _paired(store, summary) -> None:
    pairs = star_against_arms(store, summary)
    if pairs.empty:
        st.caption("STaR is paired with the other arms once it and one of them have been evaluated.")
        return
    st.caption(ui.md_escape(
        "Each arm against STaR on the eval questions both answered, at each one's last evaluated iteration: "
        f"STaR - arm with its 95% interval ({CI_METHOD}) and p ({TEST_METHOD}). An interval that spans 0 "
        "is no evidence of a difference."))
    config = {c: PERCENT for c in ("arm accuracy", "STaR accuracy")}
    config.update({c: st.column_config.NumberColumn(format="%+.1f pt") for c in ("STaR - arm", "ci low", "ci high")})
    config["p"] = st.column_config.NumberColumn(format="%.3g")
    config["run"] = st.column_config.NumberColumn("run", format="%d", width="small")
    # Rounded here, as `star experiment` rounds them, so that the page and the terminal print the same tenth.
    points = pairs.assign(**{c: (pairs[c] * 100).round(1) for c in ("STaR - arm", "ci low", "ci high")})
    st.dataframe(points, hide_index=True, width="stretch", column_config=config)
    star_run = int(summary[summary.arm == Arm.STAR.value].run_id.iloc[0])
    cols = st.columns(min(3, len(pairs)))
    for i, r in enumerate(pairs.itertuples()):
        cols[i % len(cols)].page_link("pages/compare.py", label=f"{r.arm} vs STaR",
                                      icon=":material/compare_arrows:", query_params={"a": r.run, "b": star_run})
    ui.download_csv(pairs, "experiment_star_paired")


def _figures(accuracy) -> None:
    data = figure_data(accuracy)
    if data.empty:
        st.caption("No evaluation yet: each arm's iteration 0 is evaluated first.")
        return
    order = arm_order(data)
    shown = data.assign(digits=data.difficulty.map(str))
    digits = [str(d) for d in sorted(data.difficulty.unique())]
    fig = px.line(shown, x="iteration", y="accuracy", color="digits", facet_col="arm", markers=True,
                  category_orders={"arm": order, "digits": digits}, hover_data={"n": True, "correct": True},
                  labels={"digits": "difficulty", "accuracy": "eval accuracy"},
                  title="Eval accuracy per difficulty against iteration, one panel per arm")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    _layout(fig, data.iteration)
    st.plotly_chart(ui.safe_figure(fig), key="fig_experiment_arms")
    overlay = shown[shown.rationalization.notna()]
    if not overlay.empty:
        fig = px.line(overlay, x="iteration", y="accuracy", color="digits", line_dash="rationalization", markers=True,
                      category_orders={"digits": digits}, hover_data={"n": True, "correct": True},
                      labels={"digits": "difficulty", "accuracy": "eval accuracy", "rationalization": ""},
                      title="STaR with and without rationalization")
        _layout(fig, overlay.iteration)
        st.plotly_chart(ui.safe_figure(fig), key="fig_experiment_rationalization")
    ui.download_csv(data, "experiment_accuracy")


def _layout(fig, iterations) -> None:
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    ui.iteration_axis(fig, iterations)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.25))


def _controls(store, experiment_id: int, summary) -> None:
    if jobs.experiment_worker_alive(store, experiment_id):
        st.info("Its worker is running the arms in order; this page shows what is stored so far.")
        return
    if (summary.status == "done").all() and len(summary) == len(ARM_LABELS):
        return
    st.warning(ui.md_escape("Some arms are not done and no worker is running them."))
    if st.button("Resume the experiment", key=f"exp_resume_{experiment_id}", icon=":material/play_arrow:"):
        try:
            jobs.launch_experiment(store, experiment_id)
        except StarError as exc:
            st.error(ui.md_escape(str(exc)))
        else:
            st.toast(f"Experiment {experiment_id} resumed")
            st.rerun()


def main() -> None:
    st.title("Experiments")
    store = ui.get_store()
    listing = store.list_experiments(kind=ExperimentKind.PAPER)  # exemplar comparisons: the Exemplars page
    if listing.empty:
        st.info("No experiments yet. Start the paper's comparison on the Runs page, or from a terminal: "
                "`star experiment paper --db " + str(store.path) + "`.")
        return
    labels = {int(r.id): f"#{r.id} {r.name} · {r.done}/{r.runs} arms done · {r.created_at:%Y-%m-%d %H:%M}"
              for r in listing.itertuples()}
    experiment_id = st.selectbox("Experiment", sorted(labels, reverse=True), format_func=labels.get, key="exp_picker")
    experiment = store.get_experiment(experiment_id)
    summary = store.experiment_summary(experiment_id)
    accuracy = store.experiment_accuracy(experiment_id)
    given = experiment.config.get("given", {})
    preset = experiment.config.get("preset")
    st.caption(ui.md_escape(
        f"{len(summary)} arms on the same problems and eval questions; preset {preset or 'none'}; settings given: "
        + (", ".join(f"{k}={v}" for k, v in sorted(given.items())) or "none")
        + ". Each arm that trains gets the same fine-tuning steps per iteration."))
    _controls(store, experiment_id, summary)

    st.subheader("The paper's table")
    table = experiment_table(summary, accuracy)
    st.caption("Eval accuracy at each arm's last evaluated iteration (and its best); kept: the rationales (or, for "
               "direct fine-tuning, gold answers) of the last trained iteration; train steps and tokens: all "
               "iterations; wall time: the sum of the arm's iterations. Total: "
               + duration(float(table["wall s"].fillna(0).sum())) + ".")
    _table(table)
    ui.download_csv(table, "experiment_table")
    # Three to a row: five columns cut the longer arm names off ("few-shot, answer only (").
    cols = st.columns(min(3, max(1, len(summary))))
    for i, r in enumerate(summary.itertuples()):
        cols[i % len(cols)].page_link("pages/runs.py", label=f"{ARM_LABELS.get(r.arm, r.arm)} (run {r.run_id})",
                                      icon=":material/play_circle:", query_params={"run": int(r.run_id)})

    st.subheader("STaR against each arm, paired")
    _paired(store, summary)

    st.subheader("Eval accuracy per difficulty")
    _figures(accuracy)

    log = jobs.log_tail(store, lines=30, experiment_id=experiment_id)
    if log:
        with st.expander("Worker log"):
            st.code(log, language=None)


ui.require_app("pages/experiments.py")
with ui.guard():
    main()
