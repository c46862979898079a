"""The Audit page's state, without Streamlit: which item the queue shows, the URL, the label not yet saved.

Every function takes the session (`state`) and the page's query parameters (`query`) as plain
mappings: the page passes st.session_state and st.query_params, a test passes dicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping

from star_core.core.errors import StarError, StoreError
from star_core.core.states import QUEUE_ORDERS, QueueMode
from star_core.store import QueueFilter

VIEWS = ("Audit queue", "What the audits say")
KINDS = {"generated + rationalized": None, "generated": "generated", "rationalized": "rationalized", "eval": "eval"}
KEPT = {"any": None, "kept": True, "rejected": False}
UNSAVED_KEY = "a_unsaved"  # (attempt id, rating, tags, note) of a label the database was too busy to take
SEEDED = "_audit_seeded"
KEEP = "_keep_"
PERSISTED = ("a_view", "a_auditor", "a_mode", "a_kind", "a_kept", "a_cu", "a_un", "a_order", "a_seed", "a_run", "a_it", "a_advance",
             "s_run", "s_kept")


# --- state that survives a reload: the URL ------------------------------------------


def to_int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def from_url(q: Mapping) -> dict:
    """The widget values the URL holds; None where it holds none, or one no widget offers."""
    return {
        "a_view": q.get("view") if q.get("view") in VIEWS else None,
        "a_auditor": q.get("auditor"),
        "a_mode": q.get("mode") if q.get("mode") in {m.value for m in QueueMode} else None,
        "a_kind": q.get("kind") if q.get("kind") in KINDS else None,
        "a_kept": q.get("kept") if q.get("kept") in KEPT else None,
        "a_cu": q.get("cu") == "1" if "cu" in q else None,
        "a_un": q.get("un") == "1" if "un" in q else None,
        "a_order": q.get("order") if q.get("order") in QUEUE_ORDERS else None,
        "a_seed": to_int(q.get("seed")),
        "a_run": to_int(q.get("run")),
        "a_it": to_int(q.get("it")),
    }


def restore(state: MutableMapping, query: Mapping) -> None:
    """Give each widget its value back: from the URL after a reload, from the session after visiting another page.

    Streamlit forgets a widget's state when a run does not draw it (another page),
    so every run also keeps a copy under a key no widget owns (`remember`).
    """
    wanted = from_url(query)
    for key in PERSISTED:
        if key in state:
            continue
        if wanted.get(key) is not None:
            state[key] = wanted[key]
        elif KEEP + key in state:
            state[key] = state[KEEP + key]
    if state.get("a_view") not in VIEWS:
        state["a_view"] = VIEWS[0]
    if SEEDED not in state:  # once per session: where the URL says the auditor was
        state[SEEDED] = True
        state["a_item"] = to_int(query.get("item"))
        state["a_draft"] = (to_int(query.get("draft_for")), query.get("draft", ""))


def remember(state: MutableMapping) -> None:
    for key in PERSISTED:
        if key in state:
            state[KEEP + key] = state[key]


def to_url(query: MutableMapping, **values) -> None:
    """Write values to the URL; an empty or false one leaves it (a default needs no place there)."""
    for key, value in values.items():
        if value in (None, "", False):
            query.pop(key, None)
        else:
            query[key] = "1" if value is True else str(value)


# --- the queue ----------------------------------------------------------------------


def settle_run(state: MutableMapping, labels: dict[int, str], options) -> list:
    """The runs to offer (None: all); a run chosen that is gone, or none chosen yet, gives way to a default."""
    runs = [None] + sorted(labels, reverse=True)
    if "a_run" not in state or state["a_run"] not in runs:
        # The newest run with rationales: a run that is queued or just started has none to audit yet.
        with_attempts = [int(r) for r in options.run_id.unique() if int(r) in labels]
        state["a_run"] = max(with_attempts) if with_attempts else (runs[1] if len(runs) > 1 else None)
    return runs


def settle_iteration(state: MutableMapping, options) -> list:
    """The chosen run's iterations to offer (None: all); one chosen that the run lacks becomes all."""
    run_id = state.get("a_run")
    iterations = sorted(set(options.iteration[options.run_id == run_id] if run_id is not None else options.iteration))
    iterations = [None] + [int(i) for i in iterations if i > 0]
    if state.get("a_it") not in iterations:
        state["a_it"] = None
    return iterations


def filter_url(state: Mapping) -> dict:
    """The filters as the URL keeps them: a default is left out."""
    mode, kind, kept, order = state["a_mode"], state["a_kind"], state["a_kept"], state["a_order"]
    return dict(run=state["a_run"], it=state["a_it"], mode=mode if mode != QueueMode.ALL else None,
                kind=kind if kind != "generated + rationalized" else None, kept=kept if kept != "any" else None,
                cu=state["a_cu"], un=state["a_un"], order=order if order != "random" else None,
                seed=int(state["a_seed"]) or None)


def queue_filter(state: Mapping) -> QueueFilter | None:
    """The queue the sidebar selects; None for a second opinion while nobody has given a name (whose would it be?)."""
    auditor = state.get("a_auditor", "").strip()
    mode = state["a_mode"]
    if mode == QueueMode.SECOND_OPINION and not auditor:
        return None
    return QueueFilter(run_id=state["a_run"], iteration=state["a_it"], kind=KINDS[state["a_kind"]], kept=KEPT[state["a_kept"]],
                       correct_unverified=state["a_cu"], unaudited_only=state["a_un"], order=state["a_order"],
                       seed=int(state["a_seed"]), mode=QueueMode(mode), auditor=auditor)


def queue_ids(state: MutableMapping, flt: QueueFilter, build: Callable[[QueueFilter], list[int]]) -> list[int]:
    """The queue, fixed while the filters stay the same (so a labelled item keeps its place)."""
    cached = state.get("a_queue")
    if cached is None or cached[0] != flt:
        cached = (flt, build(flt))
        state["a_queue"] = cached
    return cached[1]


def cached(state: MutableMapping, key: str, fetch, ttl_s: float = 10.0, clock=time.monotonic):
    """A small per-session cache for what every keypress redraws but rarely changes (run list, tag list)."""
    hit = state.get(key)
    if hit is not None and clock() - hit[0] < ttl_s:
        return hit[1]
    value = fetch()
    state[key] = (clock(), value)
    return value


def empty_message(mode: QueueMode, any_rationales: bool) -> str:
    if not any_rationales:
        return "No rationales to audit yet: start a run on the Runs page."
    return {QueueMode.SECOND_OPINION: "Nothing for a second opinion here: no other auditor has rated a rationale "
                                      "these filters select that you have not.",
            QueueMode.ADJUDICATE: "Nothing to adjudicate here: no two auditors rated one of these rationales "
                                  "differently."}.get(mode, "No rationale matches these filters.")


# --- where the auditor is -----------------------------------------------------------


def position(state: Mapping, ids: list[int]) -> int:
    item = state.get("a_item")
    return ids.index(item) if item in ids else 0


def go(state: MutableMapping, query: MutableMapping, ids: list[int], index: int) -> None:
    index = min(max(index, 0), len(ids) - 1)
    state["a_item"] = ids[index]
    to_url(query, item=ids[index])


def settle_item(state: MutableMapping, query: MutableMapping, ids: list[int]) -> int:
    """The index of the item to show: the session's if it is in the queue, else the first (then kept as current)."""
    index = position(state, ids)
    if state.get("a_item") != ids[index]:
        go(state, query, ids, index)
    return index


def step(state: MutableMapping, query: MutableMapping, ids: list[int], offset: int) -> None:
    """Button callback: move on from the current item (a held J or K moves once per press)."""
    go(state, query, ids, position(state, ids) + offset)


def rate(state: MutableMapping, query: MutableMapping, store, ids: list[int], attempt_id: int, rating: str) -> None:
    """Button callback: save the label now, then move to the next item."""
    if state.get("a_item") != attempt_id:
        # A key for an item the page had left (pressed twice, or after J/K) would rate one nobody read.
        now = state.get("a_item")
        state["a_notice"] = (f"Not saved: that key was for #{attempt_id}, but the page had already moved "
                             f"on to #{now}. Press it again to rate #{now}.")
        return
    auditor = state.get("a_auditor", "").strip()
    if not auditor:
        state["a_error"] = "Type your name in the Auditor box first: every label records who gave it."
        return
    adjudicating = state.get("a_mode") == QueueMode.ADJUDICATE
    tags = list(state.get(f"a_tags_{attempt_id}", []))
    note = state.get(f"a_note_{attempt_id}", "")
    try:
        store.save_audit(attempt_id, rating, tags, note, auditor, adjudicated=adjudicating)
    except StoreError as exc:
        # The file stayed busy past the page's wait: the label is kept (rating, tags, note) until it is saved.
        state[UNSAVED_KEY] = (attempt_id, rating, tags, note)
        state["a_error"] = (f"Not saved: #{attempt_id} {rating}. {exc}. The label is kept in the form: "
                            "press Retry (or the key again) to save it.")
        return
    except StarError as exc:
        state["a_error"] = str(exc)
        return
    if state.get(UNSAVED_KEY, (None,))[0] == attempt_id:
        state.pop(UNSAVED_KEY)
    known = state.get("a_c_tags", (0, []))[1]
    if set(state.get(f"a_tags_{attempt_id}", [])) - set(known):
        state.pop("a_c_tags", None)  # a new tag joined the list
    state["a_saved"] = f"Saved: #{attempt_id} {rating}" + (" (adjudicated)" if adjudicating else "")
    state["a_draft"] = (None, "")
    to_url(query, draft=None, draft_for=None)
    if state.get("a_advance", True):
        go(state, query, ids, ids.index(attempt_id) + 1)


# --- the label form -----------------------------------------------------------------


def unsaved_labels(state: Mapping, attempt_id: int) -> tuple[tuple | None, tuple | None]:
    """The label the busy database did not take, as (this item's, another item's): at most one is set."""
    unsaved = state.get(UNSAVED_KEY)
    if not unsaved:
        return None, None
    return (unsaved, None) if unsaved[0] == attempt_id else (None, unsaved)


def fill_form(state: MutableMapping, item, unsaved: tuple | None) -> None:
    """Tags and note of a form not yet filled: the unsaved label, else the draft, else the item's saved label."""
    tags_key, note_key = f"a_tags_{item.attempt_id}", f"a_note_{item.attempt_id}"
    if tags_key not in state:  # a label not saved yet comes back even if the form was not drawn since
        state[tags_key] = list(unsaved[2] if unsaved else item.tags or [])
    if note_key not in state:
        draft_for, draft = state.get("a_draft", (None, ""))
        state[note_key] = unsaved[3] if unsaved else draft if draft_for == item.attempt_id and draft else item.note


def tag_options(known: list[str], chosen: list[str]) -> list[str]:
    """The tag list's order, then tags typed for this label only, alphabetically."""
    return sorted(set(known) | set(chosen), key=lambda t: (t not in known, known.index(t) if t in known else 0, t))


def keep_draft(state: MutableMapping, query: MutableMapping, attempt_id: int) -> None:
    note = state.get(f"a_note_{attempt_id}", "")
    state["a_draft"] = (attempt_id, note)
    to_url(query, draft=note, draft_for=attempt_id if note else None)


def keep_auditor(state: Mapping, query: MutableMapping) -> None:
    to_url(query, auditor=state.get("a_auditor", "").strip())
