"""Audit: judge rationales one at a time with the keyboard, and see what the audits say.

Keys: 1 sound, 2 flawed, 3 wrong (each saves the label at once and moves on),
J next, K previous. A label is saved the moment it is given; the position, the
filters, the auditor's name and a draft note live in the page's URL, so a
reload or an app restart loses nothing. Model text is shown with st.code /
st.text, never as markdown or HTML. The page's state lives in _audit_state.py.
"""

from __future__ import annotations

import streamlit as st

from pages import _audit_state as s
from pages import _ui as ui
from pages._audit_stats import stats_view
from star_core.core.states import QUEUE_ORDERS, RATING_HELP, RATINGS, QueueMode

ORDER_HELP = {
    "random": "a random order, the same for the same seed",
    "oldest": "in the order the rationales were written",
    "disagreement": "right answers whose steps fail (and hint leaks) first: the likeliest lucky guesses",
}
MODES = {QueueMode.ALL: "every rationale", QueueMode.SECOND_OPINION: "second opinion", QueueMode.ADJUDICATE: "to adjudicate"}
MODE_HELP = {
    QueueMode.ALL: "the rationales the filters select",
    QueueMode.SECOND_OPINION: "rated by another auditor, not yet by you (their ratings stay hidden)",
    QueueMode.ADJUDICATE: "auditors disagree: your label settles it and is marked adjudicated",
}
RATING_KEYS = {"sound": "1", "flawed": "2", "wrong": "3"}
RATING_LABELS = {"sound": "Sound", "flawed": "Flawed", "wrong": "Wrong"}
RATING_ICONS = {"sound": ":material/check_circle:", "flawed": ":material/warning:", "wrong": ":material/cancel:"}
STATE, URL = st.session_state, st.query_params  # what _audit_state's functions read and write


def queue_filters(store):
    """The sidebar's filters, kept in the URL; the queue they select, or None while it needs the auditor's name."""
    labels, options = s.cached(STATE, "a_c_runs", lambda: (store.run_labels(), store.audit_filter_options()))
    with st.sidebar:
        st.subheader("Audit queue")
        runs = s.settle_run(STATE, labels, options)
        st.selectbox("Run", runs, key="a_run", format_func=lambda r: "all runs" if r is None else labels.get(r, f"#{r}"))
        iterations = s.settle_iteration(STATE, options)
        st.selectbox("Iteration", iterations, key="a_it", format_func=lambda i: "all" if i is None else str(i))
        st.radio("Queue", [m.value for m in QueueMode], key="a_mode", format_func=lambda m: MODES[QueueMode(m)],
                 captions=[MODE_HELP[m] for m in QueueMode])
        st.selectbox("Kind", list(s.KINDS), key="a_kind",
                     help="generated: written by the model alone; rationalized: written with the answer as a hint")
        st.selectbox("Kept for fine-tuning", list(s.KEPT), key="a_kept")
        st.checkbox("Right answer, steps not verified", key="a_cu",
                    help="Rationales whose final answer is right but whose steps the verifier did not confirm")
        st.checkbox("Unaudited only", key="a_un")
        order = st.radio("Order", QUEUE_ORDERS, key="a_order", captions=[ORDER_HELP[o] for o in QUEUE_ORDERS])
        st.number_input("Seed", min_value=0, step=1, key="a_seed", disabled=order != "random")
    s.to_url(URL, **s.filter_url(STATE))
    return s.queue_filter(STATE)


def audit_view(store) -> None:
    flt = queue_filters(store)
    ids = s.queue_ids(STATE, flt, store.audit_queue) if flt is not None else []
    with st.sidebar:
        if st.button("Refresh the queue", help="Include rationales written since the queue was built"):
            STATE.pop("a_queue", None)
            st.rerun()
    top = st.columns([2, 2, 1])
    top[0].text_input("Auditor", key="a_auditor", on_change=s.keep_auditor, args=(STATE, URL), placeholder="your name",
                      help="Recorded with every label (kept in the page's address)")
    STATE.setdefault("a_advance", True)
    top[2].toggle("Next after rating", key="a_advance")
    if flt is None:
        st.info("Type your name in the Auditor box: the second-opinion queue holds what others rated and you have not.")
        return
    if not ids:
        st.info(s.empty_message(flt.mode, bool(store.audit_filter_options().shape[0])))
        return
    audited = store.audited_among(ids, flt.mode, flt.auditor)
    index = s.settle_item(STATE, URL, ids)
    attempt_id = ids[index]
    with top[1]:
        done = "Adjudicated" if flt.mode == QueueMode.ADJUDICATE else "Audited"
        st.caption(f"{done} {len(audited):,} of {len(ids):,} in this queue")
        st.progress(len(audited) / len(ids))
    for key, show in (("a_error", st.error), ("a_notice", st.warning), ("a_saved", st.toast)):
        if STATE.get(key):
            show(ui.md_escape(STATE.pop(key)))  # an error may quote a tag or a note
    item = store.audit_item(attempt_id, flt.auditor, adjudicating=flt.mode == QueueMode.ADJUDICATE)
    if item is None:
        st.warning(f"Attempt {attempt_id} is no longer in the database.")
        return
    # The item is shown above its controls, but the controls are made first: a key's callback gets what
    # its button was last made with, so once an item can be read, its keys act on it (made after it, a
    # key pressed while a slow redraw had shown the item but not yet its buttons acted on the previous one).
    content = st.container()
    label_controls(store, ids, item)
    with content:
        show_item(item, index, len(ids), flt.mode)


def show_item(item, index: int, total: int, mode: QueueMode = QueueMode.ALL) -> None:
    kept = "kept for fine-tuning" if item.used_for_training else "not kept"
    st.markdown(f"**Item {index + 1} of {total}** · attempt #{item.attempt_id} · run {item.run_id} · "
                f"iteration {item.iteration} · {item.kind} · {kept}")
    left, right = st.columns([3, 2])
    with left:
        st.caption("Question")
        st.code(item.question, language=None, wrap_lines=True)
        if item.choices:
            st.caption("Choices")
            st.code("\n".join(f"({c[0]}) {c[1]}" for c in item.choices), language=None, wrap_lines=True)
        if item.hint:
            st.caption("Hint given in the prompt (rationalization)")
            st.code(item.hint, language=None, wrap_lines=True)
        st.caption("Rationale")
        ui.rationale_block(item.rationale, item.given_text, item.kind)
    with right:
        a, b = st.columns(2)
        a.caption("Extracted answer")
        a.code(item.predicted_answer if item.predicted_answer is not None else "(none)", language=None)
        b.caption("Gold answer")
        b.code(item.gold_answer, language=None)
        badges = st.container(horizontal=True)
        with badges:
            if item.correct:
                st.badge("right answer", icon=":material/check:", color="green")
            else:
                st.badge("wrong answer", icon=":material/close:", color="red")
            if item.verified is None:
                st.badge("steps not checkable", color="gray")
            elif item.verified:
                st.badge("steps hold", icon=":material/check:", color="green")
            else:
                st.badge("steps fail", icon=":material/close:", color="red")
            if item.hint_leak:
                st.badge("hint leak", icon=":material/warning:", color="orange")
        if item.verify_reason:
            st.text(f"Step verifier: {item.verify_reason}")  # may quote model text: plain text only
        if item.kind == "rationalized" and item.hint_leak is not None:
            st.text("Hint leak: yes, restates the hinted answer" if item.hint_leak else "Hint leak: no")
        if mode == QueueMode.ADJUDICATE:
            # The adjudicator sees every rating; everyone else audits blind, so that agreement means something.
            st.text("Ratings: " + "; ".join(f"{who}: {rating}" for who, rating, adj in item.labels if not adj))
        if item.rating:
            whose = "Adjudicated label" if item.adjudicated else "Current label"
            st.text(f"{whose}: {item.rating} by {item.auditor}, {item.audited_at:%Y-%m-%d %H:%M}"
                    + (f" ({item.revisions} labels in its history)" if item.revisions > 1 else ""))
        if mode != QueueMode.ADJUDICATE and item.other_auditors:
            st.text(f"Also rated by {item.other_auditors} other auditor(s)")


def label_controls(store, ids: list[int], item) -> None:
    attempt_id = item.attempt_id
    tags_key, note_key = f"a_tags_{attempt_id}", f"a_note_{attempt_id}"
    known = s.cached(STATE, "a_c_tags", store.audit_tags)
    unsaved, elsewhere = s.unsaved_labels(STATE, attempt_id)
    if elsewhere:
        st.warning(f"Not saved yet: your label {RATING_LABELS[elsewhere[1]]} for #{elsewhere[0]} (the database was busy); "
                   "go back to it and press Retry.", icon=":material/hourglass_top:")
    s.fill_form(STATE, item, unsaved)
    if unsaved:
        c = st.columns([5, 1], vertical_alignment="center")
        c[0].warning(f"Not saved yet: your label {RATING_LABELS[unsaved[1]]} for #{attempt_id} (the database was "
                     "busy). It stays here until it is saved.", icon=":material/hourglass_top:")
        c[1].button("Retry", key="a_retry", icon=":material/refresh:", width="stretch",
                    help=f"Save {RATING_LABELS[unsaved[1]]} with the tags and note below",
                    on_click=s.rate, args=(STATE, URL, store, ids, attempt_id, unsaved[1]))
    c = st.columns([3, 3])
    c[0].multiselect("Tags", s.tag_options(known, STATE[tags_key]), key=tags_key, accept_new_options=True,
                     placeholder="choose or type a new tag", help="Saved with the rating; a new tag joins the list")
    c[1].text_area("Note", key=note_key, height=68, on_change=s.keep_draft, args=(STATE, URL, attempt_id),
                   help="Saved with the rating; a draft is kept in the page's address")
    buttons = st.columns([1, 1, 1, 0.2, 1, 1])
    for col, rating in zip(buttons[:3], RATINGS):
        col.button(RATING_LABELS[rating], key=f"a_rate_{rating}", icon=RATING_ICONS[rating], shortcut=RATING_KEYS[rating],
                   help=f"{RATING_LABELS[rating]}: {RATING_HELP[rating]}. Saves the label now.",
                   type="primary" if item.rating == rating else "secondary", width="stretch",
                   on_click=s.rate, args=(STATE, URL, store, ids, attempt_id, rating))
    index = ids.index(attempt_id)
    buttons[4].button("Previous", key="a_prev", icon=":material/arrow_back:", shortcut="K", width="stretch", disabled=index == 0,
                      on_click=s.step, args=(STATE, URL, ids, -1))
    buttons[5].button("Next", key="a_next", icon=":material/arrow_forward:", shortcut="J", width="stretch", disabled=index == len(ids) - 1,
                      on_click=s.step, args=(STATE, URL, ids, 1))
    c = st.columns([2, 2, 2])
    with c[0].popover("Add to an exemplar set", icon=":material/library_add:"):
        ui.add_to_exemplar_set(store, attempt_id, store.get_run(item.run_id).task_key, key="a")
    if item.revisions:
        with c[1].expander(f"Label history ({item.revisions})"):
            st.dataframe(store.audit_history(attempt_id), hide_index=True, width="stretch")
    with c[2].expander("Edit the tag list"):
        new = st.text_input("New tag", key="a_new_tag")
        if st.button("Add tag", key="a_add_tag") and new.strip():
            with ui.guard():
                store.add_audit_tag(new)
                STATE.pop("a_c_tags", None)
                st.rerun()
        drop = st.multiselect("Remove from the list", known, key="a_drop_tags",
                              help="Labels that carry a removed tag keep it")
        if st.button("Remove", key="a_remove_tags", disabled=not drop):
            for tag in drop:
                store.remove_audit_tag(tag)
            STATE.pop("a_c_tags", None)
            STATE.pop("a_drop_tags", None)
            st.rerun()
    st.caption("Keys: **1** sound · **2** flawed · **3** wrong (saves, then next) · **J** next · **K** previous")


# --- the page -----------------------------------------------------------------------

ui.require_app("pages/audit.py")  # a first visit straight to this page goes through app.py
st.title("Audit rationales")
s.restore(STATE, URL)
with ui.guard():
    store = ui.get_store()
    view = st.segmented_control("View", s.VIEWS, key="a_view", label_visibility="collapsed") or s.VIEWS[0]
    s.to_url(URL, view=view if view != s.VIEWS[0] else None)
    if view == s.VIEWS[0]:
        audit_view(store)
    else:
        stats_view(store)
    s.remember(STATE)
