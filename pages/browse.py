"""Browse rationales: every attempt, filtered, searched, sorted and paged in the database;
one attempt in full; one question's rationales side by side.

Model text is shown with st.code / st.dataframe (never as markdown or HTML), except in
the highlighted differences, which star_core.analysis.present escapes before adding any markup.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from pages import _ui as ui
from star_core.engine.filtering import rule_for, why_kept
from star_core.analysis.present import choices_of, flag, label
from star_core.store import AttemptFilter
from star_core.store.browse import KINDS, SORTABLE
from star_core.tasks import verifies_steps
from star_core.analysis.trajectories import Trajectory

YES_NO = {"any": None, "yes": True, "no": False}
VERIFIED = {"any": None, "yes": True, "no": False, "not checked": "unchecked"}
PAGE_SIZES = (25, 50, 100, 200)


def filters(store):
    labels = store.run_labels()
    wanted = ui.query_run()
    if "f_runs" not in st.session_state:
        st.session_state["f_runs"] = [wanted] if wanted in labels else []
    c = st.columns([3, 2, 2, 2])
    runs = c[0].multiselect("Runs", list(labels), format_func=labels.get, key="f_runs", placeholder="all runs")
    options = store.browse_options(runs)
    iterations = c[1].multiselect("Iterations", options["iterations"], key="f_iterations", placeholder="all")
    kinds = c[2].multiselect("Kind", KINDS, key="f_kinds", placeholder="all",
                             help="generated = self-generated on a training question; rationalized = written with "
                                  "the answer as a hint; eval = held-out evaluation")
    difficulties = c[3].multiselect("Difficulty", options["difficulties"], key="f_difficulty", placeholder="all")
    c = st.columns([1, 1, 1, 1, 3])
    correct = c[0].selectbox("Correct", list(YES_NO), key="f_correct")
    verified = c[1].selectbox("Steps verified", list(VERIFIED), key="f_verified",
                              help="Whether every step of the rationale holds ('not checked': the task cannot check steps)")
    used = c[2].selectbox("Used for training", list(YES_NO), key="f_used")
    leak = c[3].selectbox("Hint leak", list(YES_NO), key="f_leak",
                          help="A rationalized rationale that restates the hinted answer instead of reasoning")
    search = c[4].text_input("Search question and rationale", key="f_search", placeholder="text, case-insensitive")
    classes = st.multiselect(
        "Trajectory", [t.value for t in Trajectory], key="f_trajectory", placeholder="any",
        help="The question's path across the run's iterations (see the Trajectories page): learned = wrong at first, "
             "right at the end without dropping; forgotten = right once, wrong at the end; unstable = right at the end "
             "after a drop. Training questions count as right when self-solved (not with the hint).")
    # A trajectory is a run's: the questions of the chosen runs (all runs when none is chosen) in those classes.
    questions = ui.trajectory_questions(store, runs or list(labels), classes) if classes else None
    flt = AttemptFilter(run_ids=runs, iterations=iterations, kinds=kinds, difficulties=difficulties,
                        correct=YES_NO[correct], verified=VERIFIED[verified], used_for_training=YES_NO[used],
                        hint_leak=YES_NO[leak], search=search, questions=questions)
    c = st.columns([2, 1.3, 1, 1, 3])
    sort = c[0].selectbox("Sort by", list(SORTABLE), key="f_sort", format_func=label)
    descending = c[1].toggle("Descending", value=True, key="f_desc")
    size = c[2].selectbox("Rows per page", PAGE_SIZES, index=1, key="f_size")
    # A new filter or sort starts again at page 1.
    signature = repr((flt, sort, descending, size))
    if st.session_state.get("f_signature") != signature:
        st.session_state["f_signature"] = signature
        st.session_state["f_page"] = 1
    page = c[3].number_input("Page", min_value=1, step=1, key="f_page")
    return flt, sort, descending, int(page), int(size), c[4]


def table(store, flt, sort, descending, page, size, info_slot) -> int | None:
    result = store.browse_attempts(flt, sort=sort, descending=descending, limit=size, offset=(page - 1) * size)
    pages = max(1, math.ceil(result.total / size))
    info_slot.write("")
    info_slot.markdown(f"**{result.total:,}** attempts match · page {page:,} of {pages:,}")
    if result.rows.empty:
        if result.total == 0 and flt == AttemptFilter():
            st.info("No attempts in this database yet: start a run on the Runs page.")
        else:
            st.info("No attempt matches these filters." if result.total == 0 else f"Past the last page ({pages:,}).")
        return None
    rows = result.rows
    # Whether it was right, and the answers, come first: visible without scrolling sideways.
    order = ["attempt_id", "correct", "predicted_answer", "gold_answer", "question", "rationale", "kind", "iteration",
             "run_id", "difficulty", "verified", "used_for_training", "hint_leak"]
    event = st.dataframe(
        rows, hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 420),
        on_select="rerun", selection_mode="single-row", key="browse_table",
        column_order=[c for c in order if c in rows.columns],
        column_config=ui.column_config(
            rows.columns,
            attempt_id=st.column_config.NumberColumn("Attempt", width="small"),
            correct=st.column_config.CheckboxColumn(label("correct"), width="small"),
            # Short words keep these columns narrow, so they stay in view beside the question.
            predicted_answer=st.column_config.TextColumn("Answer", width="small", help=label("predicted_answer")),
            gold_answer=st.column_config.TextColumn("Gold", width="small", help=label("gold_answer")),
            run_id=st.column_config.NumberColumn(label("run_id"), width="small"),
            iteration=st.column_config.NumberColumn(label("iteration"), width="small"),
            difficulty=st.column_config.NumberColumn(label("difficulty"), width="small"),
            question=st.column_config.TextColumn(label("question"), width="medium"),
            rationale=st.column_config.TextColumn(label("rationale"), width="large"),
            used_for_training=st.column_config.CheckboxColumn(label("used_for_training")),
        ),
    )
    ids = [int(i) for i in rows.attempt_id]
    selected_rows = event.selection.rows if event is not None else []
    picked = ids[selected_rows[0]] if selected_rows and selected_rows[0] < len(ids) else None
    # The table's selection drives the picker below; the picker also works on its own (keyboard).
    if picked is not None and st.session_state.get("browse_last_pick") != picked:
        st.session_state["browse_last_pick"] = picked
        st.session_state["browse_attempt"] = picked
    if st.session_state.get("browse_attempt") not in ids:
        st.session_state["browse_attempt"] = ids[0]
    questions = dict(zip(ids, rows.question))
    kinds = dict(zip(ids, rows.kind))
    iters = dict(zip(ids, rows.iteration))
    return st.selectbox("Open attempt (or select a row above)", ids, key="browse_attempt",
                        format_func=lambda i: f"#{i} · iteration {iters[i]} · {kinds[i]} · {questions[i][:70]}")


def detail(store, attempt_id: int, key: str = "") -> None:
    """One attempt in full; `key` prefixes its widgets' keys (the linked attempt is shown beside the picked one)."""
    a = store.attempt_detail(attempt_id)
    if a is None:
        st.warning(f"Attempt {attempt_id} is no longer in the database.")
        return
    st.subheader(f"Attempt #{attempt_id}")
    st.caption(ui.md_escape(
        f"run #{a['run_id']} {a['run_name'] or ''} · {a['task']} · iteration {a['iteration']} · {a['kind']}"
        f" · problem {a['problem_id']} (difficulty {a['difficulty'] if a['difficulty'] is not None else '–'})"))
    m = st.columns(5)
    # Free model text for exact/regex answers, and dataset text: shown as text, not Markdown.
    m[0].metric("Extracted answer", ui.md_escape(a["predicted_answer"], one_line=True) if a["predicted_answer"] is not None else "none")
    m[1].metric("Gold answer", ui.md_escape(a["gold_answer"], one_line=True))
    m[2].metric("Correct", flag(a["correct"]))
    m[3].metric("Steps verified", flag(a["verified"]))
    m[4].metric("Used for training", flag(a["used_for_training"]))
    run = store.get_run(int(a["run_id"]))
    verdict = why_kept(a, rule_for(run.config, verifies_steps(run.config.task)))
    (st.success if a["used_for_training"] else st.info)(ui.md_escape(verdict))  # may quote the step check
    if a.get("verify_reason"):
        st.caption("Step check:")
        st.code(a["verify_reason"], language=None, wrap_lines=True)
    if a.get("hint_leak"):
        st.warning("Hint leak: this rationale restates the hinted answer instead of reasoning.")
    ui.add_to_exemplar_set(store, attempt_id, run.task_key, key=key + "b")
    left, right = st.columns(2)
    with left:
        st.markdown("**Question**")
        st.code(a["question"], language=None, wrap_lines=True)
        choices = choices_of(a.get("choices"))
        if choices:
            st.markdown("**Choices**")
            st.dataframe(pd.DataFrame(choices, columns=["label", "choice"]), hide_index=True)
        st.markdown("**Hint**")
        if a.get("hint"):
            st.code(a["hint"], language=None, wrap_lines=True)
        else:
            st.caption("none (only rationalized attempts are shown the answer)")
    with right:
        st.markdown("**Rationale**")
        ui.rationale_block(a["rationale"], a.get("given_text"), a["kind"])
        with st.expander("Raw completion and the prompt it answered"):
            st.caption("Completion, as the model wrote it")
            st.code(a["completion"], language=None, wrap_lines=True)
            st.caption("Prompt after the few-shot exemplars (hint included)")
            st.code(a["question_prompt"], language=None, wrap_lines=True)
            st.caption(f"{a.get('prompt_tokens') or '–'} prompt tokens · {a.get('new_tokens') or '–'} new tokens · "
                       f"{(a.get('seconds') or 0):.2f} s")
    ui.side_by_side(store, int(a["run_id"]), a["problem_id"], int(a["iteration"]), attempt_id, key=key)


def linked(store) -> None:
    """The attempt a link names (?attempt=ID, e.g. from the Exemplars page's comparison), above the table."""
    try:
        attempt_id = int(st.query_params.get("attempt", ""))
    except ValueError:
        return
    c = st.columns([4, 1])
    c[0].caption(f"Opened from a link: attempt #{attempt_id}. The filters below browse every attempt.")
    if c[1].button("Close", key="browse_close_link", icon=":material/close:"):
        st.query_params.pop("attempt", None)
        st.rerun()
    detail(store, attempt_id, key="link_")
    st.divider()


def main() -> None:
    st.title("Browse rationales")
    store = ui.get_store()
    linked(store)
    flt, sort, descending, page, size, info_slot = filters(store)
    attempt_id = table(store, flt, sort, descending, page, size, info_slot)
    if attempt_id is not None:
        st.divider()
        detail(store, attempt_id)


ui.require_app("pages/browse.py")
with ui.guard():
    main()
