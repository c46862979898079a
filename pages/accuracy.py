"""Accuracy by iteration: eval accuracy (overall and per difficulty), coverage of the
training questions (self-generated vs rationalized), and fine-tuning loss, with several
runs overlaid. Each figure's data downloads as CSV.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from pages import _ui as ui
from star_core.present import GROUP_BY, accuracy_figures_data


def _download(df, name: str) -> None:
    st.download_button("Download CSV", df.to_csv(index=False).encode(), file_name=f"{name}.csv", mime="text/csv",
                       key=f"csv_{name}", icon=":material/download:")


def _layout(fig, y_percent: bool = False, baseline: bool = True):
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="", hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=-0.35))
    fig.update_xaxes(dtick=1, title="iteration (0 = few-shot baseline)" if baseline else "iteration")
    if y_percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return fig


def main() -> None:
    st.title("Accuracy by iteration")
    store = ui.get_store()
    labels = store.run_labels()
    if not labels:
        st.info("No runs yet: start one on the Runs page.")
        return
    wanted = ui.query_run()
    if "acc_runs" not in st.session_state:
        st.session_state["acc_runs"] = [wanted] if wanted in labels else list(labels)[-3:]
    c = st.columns([4, 2])
    run_ids = c[0].multiselect("Runs (overlaid)", list(labels), format_func=labels.get, key="acc_runs",
                               help="Pick several runs to compare them, e.g. with and without rationalization.")
    group = c[1].radio("Colour by", list(GROUP_BY), key="acc_group", horizontal=True,
                       help="exemplar set: runs prompted with the same set (name@version) share a colour, "
                            "to see whether curated exemplars helped")
    if not run_ids:
        st.info("Pick one or more runs.")
        return
    data = accuracy_figures_data(store, run_ids)
    color = GROUP_BY[group]
    # Coloured by exemplar set, each run is still its own line; the hover names the run.
    lines = dict(color=color, line_group="run") if color != "run" else dict(color="run")

    st.subheader("Eval accuracy")
    acc = data["accuracy"]
    if acc.empty:
        st.caption("No evaluation yet: iteration 0 (the few-shot baseline) is evaluated first.")
    else:
        fig = px.line(acc, x="iteration", y="accuracy", markers=True, **lines,
                      hover_data={"run": True, "exemplar_set": True, "n": True, "correct": True},
                      title="Held-out accuracy, overall" + (" by exemplar set" if color != "run" else ""))
        fig.update_layout(height=380)
        st.plotly_chart(_layout(fig, y_percent=True), key="fig_accuracy")
        _download(acc, "accuracy")

    by_diff = data["accuracy_by_difficulty"]
    if not by_diff.empty:
        order = [f"difficulty {d}" for d in sorted(by_diff.difficulty.unique())]
        by_diff = by_diff.assign(difficulty=by_diff.difficulty.map(lambda d: f"difficulty {d}"))
        fig = px.line(by_diff, x="iteration", y="accuracy", facet_col="difficulty", markers=True, **lines,
                      category_orders={"difficulty": order},
                      hover_data={"run": True, "exemplar_set": True, "n": True, "correct": True},
                      title="Held-out accuracy per difficulty")
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
        fig.update_layout(height=330)
        st.plotly_chart(_layout(fig, y_percent=True), key="fig_accuracy_by_difficulty")
        _download(data["accuracy_by_difficulty"], "accuracy_by_difficulty")

    left, right = st.columns(2)
    with left:
        st.subheader("Coverage of the training questions")
        cov = data["coverage"]
        if cov.empty:
            st.caption("No training iteration yet.")
        else:
            panel = (cov.run_id.map(lambda r: f"run #{r}") if color == "run"  # short facet titles
                     else "run #" + cov.run_id.astype(str) + " · " + cov.exemplar_set)
            cov = cov.assign(panel=panel)
            fig = px.bar(cov, x="iteration", y="fraction", color="source", facet_col="panel", barmode="stack",
                         hover_data={"questions": True, "train_questions": True},
                         color_discrete_map={"self-generated": "#2e7d32", "rationalized": "#f9a825"},
                         title="Questions solved and kept: self-generated vs rationalized")
            fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
            st.plotly_chart(_layout(fig, y_percent=True, baseline=False), key="fig_coverage")
            _download(data["coverage"], "coverage")
    with right:
        st.subheader("Fine-tuning loss")
        loss = data["train_loss"].dropna(subset=["train_loss"])
        if loss.empty:
            st.caption("No fine-tuning yet (or nothing was kept to train on).")
        else:
            fig = px.line(loss, x="iteration", y="train_loss", markers=True, **lines,
                          hover_data={"run": True, "exemplar_set": True, "kept": True, "steps": True},
                          title="Final training loss per iteration")
            st.plotly_chart(_layout(fig, baseline=False), key="fig_train_loss")
            _download(data["train_loss"], "train_loss")


ui.require_app("pages/accuracy.py")
with ui.guard():
    main()
