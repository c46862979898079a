"""What every page shares: the open database, error display, and the run picker.

Not a page itself (app.py lists the pages). Pages get the store with ``get_store()``:
the database file is chosen on the overview page and kept in the session, with the
STAR_DB environment variable (set by ``star app --db``) or ./star.duckdb as default.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import sys
import traceback
from pathlib import Path

import streamlit as st

import star_core.engine.exemplars as ex
from star_core.core.errors import StarError
from star_core.core.states import AttemptKind
from star_core.analysis.present import (SEED_NOTE, STATUS_COLORS, added_to_set_message, default_pair, diff_html, flag,
                                        given_and_own, label, similarity)
from star_core.store import Store
from star_core.store.exemplar_sets import ExemplarSetError
from star_core.analysis.trajectories import question_ids

DB_KEY = "db_path"
NAV_KEY = "_star_navigation"  # set by app.py in every run of the app
REDIRECT_KEY = "_star_redirect"
# A read waits this long for a writing run to let go of the file before the page says so.
LOCK_TIMEOUT_S = 20.0


def require_app(page_file: str) -> None:
    """Make sure a page runs inside app.py's navigation.

    Right after the server starts, a first visit straight to /runs can run the page file
    alone (Streamlit's older pages/ folder mode): no sidebar navigation, no wide layout.
    Such a visit goes through app.py instead, which then opens the page asked for.
    """
    if not st.session_state.get(NAV_KEY):
        st.session_state[REDIRECT_KEY] = (page_file, {k: st.query_params[k] for k in st.query_params})
        st.switch_page("app.py")


def default_db() -> str:
    return str(Path(os.environ.get("STAR_DB") or "star.duckdb").expanduser().resolve())


def db_path() -> str:
    if DB_KEY not in st.session_state:
        st.session_state[DB_KEY] = default_db()
    return st.session_state[DB_KEY]


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    # One per file and server process; Store keeps no connection open, and threads (tabs) take turns on the file.
    return Store(path, lock_timeout=LOCK_TIMEOUT_S, on_wait=_say_waiting).init()


def _say_waiting(message: str) -> None:
    """The page whose read or save waits for the file says so (a toast), then carries on waiting."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    logging.getLogger("star_core.store").info(message)
    if get_script_run_ctx(suppress_warning=True) is not None:  # called from a page's script, not a bare thread
        st.toast(md_escape(f"Waiting for the database: {message.split(': ', 1)[-1]}"), icon=":material/hourglass_top:")


def get_store() -> Store:
    """The session's store; shows the problem and stops the page if the file cannot be opened."""
    try:
        return _store(db_path())
    except StarError as exc:
        st.error(md_escape(f"Cannot open the database: {exc}"))
        st.info("Open another database file on the Overview page.")
        st.stop()


def open_db(path: str) -> str:
    """Switch this session to another database file (created if missing); raises StarError if unusable."""
    resolved = str(Path(path.strip()).expanduser().resolve())
    if not path.strip():
        raise StarError("give a database file path")
    if Path(resolved).is_dir():
        raise StarError(f"{resolved} is a folder; give a .duckdb file inside it")
    _store(resolved)
    st.session_state[DB_KEY] = resolved
    return resolved


@contextlib.contextmanager
def guard():
    """Turn any error into a message on the page: never a traceback (details go to the server log)."""
    try:
        yield
    except StarError as exc:
        st.error(md_escape(str(exc)))
    except Exception as exc:  # noqa: BLE001 - the page must stay usable whatever went wrong
        print(traceback.format_exc(), file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        st.error(md_escape(f"Something went wrong: {type(exc).__name__}: {first}. Reload the page to try again."))


# Everything CommonMark, GitHub's extensions, Streamlit's directives (:red[..], :material/..:),
# its math ($..$) or HTML could read as markup.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def md_escape(text, one_line: bool = False) -> str:
    """`text` (model output, a name, a note, an error quoting them) as itself in anything Streamlit renders as
    Markdown: st.markdown, captions, alerts, toasts, metric values, widget labels and help.

    Every markup character is backslash-escaped, so no link, image, emphasis, heading, list, math, colour
    directive or HTML tag can come of it. Line breaks stay line breaks (or become spaces with `one_line`,
    for labels).
    """
    if text is None:
        return ""
    escaped = _MARKUP.sub(r"\\\1", str(text))
    lines = escaped.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return " ".join(lines) if one_line else "  \n".join(lines)


def iteration_axis(fig, iterations, title: str = "iteration") -> None:
    """One tick per iteration drawn, and no other, on every x axis of `fig` (facets too).

    With dtick=1 Plotly's ticks follow the range it picks, not the data: a run evaluated at
    iteration 0 only got a tick at -1, a chart of iteration 1 alone ticks at 0 and 2.
    """
    ticks = sorted({int(i) for i in iterations})
    if not ticks:
        return
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[str(i) for i in ticks],
                     range=[ticks[0] - 0.5, ticks[-1] + 0.5], title=title)


def safe_figure(fig):
    """A Plotly figure whose run names, set names and hover values are shown as text: Plotly reads a
    subset of HTML (<a href>, <b>, <br>) in legend names, hover text and facet titles."""
    def text(value):
        return html.escape(value, quote=False) if isinstance(value, str) else value

    for trace in fig.data:
        for attr in ("name", "legendgroup"):
            if isinstance(getattr(trace, attr, None), str):
                setattr(trace, attr, text(getattr(trace, attr)))
        template = getattr(trace, "hovertemplate", None)
        if isinstance(template, str):  # Plotly Express writes facet values into it; keep only its own line breaks
            trace.hovertemplate = _TEMPLATE_TAGS.sub(lambda m: html.unescape(m.group()), text(template))
        for attr in ("customdata", "hovertext", "text"):
            values = getattr(trace, attr, None)
            if values is not None and not isinstance(values, str):
                setattr(trace, attr, _map_nested(values, text))
            elif isinstance(values, str):
                setattr(trace, attr, text(values))
    for annotation in fig.layout.annotations or ():
        annotation.text = text(annotation.text)
    return fig


_TEMPLATE_TAGS = re.compile(r"&lt;(br|extra|/extra)&gt;")


def _map_nested(values, fn):
    import numpy as np

    array = np.asarray(values, dtype=object)
    return np.vectorize(fn, otypes=[object])(array) if array.size else array


def status_badge(status: str) -> str:
    """Markdown for a status badge."""
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{status}]"


def query_run() -> int | None:
    """The run named in the page's URL (?run=ID), if any."""
    value = st.query_params.get("run")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def sidebar_db() -> None:
    with st.sidebar:
        st.caption("Database")
        st.code(db_path(), language=None, wrap_lines=True)


def task_key_input(container, prefix: str):
    """Choose a task and the settings its key depends on (jsonl: the answer type); returns the TaskKey."""
    from star_core.core.config import RunConfig, field_help
    from star_core.core.settings_spec import label
    from star_core.tasks import TASK_NAMES, task_key

    meta = field_help()
    name = container.selectbox("Task", TASK_NAMES, key=f"{prefix}_task")
    probe = task_key(RunConfig(task=name))  # which settings this task's key holds
    values = {}
    for field, _ in probe.settings:
        choices = list(meta[field].get("choices", [meta[field]["default"]]))
        values[field] = container.selectbox(label(field), choices, key=f"{prefix}_{field}",
                                            help=meta[field]["help"])
    return task_key(RunConfig(task=name, **values))


def exemplar_set_names(store, key) -> list[str]:
    """The names of the sets made for a task key, the most recently written first and the shipped '-default' sets last."""
    sets = store.list_exemplar_sets(key=key)
    if sets.empty:
        return []
    latest = sets.groupby("name").created_at.max()
    return sorted(latest.index, key=lambda n: (n.endswith("-default"), -latest[n].timestamp()))


def add_to_exemplar_set(store, attempt_id: int, task, key: str, default_name: str = "curated") -> None:
    """Pick an exemplar set of task key `task` (or type a new name) and add one attempt to it with a button.

    Says which set and version it landed in (a set a run used gets a new version), or why the
    exemplar was refused (the task's answer and step checks). `key` prefixes the widget keys.
    """
    names = exemplar_set_names(store, task) or [default_name]
    name_key = f"{key}_set_name"
    typed = st.session_state.get(name_key)
    if typed and typed not in names:
        names.append(typed)  # a new name typed earlier in this session
    if name_key not in st.session_state:
        st.session_state[name_key] = names[0]
    c = st.columns([3, 2, 3], vertical_alignment="bottom")
    c[0].selectbox("Exemplar set", names, key=name_key, accept_new_options=True,
                   help=f"An existing set for {md_escape(task.describe())}, or type a new name. The question, rationale and gold answer "
                        "are appended to the set's latest version; a set a run used gets a new version.")
    if not c[1].button("Add to exemplar set", key=f"{key}_add_to_set", icon=":material/library_add:"):
        return
    name = (st.session_state.get(name_key) or "").strip()
    with guard():
        try:
            before = store.find_exemplar_set(name)
        except ExemplarSetError:
            before = None
        try:
            set_id = ex.add_attempts_to_set(store, name, [attempt_id])
        except StarError as exc:
            st.error(md_escape(f"Not added: {exc}"))
            return
        st.success(md_escape(added_to_set_message(name, before, store.exemplar_set(set_id), attempt_id)))


# --- shared by the browse, compare and trajectories pages ----------------------------------


def rationale_block(rationale: str, given_text: str | None, kind: str) -> None:
    """A rationale with what the model did not write set apart: a seed row as the task's, a partial hint's given
    steps in their own box above the model's continuation."""
    if kind == AttemptKind.SEED:
        st.info(SEED_NOTE)
        st.code(rationale, language=None, wrap_lines=True)
        return
    given, own = given_and_own(rationale, given_text)
    if given:
        st.caption("Given in the hint (the reference's first steps, not the model's)")
        st.code(given, language=None, wrap_lines=True)
        st.caption("Written by the model after them")
    st.code(own, language=None, wrap_lines=True)


def download_csv(df, name: str) -> None:
    """A button that downloads a figure's or table's data as `name`.csv."""
    st.download_button("Download CSV", df.to_csv(index=False).encode(), file_name=f"{name}.csv", mime="text/csv",
                       key=f"csv_{name}", icon=":material/download:")


def column_config(columns, **overrides) -> dict:
    """st.dataframe column settings that show words (present.label) instead of field names; `overrides`
    replace a column's settings (e.g. a narrow width or a checkbox)."""
    out = {c: st.column_config.Column(label(c)) for c in columns}
    out.update(overrides)
    return out


def diff_columns(left, right, left_title: str, right_title: str) -> None:
    """Two rationales side by side with their word-level differences marked (rows with rationale,
    predicted_answer, verified, used_for_training and hint: dicts or namedtuple-like)."""
    get = (lambda row, k: row.get(k)) if isinstance(left, dict) else (lambda row, k: getattr(row, k, None))  # noqa: E731
    left_text, right_text = get(left, "rationale") or "", get(right, "rationale") or ""
    left_html, right_html = diff_html(left_text, right_text)
    st.caption(f"Word-level differences ({similarity(left_text, right_text):.0%} alike): "
               "struck out on the left = only there; highlighted on the right = only there.")
    c = st.columns(2)
    for col, row, title, body in ((c[0], left, left_title, left_html), (c[1], right, right_title, right_html)):
        with col:
            st.text(title)
            st.text(f"answer {get(row, 'predicted_answer')} · verified {flag(get(row, 'verified'))} · "
                    f"trained on {flag(get(row, 'used_for_training'))}")
            st.html(body)  # model text escaped in diff_html
            hint = get(row, "hint")
            if isinstance(hint, str) and hint:
                st.caption("Hint shown to the model:")
                st.code(hint, language=None, wrap_lines=True)


def side_by_side(store, run_id: int, problem_id: str, iteration: int, attempt_id: int, key: str = "") -> None:
    """One question's rationales: a table across iterations, and two of them compared word by word.

    `key` prefixes the widget keys, for a page showing several questions' views."""
    attempts = store.question_attempts(run_id, problem_id)
    st.subheader("Side by side: this question's rationales")
    across, compare = st.tabs(["Across iterations", "Compare two"])
    with across:
        shown = attempts[["iteration", "kind", "sample", "correct", "predicted_answer", "rationale", "verified",
                          "used_for_training", "hint_leak", "attempt_id"]]
        st.dataframe(shown, hide_index=True, width="stretch", key=f"{key}across_table",
                     column_config=column_config(shown.columns, rationale=st.column_config.TextColumn(label("rationale"), width="large"),
                                                 correct=st.column_config.CheckboxColumn(label("correct"), width="small"),
                                                 used_for_training=st.column_config.CheckboxColumn(label("used_for_training"))))
    with compare:
        if len(attempts) < 2:
            st.caption("Only one attempt at this question so far.")
            return
        names = {int(r.attempt_id): f"iteration {r.iteration} · {r.kind}" + (f" · sample {r.sample}" if r.sample else "")
                 + f" · {'correct' if r.correct else 'wrong'}" for r in attempts.itertuples()}
        ids = list(names)
        first, second = default_pair(attempts, iteration)
        base = f"{key}cmp_{attempt_id}"  # the pair starts from the opened attempt's iteration
        c = st.columns(2)
        left_id = c[0].selectbox("Left", ids, index=ids.index(first), format_func=names.get, key=base + "_l")
        right_id = c[1].selectbox("Right", ids, index=ids.index(second) if second in ids else 0,
                                  format_func=names.get, key=base + "_r")
        by_id = attempts.set_index("attempt_id")
        diff_columns(by_id.loc[left_id].to_dict(), by_id.loc[right_id].to_dict(), names[left_id], names[right_id])


@st.cache_data(ttl=10, show_spinner=False)
def _trajectory_questions(db: str, run_ids: tuple[int, ...], classes: tuple[str, ...]) -> list[tuple[int, str]]:
    return question_ids(_store(db), list(run_ids), list(classes))


def trajectory_questions(store, run_ids: list[int], classes: list[str]) -> list[tuple[int, str]]:
    """The (run, problem) ids of the runs' questions in those trajectory classes, kept for 10 s: paging and
    sorting a filtered table then costs no new classification (a run writing adds attempts slowly)."""
    return _trajectory_questions(str(store.path), tuple(sorted(int(r) for r in run_ids)), tuple(sorted(classes)))
