"""Audit: judge rationales one at a time with the keyboard, and see what the audits say.

Keys: 1 sound, 2 flawed, 3 wrong (each saves the label at once and moves on),
J next, K previous. A label is saved the moment it is given; the position, the
filters, the auditor's name and a draft note live in the page's URL, so a
reload or an app restart loses nothing. Model text is shown with st.code /
st.text, never as markdown or HTML.
"""

from __future__ import annotations

import math
import time

import plotly.graph_objects as go
import streamlit as st

from pages import _ui as ui
from star_core.analysis.agreement import agreement, sound_share, verifier_agreement
from star_core.core.states import QUEUE_ORDERS, RATING_HELP, RATINGS, QueueMode
from star_core.analysis.present import pct
from star_core.core.errors import StarError, StoreError
from star_core.store import QueueFilter

VIEWS = ("Audit queue", "What the audits say")
KINDS = {"generated + rationalized": None, "generated": "generated", "rationalized": "rationalized", "eval": "eval"}
KEPT = {"any": None, "kept": True, "rejected": False}
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
UNSAVED_KEY = "a_unsaved"  # (attempt id, rating, tags, note) of a label the database was too busy to take
RATING_LABELS = {"sound": "Sound", "flawed": "Flawed", "wrong": "Wrong"}
RATING_ICONS = {"sound": ":material/check_circle:", "flawed": ":material/warning:", "wrong": ":material/cancel:"}
SEEDED = "_audit_seeded"
KEEP = "_keep_"
PERSISTED = ("a_view", "a_auditor", "a_mode", "a_kind", "a_kept", "a_cu", "a_un", "a_order", "a_seed", "a_run", "a_it", "a_advance",
             "s_run", "s_kept")
KIND_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


# --- state that survives a reload: the URL ------------------------------------------


def _seed_state() -> None:
    """Give each widget its value back: from the URL after a reload, from the session after visiting another page.

    Streamlit forgets a widget's state when a run does not draw it (another page),
    so every run also keeps a copy under a key no widget owns (`_remember`).
    """
    q = st.query_params
    from_url = {
        "a_view": q.get("view") if q.get("view") in VIEWS else None,
        "a_auditor": q.get("auditor"),
        "a_mode": q.get("mode") if q.get("mode") in {m.value for m in QueueMode} else None,
        "a_kind": q.get("kind") if q.get("kind") in KINDS else None,
        "a_kept": q.get("kept") if q.get("kept") in KEPT else None,
        "a_cu": q.get("cu") == "1" if "cu" in q else None,
        "a_un": q.get("un") == "1" if "un" in q else None,
        "a_order": q.get("order") if q.get("order") in QUEUE_ORDERS else None,
        "a_seed": _int(q.get("seed")),
        "a_run": _int(q.get("run")),
        "a_it": _int(q.get("it")),
    }
    for key in PERSISTED:
        if key in st.session_state:
            continue
        if from_url.get(key) is not None:
            st.session_state[key] = from_url[key]
        elif KEEP + key in st.session_state:
            st.session_state[key] = st.session_state[KEEP + key]
    if st.session_state.get("a_view") not in VIEWS:
        st.session_state["a_view"] = VIEWS[0]
    if SEEDED not in st.session_state:  # once per session: where the URL says the auditor was
        st.session_state[SEEDED] = True
        st.session_state["a_item"] = _int(q.get("item"))
        st.session_state["a_draft"] = (_int(q.get("draft_for")), q.get("draft", ""))


def _remember() -> None:
    for key in PERSISTED:
        if key in st.session_state:
            st.session_state[KEEP + key] = st.session_state[key]


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _to_url(**values) -> None:
    for key, value in values.items():
        if value in (None, "", False):
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = "1" if value is True else str(value)


# --- the queue ----------------------------------------------------------------------


def queue_filters(store) -> QueueFilter:
    labels, options = _cached("a_c_runs", lambda: (store.run_labels(), store.audit_filter_options()))
    with st.sidebar:
        st.subheader("Audit queue")
        runs = [None] + sorted(labels, reverse=True)
        if "a_run" not in st.session_state or st.session_state["a_run"] not in runs:
            # The newest run with rationales: a run that is queued or just started has none to audit yet.
            with_attempts = [int(r) for r in options.run_id.unique() if int(r) in labels]
            st.session_state["a_run"] = max(with_attempts) if with_attempts else (runs[1] if len(runs) > 1 else None)
        run_id = st.selectbox("Run", runs, key="a_run", format_func=lambda r: "all runs" if r is None else labels.get(r, f"#{r}"))
        iterations = sorted(set(options.iteration[options.run_id == run_id] if run_id is not None else options.iteration))
        iterations = [None] + [int(i) for i in iterations if i > 0]
        if st.session_state.get("a_it") not in iterations:
            st.session_state["a_it"] = None
        iteration = st.selectbox("Iteration", iterations, key="a_it", format_func=lambda i: "all" if i is None else str(i))
        mode = st.radio("Queue", [m.value for m in QueueMode], key="a_mode", format_func=lambda m: MODES[QueueMode(m)],
                        captions=[MODE_HELP[m] for m in QueueMode])
        kind = st.selectbox("Kind", list(KINDS), key="a_kind",
                            help="generated: written by the model alone; rationalized: written with the answer as a hint")
        kept = st.selectbox("Kept for fine-tuning", list(KEPT), key="a_kept")
        cu = st.checkbox("Right answer, steps not verified", key="a_cu",
                         help="Rationales whose final answer is right but whose steps the verifier did not confirm")
        un = st.checkbox("Unaudited only", key="a_un")
        order = st.radio("Order", QUEUE_ORDERS, key="a_order", captions=[ORDER_HELP[o] for o in QUEUE_ORDERS])
        seed = st.number_input("Seed", min_value=0, step=1, key="a_seed", disabled=order != "random")
    _to_url(run=run_id, it=iteration, mode=mode if mode != QueueMode.ALL else None,
            kind=kind if kind != "generated + rationalized" else None,
            kept=kept if kept != "any" else None, cu=cu, un=un, order=order if order != "random" else None,
            seed=int(seed) or None)
    auditor = st.session_state.get("a_auditor", "").strip()
    if mode == QueueMode.SECOND_OPINION and not auditor:
        return None  # whose second opinion: the page asks for the name
    return QueueFilter(run_id=run_id, iteration=iteration, kind=KINDS[kind], kept=KEPT[kept], correct_unverified=cu,
                       unaudited_only=un, order=order, seed=int(seed), mode=QueueMode(mode), auditor=auditor)


def queue_ids(store, flt: QueueFilter) -> list[int]:
    """The queue, fixed while the filters stay the same (so a labelled item keeps its place)."""
    cached = st.session_state.get("a_queue")
    if cached is None or cached[0] != flt:
        cached = (flt, store.audit_queue(flt))
        st.session_state["a_queue"] = cached
    return cached[1]


def _cached(key: str, fetch, ttl_s: float = 10.0):
    """A small per-session cache for what every keypress redraws but rarely changes (run list, tag list)."""
    hit = st.session_state.get(key)
    if hit is not None and time.monotonic() - hit[0] < ttl_s:
        return hit[1]
    value = fetch()
    st.session_state[key] = (time.monotonic(), value)
    return value


def _position(ids: list[int]) -> int:
    item = st.session_state.get("a_item")
    return ids.index(item) if item in ids else 0


def _go(ids: list[int], index: int) -> None:
    index = min(max(index, 0), len(ids) - 1)
    st.session_state["a_item"] = ids[index]
    _to_url(item=ids[index])


def _stale(attempt_id: int) -> bool:
    """A key pressed again before the page showed the next item acts on what the auditor saw: nothing."""
    return st.session_state.get("a_item") != attempt_id


def _step(ids: list[int], offset: int) -> None:
    """Button callback: move on from the current item (a held J or K moves once per press)."""
    _go(ids, _position(ids) + offset)


def _rate(store, ids: list[int], attempt_id: int, rating: str) -> None:
    """Button callback: save the label now, then move to the next item."""
    if _stale(attempt_id):
        # Said, not swallowed: the key was pressed for an item the page had already left (a second press
        # before the next item was drawn, or right after J/K), so it would land on one nobody has read.
        # A notice, not an error: nothing went wrong, and pressing again does what was meant.
        now = st.session_state.get("a_item")
        st.session_state["a_notice"] = (f"Not saved: that key was for #{attempt_id}, but the page had already moved "
                                        f"on to #{now}. Press it again to rate #{now}.")
        return
    auditor = st.session_state.get("a_auditor", "").strip()
    if not auditor:
        st.session_state["a_error"] = "Type your name in the Auditor box first: every label records who gave it."
        return
    adjudicating = st.session_state.get("a_mode") == QueueMode.ADJUDICATE
    tags = list(st.session_state.get(f"a_tags_{attempt_id}", []))
    note = st.session_state.get(f"a_note_{attempt_id}", "")
    try:
        store.save_audit(attempt_id, rating, tags, note, auditor, adjudicated=adjudicating)
    except StoreError as exc:
        # The file stayed busy past the page's wait: the label is kept (rating, tags, note) until it is saved.
        st.session_state[UNSAVED_KEY] = (attempt_id, rating, tags, note)
        st.session_state["a_error"] = (f"Not saved: #{attempt_id} {rating}. {exc}. The label is kept in the form: "
                                       "press Retry (or the key again) to save it.")
        return
    except StarError as exc:
        st.session_state["a_error"] = str(exc)
        return
    if st.session_state.get(UNSAVED_KEY, (None,))[0] == attempt_id:
        st.session_state.pop(UNSAVED_KEY)
    known = st.session_state.get("a_c_tags", (0, []))[1]
    if set(st.session_state.get(f"a_tags_{attempt_id}", [])) - set(known):
        st.session_state.pop("a_c_tags", None)  # a new tag joined the list
    st.session_state["a_saved"] = f"Saved: #{attempt_id} {rating}" + (" (adjudicated)" if adjudicating else "")
    st.session_state["a_draft"] = (None, "")
    _to_url(draft=None, draft_for=None)
    if st.session_state.get("a_advance", True):
        _go(ids, ids.index(attempt_id) + 1)


def _keep_draft(attempt_id: int) -> None:
    note = st.session_state.get(f"a_note_{attempt_id}", "")
    st.session_state["a_draft"] = (attempt_id, note)
    _to_url(draft=note, draft_for=attempt_id if note else None)


def _keep_auditor() -> None:
    _to_url(auditor=st.session_state.get("a_auditor", "").strip())


def audit_view(store) -> None:
    flt = queue_filters(store)
    ids = queue_ids(store, flt) if flt is not None else []
    with st.sidebar:
        if st.button("Refresh the queue", help="Include rationales written since the queue was built"):
            st.session_state.pop("a_queue", None)
            st.rerun()
    top = st.columns([2, 2, 1])
    top[0].text_input("Auditor", key="a_auditor", on_change=_keep_auditor, placeholder="your name",
                      help="Recorded with every label (kept in the page's address)")
    st.session_state.setdefault("a_advance", True)
    top[2].toggle("Next after rating", key="a_advance")
    if flt is None:
        st.info("Type your name in the Auditor box: the second-opinion queue holds what others rated and you have not.")
        return
    if not ids:
        empty = {QueueMode.SECOND_OPINION: "Nothing for a second opinion here: no other auditor has rated a rationale "
                                           "these filters select that you have not.",
                 QueueMode.ADJUDICATE: "Nothing to adjudicate here: no two auditors rated one of these rationales "
                                       "differently."}.get(flt.mode, "No rationale matches these filters.")
        st.info(empty if store.audit_filter_options().shape[0] else "No rationales to audit yet: start a run on the Runs page.")
        return
    audited = store.audited_among(ids, flt.mode, flt.auditor)
    index = _position(ids)
    attempt_id = ids[index]
    if st.session_state.get("a_item") != attempt_id:
        _go(ids, index)
    with top[1]:
        done = "Adjudicated" if flt.mode == QueueMode.ADJUDICATE else "Audited"
        st.caption(f"{done} {len(audited):,} of {len(ids):,} in this queue")
        st.progress(len(audited) / len(ids))
    for key, show in (("a_error", st.error), ("a_notice", st.warning), ("a_saved", st.toast)):
        if st.session_state.get(key):
            show(ui.md_escape(st.session_state.pop(key)))  # an error may quote a tag or a note
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
    known = _cached("a_c_tags", store.audit_tags)
    unsaved = st.session_state.get(UNSAVED_KEY)
    if unsaved and unsaved[0] != attempt_id:
        st.warning(f"Not saved yet: your label {RATING_LABELS[unsaved[1]]} for #{unsaved[0]} (the database was busy); "
                   "go back to it and press Retry.", icon=":material/hourglass_top:")
    unsaved = unsaved if unsaved and unsaved[0] == attempt_id else None
    if tags_key not in st.session_state:  # a label not saved yet comes back even if the form was not drawn since
        st.session_state[tags_key] = list(unsaved[2] if unsaved else item.tags or [])
    if note_key not in st.session_state:
        draft_for, draft = st.session_state.get("a_draft", (None, ""))
        st.session_state[note_key] = unsaved[3] if unsaved else draft if draft_for == attempt_id and draft else item.note
    if unsaved:
        c = st.columns([5, 1], vertical_alignment="center")
        c[0].warning(f"Not saved yet: your label {RATING_LABELS[unsaved[1]]} for #{attempt_id} (the database was "
                     "busy). It stays here until it is saved.", icon=":material/hourglass_top:")
        c[1].button("Retry", key="a_retry", icon=":material/refresh:", width="stretch",
                    help=f"Save {RATING_LABELS[unsaved[1]]} with the tags and note below",
                    on_click=_rate, args=(store, ids, attempt_id, unsaved[1]))
    options = sorted(set(known) | set(st.session_state[tags_key]), key=lambda t: (t not in known, known.index(t) if t in known else 0, t))
    c = st.columns([3, 3])
    c[0].multiselect("Tags", options, key=tags_key, accept_new_options=True, placeholder="choose or type a new tag",
                     help="Saved with the rating; a new tag joins the list")
    c[1].text_area("Note", key=note_key, height=68, on_change=_keep_draft, args=(attempt_id,),
                   help="Saved with the rating; a draft is kept in the page's address")
    buttons = st.columns([1, 1, 1, 0.2, 1, 1])
    for col, rating in zip(buttons[:3], RATINGS):
        col.button(RATING_LABELS[rating], key=f"a_rate_{rating}", icon=RATING_ICONS[rating], shortcut=RATING_KEYS[rating],
                   help=f"{RATING_LABELS[rating]}: {RATING_HELP[rating]}. Saves the label now.",
                   type="primary" if item.rating == rating else "secondary", width="stretch",
                   on_click=_rate, args=(store, ids, attempt_id, rating))
    index = ids.index(attempt_id)
    buttons[4].button("Previous", key="a_prev", icon=":material/arrow_back:", shortcut="K", width="stretch", disabled=index == 0,
                      on_click=_step, args=(ids, -1))
    buttons[5].button("Next", key="a_next", icon=":material/arrow_forward:", shortcut="J", width="stretch", disabled=index == len(ids) - 1,
                      on_click=_step, args=(ids, 1))
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
                st.session_state.pop("a_c_tags", None)
                st.rerun()
        drop = st.multiselect("Remove from the list", known, key="a_drop_tags",
                              help="Labels that carry a removed tag keep it")
        if st.button("Remove", key="a_remove_tags", disabled=not drop):
            for tag in drop:
                store.remove_audit_tag(tag)
            st.session_state.pop("a_c_tags", None)
            st.session_state.pop("a_drop_tags", None)
            st.rerun()
    st.caption("Keys: **1** sound · **2** flawed · **3** wrong (saves, then next) · **J** next · **K** previous")


# --- what the audits say ------------------------------------------------------------


def stats_view(store) -> None:
    labels = store.run_labels()
    runs = [None] + sorted(labels, reverse=True)
    c = st.columns([2, 2, 1])
    run_id = c[0].selectbox("Run", runs, key="s_run", format_func=lambda r: "all runs" if r is None else labels.get(r, f"#{r}"))
    c[1].write("")
    st.session_state.setdefault("s_kept", True)
    kept_only = c[1].toggle("Kept rationales only", key="s_kept",
                          help="The share among rationales that went into fine-tuning (the training data's quality)")
    share = sound_share(store, run_id, kept_only=kept_only)
    audited = share[share.audited > 0]
    st.subheader("Share rated sound")
    if audited.empty:
        st.info("No audited rationales here yet.")
    else:
        fig = go.Figure()
        series = list(audited.groupby(["run_id", "kind"]))
        for number, ((rid, kind), r) in enumerate(series):
            name = kind if run_id is not None else f"run {rid} · {kind}"
            color = KIND_COLORS[number % len(KIND_COLORS)]
            dodge = (number - (len(series) - 1) / 2) * 0.08  # side by side, so the intervals do not hide each other
            fig.add_trace(go.Scatter(
                x=r.iteration + dodge, y=r.sound_share, mode="lines+markers", name=name,
                marker=dict(color=color, size=9), line=dict(color=color),
                error_y=dict(type="data", symmetric=False, array=r.ci_high - r.sound_share,
                             arrayminus=r.sound_share - r.ci_low, color=color),
                customdata=r[["iteration", "sound", "audited", "kept", "ci_low", "ci_high"]].to_numpy(),
                hovertemplate="iteration %{customdata[0]}: %{y:.0%} sound (%{customdata[1]} of %{customdata[2]} audited, "
                              "%{customdata[3]} in all)<br>95% CI %{customdata[4]:.0%}–%{customdata[5]:.0%}<extra>"
                              + name + "</extra>",
            ))
        fig.update_layout(yaxis=dict(title="rated sound", tickformat=".0%", range=[0, 1.05]),
                          height=360, margin=dict(t=20, b=40), legend=dict(orientation="h", y=-0.25))
        ui.iteration_axis(fig, audited.iteration)
        st.plotly_chart(fig, width="stretch")
        st.caption("Error bars: 95% Wilson score intervals. Hover for counts.")
    adjudicated = int(share.adjudicated.sum())
    st.caption(f"Labels counted: the adjudicated label where a rationale has one ({adjudicated:,} here), otherwise "
               "every auditor's own label, so a rationale two auditors rated counts twice until it is adjudicated. "
               "'audited' is the labels counted, 'audited_items' the rationales they are on.")
    shown = share.assign(sound_share=share.sound_share.map(lambda x: pct(x, 0)), ci=[f"{pct(lo, 0)}–{pct(hi, 0)}" if h else "" for lo, hi, h in
                                                                 zip(share.ci_low, share.ci_high, share.audited)])
    st.dataframe(shown.drop(columns=["ci_low", "ci_high"]).rename(columns={"kept": "kept" if kept_only else "rationales"}),
                 hide_index=True, width="stretch")
    st.download_button("Download the sound-share table (CSV)", share.to_csv(index=False), "sound_share.csv", "text/csv")

    st.subheader("Step verifier vs human ratings")
    table, kappa, n = verifier_agreement(store, run_id)
    left, right = st.columns([3, 1])
    left.dataframe(table, width="stretch")
    right.metric("Cohen's kappa", "—" if math.isnan(kappa) else f"{kappa:.2f}",
                 help="Agreement between 'the filter keeps it' (right answer, steps hold) and 'rated sound', "
                      "beyond chance: 1 perfect, 0 chance, below 0 worse than chance")
    right.caption(f"over {n} labels (counted as for the sound share) of rationales the verifier could check")

    agreement_section(store, run_id)

    st.subheader("Rationales flagged by tag")
    counts = store.audit_counts_by_tag(run_id)
    if counts.empty:
        st.info("No audited rationale has a tag yet.")
    else:
        tag = st.selectbox("Tag", list(counts.tag), key="s_tag",
                           format_func=lambda t: f"{t} ({int(counts.rationales[counts.tag == t].iloc[0])})")
        flagged = store.flagged_by_tag(tag, run_id)
        st.dataframe(flagged, hide_index=True, width="stretch",
                     column_order=["attempt_id", "rating", "predicted_answer", "gold_answer", "question", "rationale", "tag",
                                   "run_id", "iteration", "kind", "note", "auditor", "audited_at"],
                     column_config=ui.column_config(flagged.columns, rationale=st.column_config.TextColumn("Rationale", width="large")))
        st.download_button("Download the flagged list (CSV)", store.flagged_by_tag(None, run_id).to_csv(index=False),
                           "flagged_by_tag.csv", "text/csv")
    st.subheader("Export")
    c = st.columns(2)
    c[0].download_button("Current labels (CSV)", store.audits_table(run_id).to_csv(index=False), "audits.csv", "text/csv")
    c[1].download_button("Every label, with history (CSV)", store.audits_table(run_id, history=True).to_csv(index=False),
                         "audits_history.csv", "text/csv")


def agreement_section(store, run_id) -> None:
    st.subheader("Agreement between auditors")
    result = agreement(store.agreement_labels(run_id))
    if len(store.auditors(run_id)) < 2 or not result.alpha_n:
        st.info("No rationale has labels from two auditors yet: a second auditor can take the *second opinion* queue.")
        return
    left, right = st.columns([3, 1])
    pairs = [{"auditor A": p.a, "auditor B": p.b, "items both rated": p.n, "Cohen's kappa": p.kappa,
              "95% CI": "" if p.ci_low is None else f"{p.ci_low:+.2f} to {p.ci_high:+.2f}"} for p in result.pairs]
    left.dataframe(pairs, hide_index=True, width="stretch", key="s_pairs",
                   column_config={"Cohen's kappa": st.column_config.NumberColumn(format="%+.2f")})
    left.caption("Cohen's kappa per pair on the rationales both rated; 95% interval: a percentile bootstrap over "
                 "those rationales. Adjudicated labels are not counted (they are nobody's independent rating).")
    right.metric("Krippendorff's alpha", "—" if result.alpha is None else f"{result.alpha:.2f}",
                 help="Nominal alpha over every auditor: 1 perfect agreement, 0 what chance gives")
    right.caption(f"over {result.alpha_n} rationales rated by two or more auditors")
    disagreements = store.disagreements(run_id)
    st.markdown(f"**Rated differently: {len(disagreements)}** "
                f"({int(disagreements.adjudicated_rating.notna().sum())} adjudicated); the *to adjudicate* queue holds them.")
    if not disagreements.empty:
        st.dataframe(disagreements, hide_index=True, width="stretch", key="s_disagreements",
                     column_order=["attempt_id", "ratings", "adjudicated_rating", "adjudicated_by", "predicted_answer",
                                   "gold_answer", "question", "rationale", "run_id", "iteration", "kind"],
                     column_config=ui.column_config(disagreements.columns,
                                                    rationale=st.column_config.TextColumn("Rationale", width="large")))


# --- the page -----------------------------------------------------------------------

ui.require_app("pages/audit.py")  # a first visit straight to this page goes through app.py
st.title("Audit rationales")
_seed_state()
with ui.guard():
    store = ui.get_store()
    view = st.segmented_control("View", VIEWS, key="a_view", label_visibility="collapsed") or VIEWS[0]
    _to_url(view=view if view != VIEWS[0] else None)
    if view == VIEWS[0]:
        audit_view(store)
    else:
        stats_view(store)
    _remember()
