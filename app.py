"""STaR Studio: start and watch STaR runs, browse every rationale, plot accuracy by iteration.

    star app                      # or: streamlit run app.py
    STAR_DB=my.duckdb star app    # or: star app --db my.duckdb

The entry file: the page list, the database shown in the sidebar, and the overview.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages import _ui as ui
from star_core.engine import run_queue
from star_core.core.errors import StarError
from star_core.analysis.present import runs_overview
from star_core.core.states import ACTIVE_STATUSES

st.set_page_config(page_title="STaR Studio", page_icon=":material/star:", layout="wide")
HERE = Path(__file__).resolve().parent


def overview() -> None:
    st.title("STaR Studio")
    st.caption("Self-Taught Reasoner runs: start and watch them, browse every rationale, audit, curate exemplars.")
    with ui.guard():
        _database_box()
        _runs_overview()
        _import_box()


def _database_box() -> None:
    store = ui.get_store()
    path = Path(store.path)
    size = f"{path.stat().st_size / 1e6:,.1f} MB" if path.exists() else "new"
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Database** — {size}, {store.attempt_count():,} attempts")
        st.code(str(path), language=None, wrap_lines=True)
    with right:
        with st.form("open_db", border=False):
            new = st.text_input("Open another database file", value=str(path), key="db_input",
                                help="A .duckdb file; a new one is created if it does not exist. "
                                     "Default: the STAR_DB environment variable (star app --db), else ./star.duckdb.")
            if st.form_submit_button("Open"):
                try:
                    opened = ui.open_db(new)
                except StarError as exc:
                    st.error(ui.md_escape(f"Cannot open {new}: {exc}"))
                else:
                    st.toast(ui.md_escape(f"Opened {opened}"))
                    st.rerun()


def _runs_overview() -> None:
    store = ui.get_store()
    runs = store.list_runs()
    st.subheader("Runs")
    if runs.empty:
        st.info("No runs in this database yet.")
        st.page_link("pages/runs.py", label="Start a run", icon=":material/play_arrow:")
        return
    active = runs.status.isin(ACTIVE_STATUSES).any()

    @st.fragment(run_every=3 if active else None)
    def table() -> None:
        runs = store.list_runs()
        shown = runs_overview(runs, run_queue.status_labels(store, runs))
        st.dataframe(shown, hide_index=True, width="stretch")
        if active and not runs.status.isin(ACTIVE_STATUSES).any():
            st.rerun()  # everything finished: redraw the page without polling

    table()
    ids = list(runs.id[::-1])
    labels = store.run_labels()
    left, right = st.columns([2, 3])
    run_id = left.selectbox("Open a run", ids, format_func=lambda r: labels.get(r, f"#{r}"), key="overview_run")
    with right:
        st.write("")
        cols = st.columns(3)
        cols[0].page_link("pages/runs.py", label="Watch / resume", icon=":material/play_arrow:", query_params={"run": run_id})
        cols[1].page_link("pages/browse.py", label="Browse rationales", icon=":material/search:", query_params={"run": run_id})
        cols[2].page_link("pages/accuracy.py", label="Accuracy", icon=":material/show_chart:", query_params={"run": run_id})


def _import_box() -> None:
    """`star import` with a file picker: another framework's generations become a run (docs/import.md)."""
    from star_core.core.states import IMPORT_FORMATS
    from star_core.engine.importing import import_run, upload_folder

    with st.expander("Import a run made elsewhere (TRL GRPO, verl, Inspect)"):
        st.caption("Completions another framework wrote become a run every page reads: its steps are iterations, "
                   "each prompt a problem. Importing again adds only new steps. See docs/import.md.")
        with st.form("import_run"):
            fmt = st.selectbox("Format", IMPORT_FORMATS, key="import_format",
                               help="trl-grpo: completions_*.parquet; verl: {step}.jsonl; inspect: .eval or .json logs")
            files = st.file_uploader("Files", accept_multiple_files=True, key="import_files",
                                     type=["parquet", "jsonl", "eval", "json"])
            path = st.text_input("…or a file or folder on this machine", key="import_path")
            name = st.text_input("Run name", key="import_name", help="Uploads are kept under this name: upload a new "
                                 "step's file under the same name to add it to the run.")
            task = st.text_input("Task (optional)", key="import_task", help="Judge with this task's answer check "
                                 "against the gold answer: arithmetic, gsm8k, commonsenseqa, jsonl:answer_type=number")
            correct = st.text_input("Correct when (optional)", key="import_correct", help="COLUMN>THRESHOLD, e.g. acc>0.5")
            submitted = st.form_submit_button("Import")
        if not submitted:
            return
        store = ui.get_store()
        source = path.strip()
        if files:
            source = str(upload_folder(store, name.strip() or fmt, [(f.name, f.getvalue()) for f in files]))
        if not source:
            st.error("Choose files or give a path.")
            return
        bar = st.progress(0.0, text="importing")
        try:
            outcome = import_run(store, fmt, source, name=name.strip() or None, task=task.strip() or None,
                                 correct=correct.strip() or None,
                                 on_progress=lambda done, total: bar.progress(done / max(total, 1), text=f"{done:,} of {total:,} rows"))
        except StarError as exc:
            st.error(ui.md_escape(str(exc)))
            return
        for line in outcome.skipped:
            st.warning(ui.md_escape(f"skipped: {line}"))
        if outcome.rows:
            st.success(ui.md_escape(f"run {outcome.run_id}: {outcome.rows:,} completions from {outcome.files} file(s)"))
        else:
            st.info("Nothing new: every row of these files is already stored.")


pages = [
    st.Page(overview, title="Overview", icon=":material/home:", default=True),
    st.Page("pages/runs.py", title="Runs", icon=":material/play_circle:"),
    st.Page("pages/browse.py", title="Browse rationales", icon=":material/search:"),
    st.Page("pages/accuracy.py", title="Accuracy", icon=":material/show_chart:"),
    st.Page("pages/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
    st.Page("pages/trajectories.py", title="Trajectories", icon=":material/timeline:"),
    st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
]
# Pages built beside this one; listed when present.
for file, title, icon in (("pages/audit.py", "Audit", ":material/fact_check:"), ("pages/exemplars.py", "Exemplars", ":material/library_books:")):
    if (HERE / file).exists():
        pages.append(st.Page(file, title=title, icon=icon))

st.session_state[ui.NAV_KEY] = True
navigation = st.navigation(pages)
redirect = st.session_state.pop(ui.REDIRECT_KEY, None)
if redirect:  # a page first opened outside this navigation (see ui.require_app)
    st.switch_page(redirect[0], query_params=redirect[1] or None)
ui.sidebar_db()
navigation.run()
