"""Question trajectories: each question's path across a run's iterations.

How many questions the loop taught the model (learned), which it lost again (forgotten), the
changes between consecutive iterations, and a question × iteration grid; choosing a question
opens its rationales across iterations. Classes and counts are star_core.analysis.trajectories'.
"""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pages import _ui as ui
from star_core.analysis.present import LABELS, label
from star_core.analysis.trajectories import (OUTCOME_VALUE, TRANSITIONS, Outcome, Trajectory, class_counts, grid,
                                             transitions, with_classes)

SPLITS = {"eval": "Eval questions (held out)", "train": "Training questions"}
CLASS_COLORS = {"learned": "#2ca02c", "forgotten": "#d62728", "always right": "#1f77b4", "never right": "#7f7f7f",
                "unstable": "#ff7f0e"}
TRANSITION_COLORS = {"wrong→right": "#2ca02c", "right→wrong": "#d62728", "stayed right": "#aec7e8", "stayed wrong": "#c7c7c7"}
GRID_ROWS = 300  # questions drawn in the grid (the CSV has every filtered one)
CLASS_HELP = ("learned: wrong at first, right at the end, never dropping back · forgotten: right once, wrong at the "
              "end · unstable: right at the end after dropping back · always right · never right. A training question "
              "is right when a self-generated attempt solved it (solved with the hint only is 'h', not right).")


def counts_section(df, split: str) -> None:
    counts = class_counts(df[df.split == split])
    st.subheader("Questions per trajectory class")
    st.caption(CLASS_HELP)
    total = counts.groupby("trajectory", sort=False).questions.sum()
    m = st.columns(len(Trajectory))
    for col, t in zip(m, Trajectory):
        col.metric(t.value.capitalize(), int(total.get(t.value, 0)))
    shown = counts.assign(difficulty=counts.difficulty.astype(str).replace("<NA>", "–"))
    fig = px.bar(shown, x="difficulty", y="questions", color="trajectory", barmode="stack", labels=LABELS,
                 category_orders={"trajectory": [t.value for t in Trajectory]}, color_discrete_map=CLASS_COLORS,
                 title=f"{SPLITS[split]}: trajectory class per difficulty")
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")
    st.plotly_chart(fig, key="fig_trajectory_classes")
    ui.download_csv(counts, "trajectory_classes")


def transitions_section(df, split: str) -> None:
    st.subheader("Changes between consecutive iterations")
    tr = transitions(df[df.split == split])
    if tr.empty:
        st.caption("Only one iteration so far: nothing to compare yet.")
        return
    fig = px.bar(tr, x="step", y="questions", color="transition", barmode="group", labels=LABELS,
                 category_orders={"transition": list(TRANSITIONS)}, color_discrete_map=TRANSITION_COLORS,
                 hover_data={"from_iteration": True, "to_iteration": True},
                 title="Questions that went wrong→right and right→wrong, per pair of iterations")
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")
    fig.update_xaxes(title="iterations")
    st.plotly_chart(fig, key="fig_trajectory_transitions")
    ui.download_csv(tr, "trajectory_transitions")


def grid_section(df, split: str):
    st.subheader("Question × iteration")
    sub = df[df.split == split]
    c = st.columns([3, 2])
    classes = c[0].multiselect("Trajectory classes", [t.value for t in Trajectory], key="traj_classes", placeholder="all")
    diffs = sorted({int(d) for d in sub.difficulty.dropna()})
    chosen = c[1].multiselect("Difficulty", diffs, key="traj_difficulty", placeholder="all")
    if classes:
        sub = sub[sub.trajectory.isin(classes)]
    if chosen:
        sub = sub[sub.difficulty.isin(chosen)]
    if sub.empty:
        st.info("No question matches these filters.")
        return None
    cells = grid(sub)
    shown = sub.head(GRID_ROWS)
    wide = cells[cells.problem_id.isin(shown.problem_id)].pivot(index="problem_id", columns="iteration", values="value")
    wide = wide.reindex(shown.problem_id)
    kept = cells.pivot(index="problem_id", columns="iteration", values="kept").reindex(wide.index)
    value_name = {v: o.value for o, v in OUTCOME_VALUE.items()}
    text = [[("" if v != v else value_name[v] + (", kept" if k is True else "")) for v, k in zip(vr, kr)]
            for vr, kr in zip(wide.to_numpy(), kept.to_numpy())]
    questions = dict(zip(sub.problem_id, sub.question))
    ys = [f"{pid} · {questions[pid][:40]}" for pid in wide.index]
    fig = go.Figure(go.Heatmap(
        z=wide.to_numpy(dtype=float), x=[str(i) for i in wide.columns], y=ys, text=text, zmin=0, zmax=1,
        colorscale=[[0, "#d62728"], [0.5, "#f9a825"], [1, "#2ca02c"]], xgap=1, ygap=1,
        colorbar=dict(tickvals=[0, 0.5, 1], ticktext=[Outcome.WRONG.value, "only with the hint", Outcome.RIGHT.value]),
        hovertemplate="%{y}<br>iteration %{x}: %{text}<extra></extra>"))
    fig.update_layout(height=min(2000, 120 + 16 * len(ys)), margin=dict(l=10, r=10, t=40, b=10),
                      title=f"{len(sub):,} questions" + (f" (first {GRID_ROWS} drawn)" if len(sub) > GRID_ROWS else ""),
                      yaxis=dict(autorange="reversed", tickfont=dict(size=10)),
                      xaxis=dict(title="iteration", type="category"))
    st.plotly_chart(fig, key="fig_trajectory_grid")
    ui.download_csv(cells, "trajectory_grid")
    return sub


def question_section(store, run_id: int, sub) -> None:
    st.subheader("One question's rationales")
    table = sub[["problem_id", "trajectory", "path", "difficulty", "question", "gold_answer", "first_right"]]
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="traj_table", height=min(38 + 35 * len(table), 320),
                         column_config=ui.column_config(table.columns, question=st.column_config.TextColumn(label("question"), width="large"),
                                                        path=st.column_config.TextColumn(label("path"), help="✓ right · ✗ wrong · h only with the hint, per iteration")))
    ids = list(sub.problem_id)
    picked = event.selection.rows[0] if event is not None and event.selection.rows else None
    if picked is not None and picked < len(ids) and st.session_state.get("traj_last_pick") != ids[picked]:
        st.session_state["traj_last_pick"] = ids[picked]
        st.session_state["traj_question"] = ids[picked]
    if st.session_state.get("traj_question") not in ids:
        st.session_state["traj_question"] = ids[0]
    paths = dict(zip(sub.problem_id, sub.path))
    kinds = dict(zip(sub.problem_id, sub.trajectory))
    questions = dict(zip(sub.problem_id, sub.question))
    pid = st.selectbox("Open a question (or select a row above)", ids, key="traj_question",
                       format_func=lambda p: f"{p} · {kinds[p]} · {paths[p]} · {questions[p][:60]}")
    last = int(sub.set_index("problem_id").iterations[pid][-1])
    ui.side_by_side(store, run_id, pid, last, 0, key=f"traj_{pid}_")


def main() -> None:
    st.title("Question trajectories")
    store = ui.get_store()
    labels = store.run_labels()
    evaluated = store.evaluated_iterations()
    runs = [r for r in dict.fromkeys(int(x) for x in evaluated.run_id) if r in labels]
    if not runs:
        st.info("No evaluated run yet: start one on the Runs page.")
        return
    wanted = ui.query_run()
    if "traj_run" not in st.session_state or st.session_state["traj_run"] not in runs:
        st.session_state["traj_run"] = wanted if wanted in runs else runs[-1]
    c = st.columns([3, 2])
    run_id = c[0].selectbox("Run", runs, key="traj_run", format_func=labels.get)
    split = c[1].radio("Questions", list(SPLITS), key="traj_split", format_func=SPLITS.get, horizontal=True)
    df = with_classes(store.question_paths(run_id, split))
    if df.empty and split == "eval":  # an imported run of training rollouts only (a TRL GRPO run)
        train = with_classes(store.question_paths(run_id, "train"))
        if not train.empty:
            st.caption("This run has no eval questions: its training questions are shown.")
            df, split = train, "train"
    if df.empty:
        st.info("No attempts at these questions yet." if split == "eval" else
                "No training iteration yet: training questions are attempted from iteration 1 on.")
        return
    counts_section(df, split)
    transitions_section(df, split)
    sub = grid_section(df, split)
    if sub is not None:
        question_section(store, run_id, sub)
    st.caption("Browse rationales can filter by trajectory class too.")


ui.require_app("pages/trajectories.py")
with ui.guard():
    main()
