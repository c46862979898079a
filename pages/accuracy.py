"""Accuracy by iteration: eval accuracy (overall and per difficulty) with 95% Wilson intervals,
coverage of the training questions (self-generated vs rationalized), and the fine-tuning loss
at every step, with several runs overlaid. Each figure's data downloads as CSV.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from pages import _ui as ui
from star_core.analysis.present import (GROUP_BY, LABELS, accuracy_figures_data, colors_for, kept_steps_table,
                                        runs_with_data)

INTERVAL_NOTE = "Bars: 95% Wilson interval of each point's accuracy; hover a point for n (questions) and the interval."


def _layout(fig, iterations=None, y_percent: bool = False, baseline: bool = True):
    """The page's common layout; with `iterations`, the x axis is the iteration, one tick each."""
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="", hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.25))
    if iterations is not None:
        ui.iteration_axis(fig, iterations, "iteration (0 = before STaR: few-shot, or the seed alone)" if baseline else "iteration")
    if y_percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return fig


def dodge(run_ids, width: float = 0.16):
    """A small x offset per run (centred on 0, `width` in all) for overlaid points at the same iteration."""
    order = {r: i for i, r in enumerate(sorted(set(run_ids)))}
    n = len(order)
    return run_ids.map(lambda r: 0.0 if n < 2 else width * (order[r] / (n - 1) - 0.5))


def _n_caption(acc) -> str:
    ns = sorted({int(n) for n in acc.n})
    counts = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]} to {ns[-1]}"
    return f"{INTERVAL_NOTE} n = {counts} eval questions per point."


def _accuracy_chart(df, lines: dict, title: str, key: str, height: int, facet: dict | None = None) -> None:
    # Runs are drawn a little apart at each iteration so their error bars do not hide each other.
    df = df.assign(x=df.iteration + dodge(df.run_id))
    fig = px.line(df, x="x", y="accuracy", markers=True, error_y="err_plus", error_y_minus="err_minus",
                  custom_data=["run", "n", "correct", "ci_low", "ci_high", "exemplar_set", "iteration"], labels=LABELS,
                  title=title, **lines, **(facet or {}))
    fig.update_traces(hovertemplate="%{customdata[0]}<br>iteration %{customdata[6]}: %{y:.1%} (%{customdata[2]} of %{customdata[1]})"
                                    "<br>95% CI %{customdata[3]:.1%} to %{customdata[4]:.1%}"
                                    "<br>exemplar set %{customdata[5]}<extra></extra>")
    fig.update_layout(height=height)
    if facet:
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    st.plotly_chart(ui.safe_figure(_layout(fig, df.iteration, y_percent=True)), key=key)


def _kept_steps(store, run_ids: list[int], labels: dict) -> None:
    """How many kept rationales had their steps, per iteration: with the answer filter a bare sum can be kept."""
    table = kept_steps_table(store.kept_with_steps(run_ids), labels)
    if table.empty:
        return
    st.subheader("Kept rationales with their steps")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"share with steps": st.column_config.NumberColumn(format="percent")})
    st.caption("With steps: the step check verified the rationale and it is not a bare sum ('no steps'), as judged "
               "when the run was made (runs made before the check required place sums count a bare sum as verified). "
               "Written by the model: the share of the kept rationales' steps the model wrote itself, not given in a "
               "partial hint. Seed rows are never counted here.")


def _imported_steps(store, run_ids: list[int], labels: dict) -> None:
    """Runs imported from another framework: the share of right completions at every step (all samples), with the
    reward that framework gave as a second series."""
    steps = store.imported_steps(run_ids)
    if steps.empty:
        return
    st.subheader("Imported runs: right completions and reward by step")
    shown = steps.assign(run=steps.run_id.map(lambda r: labels.get(r, f"#{r}")))
    long = shown.melt(id_vars=["run", "iteration", "kind", "completions"], value_vars=["accuracy", "reward"],
                      var_name="series", value_name="value").dropna(subset=["value"])
    long["series"] = long.series.map({"accuracy": "share right", "reward": "mean reward"})
    fig = px.line(long, x="iteration", y="value", color="run", line_dash="series", facet_col="kind", markers=True,
                  hover_data={"completions": True}, title="Every completion of each step (training rollouts: generated)")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    st.plotly_chart(ui.safe_figure(_layout(fig, long.iteration, baseline=False)), key="fig_imported_steps")
    st.caption("Share right: as the import judged them (docs/import.md); mean reward: the other framework's own.")
    ui.download_csv(steps, "imported_steps")


def main() -> None:
    st.title("Accuracy by iteration")
    store = ui.get_store()
    labels = store.run_labels()
    if not labels:
        st.info("No runs yet: start one on the Runs page.")
        return
    wanted = ui.query_run()
    if "acc_runs" not in st.session_state:
        # Only runs with an evaluation are preselected: a failed run with no data would only add an empty legend entry.
        with_data = [r for r in runs_with_data(store) if r in labels]
        st.session_state["acc_runs"] = [wanted] if wanted in labels else with_data[-3:]
    c = st.columns([4, 2])
    run_ids = c[0].multiselect("Runs (overlaid)", list(labels), format_func=labels.get, key="acc_runs",
                               help="Pick several runs to compare them, e.g. with and without rationalization. "
                                    "For a paired test of the difference, use the Compare runs page.")
    group = c[1].radio("Colour by", list(GROUP_BY), key="acc_group", horizontal=True,
                       help="exemplar set: runs prompted with the same set (name@version) share a colour, "
                            "to see whether curated exemplars helped")
    if not run_ids:
        st.info("Pick one or more runs.")
        return
    data = accuracy_figures_data(store, run_ids)
    color = GROUP_BY[group]
    # The legend names what differs between the chosen runs; each run (or set) gets its own colour.
    names = [n for frame in ("accuracy", "coverage", "train_loss", "train_steps")
             for n in data[frame].sort_values("run_id", kind="stable")[color]]
    palette = colors_for(names)
    # Coloured by exemplar set, each run is still its own line; the hover names the run.
    lines = dict(color=color, color_discrete_map=palette, **({"line_group": "run"} if color != "run" else {}))

    st.subheader("Eval accuracy")
    acc = data["accuracy"]
    if acc.empty:
        st.caption("No evaluation yet: iteration 0 (the few-shot baseline) is evaluated first.")
    else:
        _accuracy_chart(acc, lines, "Held-out accuracy, overall" + (" by exemplar set" if color != "run" else ""),
                        "fig_accuracy", 400)
        st.caption(_n_caption(acc))
        ui.download_csv(acc, "accuracy")

    by_diff = data["accuracy_by_difficulty"]
    if not by_diff.empty:
        order = [f"difficulty {d}" for d in sorted(by_diff.difficulty.unique())]
        shown = by_diff.assign(difficulty=by_diff.difficulty.map(lambda d: f"difficulty {d}"))
        _accuracy_chart(shown, lines, "Held-out accuracy per difficulty", "fig_accuracy_by_difficulty", 340,
                        facet=dict(facet_col="difficulty", category_orders={"difficulty": order}))
        st.caption(_n_caption(by_diff))
        ui.download_csv(by_diff, "accuracy_by_difficulty")

    st.subheader("Coverage of the training questions")
    cov = data["coverage"]
    if cov.empty:
        st.caption("No training iteration yet.")
    else:
        panel = (cov.run if color == "run" else cov.run + " · " + cov.exemplar_set)
        fig = px.bar(cov.assign(panel=panel), x="iteration", y="fraction", color="source", facet_col="panel",
                     barmode="stack", hover_data={"questions": True, "train_questions": True}, labels=LABELS,
                     color_discrete_map={"self-generated": "#2e7d32", "rationalized": "#f9a825"},
                     title="Questions solved and kept: self-generated vs rationalized")
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
        st.plotly_chart(ui.safe_figure(_layout(fig, cov.iteration, y_percent=True, baseline=False)), key="fig_coverage")
        ui.download_csv(data["coverage"], "coverage")

    _kept_steps(store, run_ids, labels)
    _imported_steps(store, run_ids, labels)

    st.subheader("Fine-tuning loss")
    steps = data["train_steps"].dropna(subset=["loss"])
    loss = data["train_loss"].dropna(subset=["train_loss"])
    if not steps.empty:
        order = sorted(steps.iteration.unique())
        fig = px.line(steps.assign(panel=steps.iteration.map(lambda i: f"iteration {i}")), x="step", y="loss",
                      facet_col="panel", category_orders={"panel": [f"iteration {i}" for i in order]},
                      hover_data={"run": True, "iteration": True}, labels=LABELS, **lines,
                      title="Training loss at every step (each iteration fine-tunes from the base model)")
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
        fig.update_layout(height=340)
        fig.update_xaxes(title="step")
        st.plotly_chart(ui.safe_figure(_layout(fig)), key="fig_train_loss")
        missing = sorted(set(loss.run_id) - set(steps.run_id))
        if missing:
            st.caption("Runs stored before per-step losses were recorded show no curve: "
                       + ", ".join(f"#{r}" for r in missing) + " (their final loss is in the CSV of the table below).")
        ui.download_csv(data["train_steps"], "train_steps")
    elif not loss.empty:
        fig = px.line(loss, x="iteration", y="train_loss", markers=True, labels=LABELS,
                      hover_data={"run": True, "exemplar_set": True, "kept": True, "steps": True}, **lines,
                      title="Final training loss per iteration (this run stored no per-step losses)")
        st.plotly_chart(ui.safe_figure(_layout(fig, loss.iteration, baseline=False)), key="fig_train_loss")
        ui.download_csv(data["train_loss"], "train_loss")
    else:
        st.caption("No fine-tuning yet (or nothing was kept to train on).")


ui.require_app("pages/accuracy.py")
with ui.guard():
    main()
