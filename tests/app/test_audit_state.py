"""The Audit page's state without Streamlit: the session and the URL are plain dicts here."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pages import _audit_state as s
from star_core.core.errors import StoreError
from star_core.core.states import QueueMode
from star_core.store import QueueFilter
from star_core.store.audits import AuditError


class FakeStore:
    """Records the labels saved; raises `error` instead while one is set."""

    def __init__(self, error: Exception | None = None):
        self.saved, self.error = [], error

    def save_audit(self, attempt_id, rating, tags, note, auditor, adjudicated=False):
        if self.error:
            raise self.error
        self.saved.append((attempt_id, rating, tags, note, auditor, adjudicated))


IDS = [11, 12, 13]


def sidebar(**changes) -> dict:
    """The session as the sidebar's widgets leave it with their defaults."""
    return {"a_run": None, "a_it": None, "a_mode": "all", "a_kind": "generated + rationalized", "a_kept": "any",
            "a_cu": False, "a_un": False, "a_order": "random", "a_seed": 0, **changes}


# --- the URL and the session --------------------------------------------------------


def test_a_reload_gives_each_widget_its_value_from_the_url_and_ignores_values_no_widget_offers():
    state = {}
    s.restore(state, {"view": "What the audits say", "auditor": "ada", "mode": "adjudicate", "kind": "eval",
                      "kept": "rejected", "cu": "1", "un": "0", "order": "oldest", "seed": "7", "run": "3", "it": "2"})
    assert {k: state[k] for k in ("a_view", "a_auditor", "a_mode", "a_kind", "a_kept", "a_cu", "a_un", "a_order",
                                  "a_seed", "a_run", "a_it")} == {
        "a_view": "What the audits say", "a_auditor": "ada", "a_mode": "adjudicate", "a_kind": "eval",
        "a_kept": "rejected", "a_cu": True, "a_un": False, "a_order": "oldest", "a_seed": 7, "a_run": 3, "a_it": 2}
    state = {}
    s.restore(state, {"view": "nope", "mode": "everything", "kind": "all", "kept": "maybe", "order": "best",
                      "seed": "seven", "run": ""})
    assert state["a_view"] == s.VIEWS[0]
    assert not {"a_mode", "a_kind", "a_kept", "a_order", "a_seed", "a_run", "a_cu", "a_un"} & state.keys()


def test_the_session_beats_the_url_and_the_url_beats_the_copy_kept_from_another_page():
    state = {"a_kind": "generated", s.KEEP + "a_order": "disagreement", s.KEEP + "a_auditor": "bob",
             s.KEEP + "a_view": "What the audits say"}
    s.restore(state, {"kind": "eval", "auditor": "ada", "view": "nope"})  # a view no page has is no value
    assert (state["a_kind"], state["a_order"], state["a_auditor"], state["a_view"]) == (
        "generated", "disagreement", "ada", "What the audits say")


def test_the_item_and_the_draft_come_from_the_url_once_per_session():
    state = {}
    s.restore(state, {"item": "12", "draft_for": "12", "draft": "half a thought"})
    assert (state["a_item"], state["a_draft"]) == (12, (12, "half a thought"))
    state["a_item"] = 13
    s.restore(state, {"item": "12"})
    assert state["a_item"] == 13


def test_a_visit_to_another_page_loses_no_widget_value():
    state = {"a_auditor": "ada", "a_kind": "eval", "s_kept": False, "a_tags_11": ["x"]}
    s.remember(state)
    assert {k for k in state if k.startswith(s.KEEP)} == {s.KEEP + "a_auditor", s.KEEP + "a_kind", s.KEEP + "s_kept"}
    back = {k: v for k, v in state.items() if k.startswith(s.KEEP)}  # Streamlit drops a widget another page lacks
    s.restore(back, {})
    assert (back["a_auditor"], back["a_kind"], back["s_kept"]) == ("ada", "eval", False)


def test_the_url_keeps_only_what_is_not_empty():
    query = {"draft": "old", "un": "1", "it": "2"}
    s.to_url(query, draft="", un=False, it=None, cu=True, run=3, order="oldest")
    assert query == {"cu": "1", "run": "3", "order": "oldest"}


# --- the queue ----------------------------------------------------------------------

OPTIONS = pd.DataFrame({"run_id": [1, 1, 1, 2, 2], "iteration": [0, 1, 2, 0, 3]})
LABELS = {1: "#1 first", 2: "#2 second", 3: "#3 queued"}  # run 3 has written nothing yet


@pytest.mark.parametrize("state, opened", [
    ({}, 2),  # the newest run with rationales, not the newer one queued behind it
    ({"a_run": 9}, 2),  # a run that is gone
    ({"a_run": None}, None),  # all runs, as chosen
    ({"a_run": 1}, 1),
])
def test_the_queue_opens_on_the_run_chosen_else_the_newest_with_rationales(state, opened):
    assert s.settle_run(state, LABELS, OPTIONS) == [None, 3, 2, 1]
    assert state["a_run"] == opened


def test_without_rationales_the_queue_opens_on_the_newest_run_or_on_none():
    empty = OPTIONS.iloc[:0]
    state = {}
    s.settle_run(state, LABELS, empty)
    assert state["a_run"] == 3
    state = {}
    assert s.settle_run(state, {}, empty) == [None] and state["a_run"] is None


def test_the_iterations_offered_are_the_runs_own_and_one_it_lacks_becomes_all():
    state = {"a_run": 1, "a_it": 3}
    assert s.settle_iteration(state, OPTIONS) == [None, 1, 2]  # not the few-shot iteration 0
    assert state["a_it"] is None
    state = {"a_run": None, "a_it": 3}
    assert s.settle_iteration(state, OPTIONS) == [None, 1, 2, 3] and state["a_it"] == 3


def test_the_url_keeps_the_filters_that_are_not_the_defaults():
    assert s.filter_url(sidebar()) == dict(run=None, it=None, mode=None, kind=None, kept=None, cu=False, un=False,
                                           order=None, seed=None)
    chosen = sidebar(a_run=2, a_it=1, a_mode="adjudicate", a_kind="eval", a_kept="kept", a_cu=True, a_un=True,
                     a_order="oldest", a_seed=5)
    assert s.filter_url(chosen) == dict(run=2, it=1, mode="adjudicate", kind="eval", kept="kept", cu=True, un=True,
                                        order="oldest", seed=5)


def test_the_sidebar_selects_the_queue():
    flt = s.queue_filter(sidebar(a_run=2, a_kind="rationalized", a_kept="rejected", a_cu=True, a_order="oldest",
                                 a_seed=4, a_auditor=" ada "))
    assert flt == QueueFilter(run_id=2, kind="rationalized", kept=False, correct_unverified=True, order="oldest",
                              seed=4, auditor="ada")
    assert s.queue_filter(sidebar()) == QueueFilter()  # both training kinds, kept or not


def test_a_second_opinion_needs_the_auditors_name():
    assert s.queue_filter(sidebar(a_mode="second-opinion", a_auditor="  ")) is None
    flt = s.queue_filter(sidebar(a_mode="second-opinion", a_auditor="ada"))
    assert (flt.mode, flt.auditor) == (QueueMode.SECOND_OPINION, "ada")


def test_the_queue_stays_fixed_while_the_filters_stay_the_same():
    built = []
    build = lambda flt: built.append(flt) or [len(built)]  # noqa: E731
    state = {}
    assert s.queue_ids(state, QueueFilter(), build) == [1]
    assert s.queue_ids(state, QueueFilter(), build) == [1] and len(built) == 1
    assert s.queue_ids(state, QueueFilter(kind="eval"), build) == [2]


def test_the_cache_fetches_again_once_its_time_is_up():
    now, fetched = [100.0], []
    fetch = lambda: fetched.append(1) or len(fetched)  # noqa: E731
    state = {}
    assert s.cached(state, "k", fetch, ttl_s=10, clock=lambda: now[0]) == 1
    now[0] = 109.9
    assert s.cached(state, "k", fetch, ttl_s=10, clock=lambda: now[0]) == 1
    now[0] = 110.0
    assert s.cached(state, "k", fetch, ttl_s=10, clock=lambda: now[0]) == 2


def test_an_empty_queue_says_why():
    assert "start a run" in s.empty_message(QueueMode.ADJUDICATE, any_rationales=False)
    assert "Nothing to adjudicate" in s.empty_message(QueueMode.ADJUDICATE, True)
    assert "second opinion" in s.empty_message(QueueMode.SECOND_OPINION, True)
    assert s.empty_message(QueueMode.ALL, True) == "No rationale matches these filters."


# --- where the auditor is -----------------------------------------------------------


def test_the_page_shows_the_sessions_item_else_the_first_and_says_so_in_the_url():
    state, query = {"a_item": 13}, {}
    assert s.settle_item(state, query, IDS) == 2 and query == {}
    state["a_item"] = 99  # no longer in the queue (the filters changed)
    assert s.settle_item(state, query, IDS) == 0
    assert (state["a_item"], query) == (11, {"item": "11"})


def test_next_and_previous_stop_at_the_ends_of_the_queue():
    state, query = {"a_item": 12}, {}
    s.step(state, query, IDS, 1)
    assert (state["a_item"], query["item"]) == (13, "13")
    s.step(state, query, IDS, 1)
    assert state["a_item"] == 13
    s.step(state, query, IDS, -1)
    s.step(state, query, IDS, -1)
    s.step(state, query, IDS, -1)
    assert (state["a_item"], query["item"]) == (11, "11")


# --- a label ------------------------------------------------------------------------


def test_a_label_is_saved_with_its_tags_note_and_auditor_then_the_page_moves_on():
    state = {"a_item": 12, "a_auditor": " ada ", "a_tags_12": ["skips a step"], "a_note_12": "short",
             "a_draft": (12, "short")}
    query = {"item": "12", "draft": "short", "draft_for": "12"}
    store = FakeStore()
    s.rate(state, query, store, IDS, 12, "flawed")
    assert store.saved == [(12, "flawed", ["skips a step"], "short", "ada", False)]
    assert state["a_saved"] == "Saved: #12 flawed" and state["a_draft"] == (None, "")
    assert (state["a_item"], query) == (13, {"item": "13"})


def test_an_adjudication_is_marked_and_the_last_item_or_no_advance_stays_put():
    state = {"a_item": 13, "a_auditor": "ada", "a_mode": "adjudicate"}
    store = FakeStore()
    s.rate(state, {}, store, IDS, 13, "wrong")
    assert store.saved[0][-1] is True and state["a_saved"] == "Saved: #13 wrong (adjudicated)"
    assert state["a_item"] == 13
    state = {"a_item": 11, "a_auditor": "ada", "a_advance": False}
    s.rate(state, {}, FakeStore(), IDS, 11, "sound")
    assert state["a_item"] == 11


def test_a_key_for_an_item_the_page_has_left_saves_nothing_and_says_so():
    state, store = {"a_item": 11, "a_auditor": "ada"}, FakeStore()
    s.rate(state, {}, store, IDS, 12, "sound")
    assert store.saved == [] and "a_error" not in state
    assert "that key was for #12" in state["a_notice"] and "moved on to #11" in state["a_notice"]


def test_a_label_without_an_auditor_is_refused():
    state, store = {"a_item": 11, "a_auditor": "   "}, FakeStore()
    s.rate(state, {}, store, IDS, 11, "sound")
    assert store.saved == [] and "Auditor box" in state["a_error"] and state["a_item"] == 11


def test_a_label_the_busy_database_refused_is_kept_until_retry_saves_it():
    state = {"a_item": 11, "a_auditor": "ada", "a_tags_11": ["t"], "a_note_11": "n"}
    store = FakeStore(StoreError("the database file is busy"))
    s.rate(state, {}, store, IDS, 11, "flawed")
    assert state[s.UNSAVED_KEY] == (11, "flawed", ["t"], "n")
    assert "Not saved: #11 flawed. the database file is busy" in state["a_error"] and state["a_item"] == 11
    store.error = None
    s.rate(state, {}, store, IDS, 11, "flawed")
    assert s.UNSAVED_KEY not in state and store.saved == [(11, "flawed", ["t"], "n", "ada", False)]


def test_a_label_the_store_rejects_shows_its_reason_and_keeps_nothing():
    state = {"a_item": 11, "a_auditor": "ada"}
    s.rate(state, {}, FakeStore(AuditError("an adjudication needs two auditors' labels")), IDS, 11, "sound")
    assert state["a_error"] == "an adjudication needs two auditors' labels" and s.UNSAVED_KEY not in state


def test_a_new_tag_makes_the_tag_list_be_read_again():
    state = {"a_item": 11, "a_auditor": "ada", "a_tags_11": ["known"], "a_c_tags": (0.0, ["known"])}
    s.rate(state, {}, FakeStore(), IDS, 11, "sound")
    assert "a_c_tags" in state
    state.update({"a_item": 11, "a_tags_11": ["known", "new"]})
    s.rate(state, {}, FakeStore(), IDS, 11, "sound")
    assert "a_c_tags" not in state


# --- the label form -----------------------------------------------------------------


def item(attempt_id=11, tags=("stored",), note="stored note"):
    return SimpleNamespace(attempt_id=attempt_id, tags=list(tags) if tags is not None else None, note=note)


def test_the_unsaved_label_is_this_items_or_anothers():
    state = {s.UNSAVED_KEY: (12, "wrong", [], "")}
    assert s.unsaved_labels(state, 12) == ((12, "wrong", [], ""), None)
    assert s.unsaved_labels(state, 11) == (None, (12, "wrong", [], ""))
    assert s.unsaved_labels({}, 11) == (None, None)


@pytest.mark.parametrize("state, unsaved, tags, note", [
    ({}, None, ["stored"], "stored note"),
    ({"a_draft": (11, "draft")}, None, ["stored"], "draft"),
    ({"a_draft": (12, "draft")}, None, ["stored"], "stored note"),  # another item's draft
    ({"a_draft": (11, "draft")}, (11, "flawed", ["kept"], "unsaved note"), ["kept"], "unsaved note"),
    ({"a_tags_11": ["typed"], "a_note_11": "typed"}, (11, "flawed", ["kept"], "unsaved note"), ["typed"], "typed"),
])
def test_the_form_starts_from_the_unsaved_label_else_the_draft_else_the_saved_label(state, unsaved, tags, note):
    s.fill_form(state, item(), unsaved)
    assert (state["a_tags_11"], state["a_note_11"]) == (tags, note)


def test_an_item_without_tags_starts_with_none():
    state = {}
    s.fill_form(state, item(tags=None), None)
    assert state["a_tags_11"] == []


def test_tags_come_in_the_lists_order_then_new_ones_alphabetically():
    assert s.tag_options(["b", "a"], ["z", "a", "y"]) == ["b", "a", "y", "z"]


def test_a_draft_note_and_the_auditor_are_kept_in_the_url():
    state, query = {"a_note_11": "half", "a_auditor": " ada "}, {}
    s.keep_draft(state, query, 11)
    s.keep_auditor(state, query)
    assert state["a_draft"] == (11, "half") and query == {"draft": "half", "draft_for": "11", "auditor": "ada"}
    state.update({"a_note_11": "", "a_auditor": ""})
    s.keep_draft(state, query, 11)
    s.keep_auditor(state, query)
    assert state["a_draft"] == (11, "") and query == {}
