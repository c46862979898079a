"""Browse rationales: every attempt, filtered, searched, sorted and paged in the database;
one attempt in full; one question's rationales side by side.

Model text is shown with st.code / st.dataframe (never as markdown or HTML), except in
the highlighted differences, which star_core.present escapes before adding any markup.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from pages import _ui as ui
from star_core.present import choices_of, default_pair, diff_html, flag, similarity, why_kept
from star_core.store import AttemptFilter
from star_core.store.browse import KINDS, SORTABLE

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
    flt = AttemptFilter(run_ids=runs, iterations=iterations, kinds=kinds, difficulties=difficulties,
                        correct=YES_NO[correct], verified=VERIFIED[verified], used_for_training=YES_NO[used],
                        hint_leak=YES_NO[leak], search=search)
    c = st.columns([2, 1.3, 1, 1, 3])
    sort = c[0].selectbox("Sort by", list(SORTABLE), key="f_sort", format_func=lambda s: s.replace("_", " "))
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
    event = st.dataframe(
        rows, hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 420),
        on_select="rerun", selection_mode="single-row", key="browse_table",
        column_config={
            "attempt_id": st.column_config.NumberColumn("id", width="small"),
            "run_id": st.column_config.NumberColumn("run", width="small"),
            "iteration": st.column_config.NumberColumn("iter", width="small"),
            "difficulty": st.column_config.NumberColumn("diff", width="small"),
            "question": st.column_config.TextColumn(width="medium"),
            "rationale": st.column_config.TextColumn(width="large"),
            "predicted_answer": st.column_config.TextColumn("answer"),
            "gold_answer": st.column_config.TextColumn("gold"),
            "used_for_training": st.column_config.CheckboxColumn("trained on"),
        },
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


def detail(store, attempt_id: int) -> None:
    a = store.attempt_detail(attempt_id)
    if a is None:
        st.warning(f"Attempt {attempt_id} is no longer in the database.")
        return
    st.subheader(f"Attempt #{attempt_id}")
    st.caption(f"run #{a['run_id']} {a['run_name'] or ''} · {a['task']} · iteration {a['iteration']} · {a['kind']}"
               f" · problem {a['problem_id']} (difficulty {a['difficulty'] if a['difficulty'] is not None else '–'})")
    m = st.columns(5)
    m[0].metric("Extracted answer", a["predicted_answer"] if a["predicted_answer"] is not None else "none")
    m[1].metric("Gold answer", a["gold_answer"])
    m[2].metric("Correct", flag(a["correct"]))
    m[3].metric("Steps verified", flag(a["verified"]))
    m[4].metric("Used for training", flag(a["used_for_training"]))
    verdict = why_kept(a)
    (st.success if a["used_for_training"] else st.info)(verdict)
    if a.get("verify_reason"):
        st.caption("Step check:")
        st.code(a["verify_reason"], language=None, wrap_lines=True)
    if a.get("hint_leak"):
        st.warning("Hint leak: this rationale restates the hinted answer instead of reasoning.")
    ui.add_to_exemplar_set(store, attempt_id, a["task"], key="b")
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
        st.code(a["rationale"], language=None, wrap_lines=True)
        with st.expander("Raw completion and the prompt it answered"):
            st.caption("Completion, as the model wrote it")
            st.code(a["completion"], language=None, wrap_lines=True)
            st.caption("Prompt after the few-shot exemplars (hint included)")
            st.code(a["question_prompt"], language=None, wrap_lines=True)
            st.caption(f"{a.get('prompt_tokens') or '–'} prompt tokens · {a.get('new_tokens') or '–'} new tokens · "
                       f"{(a.get('seconds') or 0):.2f} s")
    side_by_side(store, int(a["run_id"]), a["problem_id"], int(a["iteration"]), attempt_id)


def side_by_side(store, run_id: int, problem_id: str, iteration: int, attempt_id: int) -> None:
    attempts = store.question_attempts(run_id, problem_id)
    st.subheader("Side by side: this question's rationales")
    across, compare = st.tabs(["Across iterations", "Compare two"])
    with across:
        shown = attempts[["iteration", "kind", "sample", "rationale", "predicted_answer", "correct", "verified",
                          "used_for_training", "hint_leak", "attempt_id"]]
        st.dataframe(shown, hide_index=True, width="stretch", key="across_table",
                     column_config={"rationale": st.column_config.TextColumn(width="large"),
                                    "used_for_training": st.column_config.CheckboxColumn("trained on")})
    with compare:
        if len(attempts) < 2:
            st.caption("Only one attempt at this question so far.")
            return
        label = {int(r.attempt_id): f"iteration {r.iteration} · {r.kind}" + (f" · sample {r.sample}" if r.sample else "")
                 + f" · {'correct' if r.correct else 'wrong'}" for r in attempts.itertuples()}
        ids = list(label)
        first, second = default_pair(attempts, iteration)
        key = f"cmp_{attempt_id}"  # the pair starts from the opened attempt's iteration
        c = st.columns(2)
        left_id = c[0].selectbox("Left", ids, index=ids.index(first), format_func=label.get, key=key + "_l")
        right_id = c[1].selectbox("Right", ids, index=ids.index(second) if second in ids else 0,
                                  format_func=label.get, key=key + "_r")
        by_id = attempts.set_index("attempt_id")
        left_text, right_text = by_id.rationale[left_id], by_id.rationale[right_id]
        left_html, right_html = diff_html(left_text, right_text)
        st.caption(f"Word-level differences ({similarity(left_text, right_text):.0%} alike): "
                   "struck out on the left = only there; highlighted on the right = only there.")
        c = st.columns(2)
        for col, attempt_id, body in ((c[0], left_id, left_html), (c[1], right_id, right_html)):
            with col:
                row = by_id.loc[attempt_id]
                st.markdown(f"**{label[attempt_id]}**")
                st.text(f"answer {row.predicted_answer} · verified {flag(row.verified)} · "
                        f"trained on {flag(row.used_for_training)}")
                st.html(body)  # model text escaped in diff_html
                if isinstance(row.hint, str) and row.hint:
                    st.caption("Hint shown to the model:")
                    st.code(row.hint, language=None, wrap_lines=True)


def main() -> None:
    st.title("Browse rationales")
    store = ui.get_store()
    flt, sort, descending, page, size, info_slot = filters(store)
    attempt_id = table(store, flt, sort, descending, page, size, info_slot)
    if attempt_id is not None:
        st.divider()
        detail(store, attempt_id)


ui.require_app("pages/browse.py")
with ui.guard():
    main()
