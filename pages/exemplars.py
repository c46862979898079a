"""Exemplars: named, versioned few-shot exemplar sets.

Build a set from rationales audited as sound, type one by hand, or import JSONL;
edit, reorder and remove exemplars (a set a run used is frozen: an edit makes
the next version, and the run keeps the exact text it used); see each
exemplar's check result, the exact prompt the engine builds and its token count;
compare the set with another on the same eval questions (*Compare with…*: two few-shot
runs in a background worker, then the paired difference and the questions only one got right).
"""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui
from star_core.engine import exemplar_compare
import star_core.engine.exemplars as ex
from star_core.runtime import jobs
from star_core.analysis.comparison import p_text, signed_points
from star_core.core.config import RunConfig
from star_core.core.embedded import EMBEDDED_MODELS
from star_core.core.errors import StarError
from star_core.analysis.present import pct
from star_core.core.states import ACTIVE_STATUSES
from star_core.analysis.stats import CI_METHOD, TEST_METHOD
from star_core.store import ExemplarItem
from star_core.tasks import task_for_key
from star_core.tasks.base import ANSWER_TEXT

MODELS = tuple(EMBEDDED_MODELS)


def _select(set_id: int, message: str | None = None) -> None:
    st.session_state["e_pending"] = set_id  # applied before the selectbox is drawn on the next run
    if message:
        st.session_state["e_message"] = message


def _apply(store, old_id: int, new_id: int, what: str) -> None:
    """After an edit: follow the set to the id now holding it, saying when that is a new version."""
    new = store.exemplar_set(new_id)
    if new_id != old_id:
        old = store.exemplar_set(old_id)
        _select(new_id, f"{what}: {old.label} is frozen (a run used it), so this is saved as {new.label}")
    else:
        _select(new_id, f"{what} in {new.label}")


def sets_overview(store):
    sets = store.list_exemplar_sets()
    if sets.empty:
        st.info("No exemplar sets yet. Each task's default set is added when a run first uses it; "
                "build one below from audited rationales, by hand, or from a JSONL file.")
        return sets
    shown = sets.assign(frozen=sets.frozen.map({True: "frozen", False: "editable"}))
    st.dataframe(shown[["label", "task", "exemplars", "frozen", "runs", "note", "created_at"]], hide_index=True,
                 width="stretch", height=min(38 + 35 * len(sets), 250))
    return sets


def choose_set(store, sets):
    if sets.empty:
        return None
    ids = list(sets.id)
    if "e_selected" not in st.session_state:
        wanted = st.query_params.get("set")
        match = sets[sets.label == wanted] if wanted else sets.iloc[0:0]
        st.session_state["e_selected"] = int(match.id.iloc[0]) if not match.empty else int(sets.id.iloc[0])
    if st.session_state.get("e_pending") is not None:
        st.session_state["e_selected"] = st.session_state.pop("e_pending")
    if st.session_state["e_selected"] not in ids:
        st.session_state["e_selected"] = int(sets.id.iloc[0])
    labels = dict(zip(sets.id, sets.label + " · " + sets.task_key + sets.frozen.map({True: " · frozen", False: ""})))
    set_id = st.selectbox("Exemplar set", ids, key="e_selected", format_func=lambda i: labels[i])
    st.query_params["set"] = sets.label[sets.id == set_id].iloc[0]
    return store.exemplar_set(set_id)


def new_set(store, first: bool) -> None:
    with st.expander("New exemplar set", expanded=first, icon=":material/add:"):
        tabs = st.tabs(["From audited rationales", "By hand", "Import JSONL"])
        with tabs[0]:
            from_audits(store)
        with tabs[1]:
            c = st.columns(3)
            name = c[0].text_input("Name", key="e_hand_name", placeholder="e.g. my-arithmetic")
            key = ui.task_key_input(c[1], "e_hand")
            if c[2].button("Create an empty set", key="e_hand_create"):
                with ui.guard():
                    if _named(name):
                        set_id = store.create_exemplar_set(name.strip(), key, [])
                        _select(set_id, f"Created {store.exemplar_set(set_id).label}: add exemplars below")
                        st.rerun()
        with tabs[2]:
            c = st.columns(3)
            name = c[0].text_input("Name", key="e_imp_name", placeholder="e.g. imported")
            key = ui.task_key_input(c[1], "e_imp")
            upload = st.file_uploader("JSONL file: one {question, rationale, answer[, choices]} object per line",
                                      type=["jsonl", "json", "txt"], key="e_imp_file")
            if st.button("Import", key="e_imp_go", disabled=upload is None):
                with ui.guard():
                    if _named(name):
                        set_id = ex.import_jsonl(store, name.strip(), key, upload.getvalue().decode("utf-8", "replace"), source=upload.name)
                        _select(set_id, f"Imported {store.exemplar_set(set_id).label}")
                        st.rerun()


def _named(name: str) -> bool:
    if not name.strip():
        st.error("Give the set a name.")
        return False
    return True


def from_audits(store) -> None:
    sound = store.sound_attempts()
    if sound.empty:
        st.info("No rationale is rated sound yet: audit some on the Audit page first.")
        return
    labels = store.run_labels()
    runs = sorted(set(sound.run_id))
    run = st.selectbox("Run", [None] + runs, key="e_aud_run",
                       format_func=lambda r: "all runs" if r is None else labels.get(r, f"#{r}"))
    if run is not None:
        sound = sound[sound.run_id == run]
    text = {int(r.attempt_id): f"#{r.attempt_id} · it {r.iteration} {r.kind} · {r.question} → {r.rationale}"
            for r in sound.itertuples()}
    chosen = st.multiselect("Rationales rated sound (in prompt order)", list(text), default=list(text)[:8],
                            format_func=text.get, key=f"e_aud_pick_{run}")
    c = st.columns([2, 3, 1])
    name = c[0].text_input("Name", value="curated", key="e_aud_name")
    note = c[1].text_input("Note", key="e_aud_note", placeholder="optional")
    c[2].write("")
    if c[2].button("Create set", key="e_aud_create", type="primary", disabled=not chosen):
        with ui.guard():
            if _named(name):
                set_id = ex.create_set_from_attempts(store, name.strip(), chosen, note)
                _select(set_id, f"Created {store.exemplar_set(set_id).label} from {len(chosen)} audited rationales")
                st.rerun()


def show_set(store, s) -> None:
    task = task_for_key(s.task_key)
    reasons = ex.validate_items(task, s.items)
    users = store.runs_with_exemplar_sets()
    users = ", ".join(f"#{r}" for r in users.run_id[users.exemplar_set_id == s.id])
    head = st.columns([3, 2])
    head[0].subheader(ui.md_escape(s.label))
    if s.frozen:
        head[1].warning(ui.md_escape(f"Frozen: used by run {users}. An edit saves a new version of {s.name}; the runs keep this one."),
                        icon=":material/lock:")
    else:
        head[1].info("Editable: not used by any run yet. Edits change it in place.")
    if s.note:
        st.caption(ui.md_escape(s.note))
    bad = [(i, r) for i, r in enumerate(reasons, start=1) if r]
    if not s.items:
        st.warning("The set is empty: add exemplars below. A run cannot use an empty set.")
    elif bad:
        # A reason quotes the exemplar's own text: escaped, inside a list that stays a list.
        st.error(ui.md_escape(f"A run cannot use this set until these pass the {s.task_key.describe()} checks:") + "\n\n"
                 + "\n".join(f"- exemplar {i}: {ui.md_escape(r, one_line=True)}" for i, r in bad))
    else:
        st.success(ui.md_escape(f"All {len(s.items)} exemplars pass the {s.task_key.describe()} answer check"
                                + (" and step verifier." if getattr(task, "can_verify_steps", False) else ".")))
    command = f"star run --exemplars {s.label}".replace("`", "")  # set names are letters, digits and -_. anyway
    st.caption(f"Use it: `{command}` ({ui.md_escape(f'or {s.name} for its latest version')}), "
               "or the Exemplars field of the Runs page form.")
    compare_section(store, s)
    for i, (item, reason) in enumerate(zip(s.items, reasons)):
        edit_item(store, s, i, item, reason)
    add_item(store, s)
    preview(s, task)
    st.download_button("Export as JSONL", ex.to_jsonl(s.items), f"{s.name}-v{s.version}.jsonl", "application/json",
                       key="e_export", disabled=not s.items)


# --- compare with another set ---------------------------------------------------------


def compare_section(store, s) -> None:
    others = store.list_exemplar_sets(key=s.task_key)
    others = others[(others.id != s.id) & (others.exemplars > 0)]
    head = st.columns([3, 1])
    head[0].subheader("Compared with other sets")
    with head[1].popover("Compare with…", icon=":material/compare_arrows:", disabled=others.empty or not s.items,
                         help="Evaluate both sets few-shot on the same eval questions, in a background worker"):
        other = st.selectbox("Other set (B)", list(others.label), key=f"e_cmp_other_{s.id}")
        size = st.number_input("Eval questions", min_value=1, value=RunConfig.__dataclass_fields__["eval_size"].default,
                               step=8, key=f"e_cmp_size_{s.id}")
        st.caption(f"Two ordinary runs, iteration 0 only: {s.label} (A) and the other set (B), on the same questions.")
        if st.button("Start the comparison", key=f"e_cmp_go_{s.id}", type="primary"):
            with ui.guard():
                experiment_id = exemplar_compare.create(store, s.label, other, {"eval_size": int(size)})
                jobs.launch_experiment(store, experiment_id)
                st.session_state[f"e_cmp_pick_{s.id}"] = experiment_id
                st.rerun()
    found = store.exemplar_comparisons(s.id)
    if found.empty:
        st.caption("None yet." if not others.empty else
                   f"No other set for {s.task_key.describe()} to compare with: build or import one above.")
        return
    labels = {int(r.id): f"#{r.id} · A {r.set_a} vs B {r.set_b} · {r.created_at:%Y-%m-%d %H:%M}" for r in found.itertuples()}
    key = f"e_cmp_pick_{s.id}"
    if st.session_state.get(key) not in labels:
        st.session_state[key] = next(iter(labels))
    experiment_id = st.selectbox("Comparison", list(labels), format_func=labels.get, key=key)
    row = found[found.id == experiment_id].iloc[0]
    if row.status_a in ACTIVE_STATUSES or row.status_b in ACTIVE_STATUSES:
        _comparison_progress(store, experiment_id)
    else:
        show_comparison(store, experiment_id, row)


def _comparison_progress(store, experiment_id: int) -> None:
    @st.fragment(run_every=3)
    def progress() -> None:
        row = store.exemplar_comparisons().set_index("id").loc[experiment_id]
        if row.status_a not in ACTIVE_STATUSES and row.status_b not in ACTIVE_STATUSES:
            st.rerun()  # both ended: the whole page shows the result
        runs = store.list_runs().set_index("id")
        for side, set_label, run_id in (("A", row.set_a, row.run_a), ("B", row.set_b, row.run_b)):
            r = runs.loc[run_id]
            now = f" · {r.cur_phase} {int(r.phase_done)}/{int(r.phase_total)}" if isinstance(r.cur_phase, str) and \
                r.phase_total == r.phase_total and r.status == "running" else ""
            st.text(f"{side}: {set_label}, run {run_id}: {r.status}{now}")
        log = jobs.log_tail(store, lines=6, experiment_id=experiment_id)
        if log:
            st.code(log, language=None)

    progress()


def show_comparison(store, experiment_id: int, row) -> None:
    try:
        found = exemplar_compare.result(store, experiment_id)
    except StarError as exc:
        st.error(ui.md_escape(str(exc)))
        return
    if found.comparison is None:
        st.warning(ui.md_escape(f"Not finished: run {row.run_a} is {row.status_a}, run {row.run_b} is {row.status_b}. "
                                "Resume them on the Runs page, or start the comparison again."))
        return
    o = found.comparison.overall
    m = st.columns(4)
    m[0].metric(f"A: {found.set_a}", pct(o.accuracy_a), help=f"run {found.run_a}, {o.both_right + o.only_a} of {o.shared}")
    m[1].metric(f"B: {found.set_b}", pct(o.accuracy_b), help=f"run {found.run_b}, {o.both_right + o.only_b} of {o.shared}")
    m[2].metric("B − A", signed_points(o.difference), help="percentage points, on the same eval questions")
    m[3].metric("p-value", p_text(o.p_value), help=TEST_METHOD)
    st.markdown(ui.md_escape(f"95% confidence interval of B − A: {o.ci_low * 100:+.1f} to {o.ci_high * 100:+.1f} points "
                             f"on {o.shared} shared eval questions; {o.only_a} right with A only, {o.only_b} with B only."))
    st.caption(f"Interval: {CI_METHOD}. p-value: {TEST_METHOD}.")
    d = found.comparison.discordant
    st.markdown(f"**Questions only one set got right: {len(d)}**")
    if d.empty:
        return
    shown = d.assign(
        right_with=d.right_side.map({"A": f"A only ({found.set_a})", "B": f"B only ({found.set_b})"}),
        open_a=[f"/browse?run={found.run_a}&attempt={int(a)}" for a in d.a_attempt_id],
        open_b=[f"/browse?run={found.run_b}&attempt={int(b)}" for b in d.b_attempt_id],
    )[["right_with", "question", "gold_answer", "a_answer", "b_answer", "difficulty", "open_a", "open_b"]]
    st.dataframe(shown, hide_index=True, width="stretch", key=f"e_cmp_discordant_{experiment_id}",
                 height=min(38 + 35 * len(shown), 360),
                 column_config=ui.column_config(
                     shown.columns, right_with=st.column_config.TextColumn("Right with", width="medium"),
                     a_answer=st.column_config.TextColumn("A's answer", width="small"),
                     b_answer=st.column_config.TextColumn("B's answer", width="small"),
                     open_a=st.column_config.LinkColumn("A in Browse", display_text="open A"),
                     open_b=st.column_config.LinkColumn("B in Browse", display_text="open B")))
    st.page_link("pages/compare.py", label="Open in Compare runs", icon=":material/compare_arrows:",
                 query_params={"a": f"{found.run_a}@0", "b": f"{found.run_b}@0"})


def edit_item(store, s, i: int, item: ExemplarItem, reason: str | None) -> None:
    status = ":material/check:" if reason is None else ":material/close:"
    source = f" · from attempt #{item.source_attempt_id}" if item.source_attempt_id else ""
    with st.expander(f"{status} {i + 1}. {ui.md_escape(item.question[:80], one_line=True)}{source}", expanded=reason is not None):
        if reason:
            st.error(ui.md_escape(f"Fails the check: {reason}"))
        key = f"e_{s.id}_{i}"
        q = st.text_area("Question", item.question, key=f"{key}_q", height=68)
        r = st.text_area(f"Rationale (without the final '{ANSWER_TEXT} …', which the prompt adds)", item.rationale,
                         key=f"{key}_r", height=68)
        a = st.text_input("Answer", item.answer, key=f"{key}_a")
        if item.choices:
            st.caption(ui.md_escape("Choices: " + "  ".join(f"({c[0]}) {c[1]}" for c in item.choices)))
        c = st.columns(4)
        if c[0].button("Save", key=f"{key}_save", type="primary"):
            with ui.guard():
                new_id = ex.update_exemplar(store, s.id, i, ExemplarItem(q, r, a, item.choices, item.source_attempt_id))
                _apply(store, s.id, new_id, f"Saved exemplar {i + 1}")
                st.rerun()
        if c[1].button("Move up", key=f"{key}_up", icon=":material/arrow_upward:", disabled=i == 0):
            _apply(store, s.id, ex.move_exemplar(store, s.id, i, -1), f"Moved exemplar {i + 1} up")
            st.rerun()
        if c[2].button("Move down", key=f"{key}_down", icon=":material/arrow_downward:", disabled=i == len(s.items) - 1):
            _apply(store, s.id, ex.move_exemplar(store, s.id, i, 1), f"Moved exemplar {i + 1} down")
            st.rerun()
        if c[3].button("Remove", key=f"{key}_rm", icon=":material/delete:"):
            _apply(store, s.id, ex.remove_exemplar(store, s.id, i), f"Removed exemplar {i + 1}")
            st.rerun()


def add_item(store, s) -> None:
    with st.expander("Add an exemplar by hand"):
        with st.form(f"e_add_{s.id}", clear_on_submit=False):
            q = st.text_area("Question", key=f"e_add_{s.id}_q", height=68, placeholder="e.g. 47 + 85")
            r = st.text_area(f"Rationale (without the final '{ANSWER_TEXT} …')", key=f"e_add_{s.id}_r", height=68,
                             placeholder="e.g. 47 + 85 = 120 + 12 = 132.")
            a = st.text_input("Answer", key=f"e_add_{s.id}_a", placeholder="e.g. 132")
            if st.form_submit_button("Add exemplar"):
                with ui.guard():
                    new_id = ex.add_exemplar(store, s.id, ExemplarItem(q.strip(), r.strip(), a.strip()))
                    for part in "qra":
                        st.session_state.pop(f"e_add_{s.id}_{part}", None)
                    _apply(store, s.id, new_id, "Added an exemplar")
                    st.rerun()


def preview(s, task) -> None:
    st.subheader("The prompt the engine builds")
    c = st.columns([2, 2, 2])
    hints = c[0].toggle("With hints (the rationalization prompt)", key="e_hints")
    model = c[1].selectbox("Tokenizer of", MODELS, key="e_model", accept_new_options=True,
                           help="An embedded model name, a local model folder or .gguf file")
    text = ex.prompt_preview(task, s.items, with_hints=hints)
    st.code(text or "(empty)", language=None, wrap_lines=True)
    with c[2]:  # filled after the prompt is shown: the first tokenizer load takes a few seconds
        try:
            with st.spinner("Loading the tokenizer…"):
                tokens = ex.token_count(model, text)
            st.metric("Prompt prefix", f"{tokens:,} tokens", help="Counted as the engine encodes the prefix (BOS included)")
        except StarError as exc:
            st.warning(ui.md_escape(f"No token count: {exc}"))


ui.require_app("pages/exemplars.py")  # a first visit straight to this page goes through app.py
st.title("Exemplar sets")
with ui.guard():
    store = ui.get_store()
    message = st.session_state.pop("e_message", None)
    if message:
        st.success(ui.md_escape(message))  # names the set
    sets = sets_overview(store)
    new_set(store, first=sets.empty)
    chosen = choose_set(store, sets)
    if chosen is not None:
        show_set(store, chosen)
