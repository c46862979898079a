"""Model and user text is shown as text on every page: hostile Markdown and HTML in a question, a
rationale, an answer, a run name, an audit note and tag, an exemplar and a set's note never becomes a
link, an image, bold text, math or an HTML tag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from app_helpers import assert_no_error, open_page
from pages._ui import md_escape, safe_figure
from star_core.core.config import RunConfig
from star_core.store import AttemptRow, ExemplarItem, Store
from star_core.tasks.base import Problem

# Each would render as markup if shown as Markdown (or, in a chart, as HTML).
HOSTILE = {
    "link": "[ext](https://example.com/x)",
    "image": "![im](http://example.com/i.png)",
    "bold": "**md**",
    "html": "<b>x</b>",
    "math": "$x$",
}
TEXT = " ".join(HOSTILE.values())


# --- the escaping itself ------------------------------------------------------------


@pytest.mark.parametrize("raw, escaped", [
    ("[ext](https://example.com/x)", r"\[ext\]\(https\://example\.com/x\)"),
    ("![im](http://example.com/i.png)", r"\!\[im\]\(http\://example\.com/i\.png\)"),
    ("**md**", r"\*\*md\*\*"),
    ("__md__", r"\_\_md\_\_"),
    ("<b>x</b>", r"\<b\>x\</b\>"),
    ("$x$", r"\$x\$"),
    ("`code`", r"\`code\`"),
    ("# heading", r"\# heading"),
    ("- item", r"\- item"),
    ("1. item", r"1\. item"),
    ("> quote", r"\> quote"),
    ("~~gone~~", r"\~\~gone\~\~"),
    (":red[x] :material/home:", r"\:red\[x\] \:material/home\:"),
    ("a | b", r"a \| b"),
    ("&amp;", r"\&amp;"),
    ("C:\\dir", r"C\:\\dir"),  # a backslash stays a backslash
    ("plain words 42", "plain words 42"),
])
def test_md_escape_escapes_every_markup_character(raw, escaped):
    assert md_escape(raw) == escaped


def test_md_escape_keeps_line_breaks_or_joins_them_for_labels():
    assert md_escape("one\ntwo\r\nthree") == "one  \ntwo  \nthree"
    assert md_escape("one\ntwo", one_line=True) == "one two"
    assert md_escape(None) == "" and md_escape(7) == "7"


def test_safe_figure_escapes_names_hover_values_and_facet_titles():
    import pandas as pd
    import plotly.express as px

    df = pd.DataFrame({"x": [0, 1], "y": [0.5, 0.6], "run": [TEXT, TEXT], "panel": [TEXT, TEXT]})
    fig = safe_figure(px.line(df, x="x", y="y", color="run", facet_col="panel", hover_data={"run": True}))
    strings = chart_strings(fig.to_json())
    assert not any("<b>x</b>" in t for t in strings)
    escaped = TEXT.replace("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;")
    assert fig.data[0].name == escaped  # the legend; plotly reads no Markdown: only HTML matters
    assert escaped in fig.data[0].customdata[0]  # the hover values
    assert [a.text for a in fig.layout.annotations] == [f"panel={escaped}"]  # the facet title


# --- every page, on a database full of hostile text -----------------------------------


def _seed(path: Path) -> Store:
    store = Store(path).init()
    run_id = store.create_run(RunConfig(name=TEXT, train_size=2, eval_size=2))
    problems = [
        Problem("t1", f"t1 {TEXT}", "7", "train", 1),
        Problem("t2", f"t2 {TEXT}", "9", "train", 1),
        Problem("e1", f"e1 {TEXT}", TEXT, "eval", 1),  # a free-text gold answer (jsonl exact/regex tasks)
        Problem("e2", f"e2 {TEXT}", "5", "eval", 2),
    ]
    store.save_problems(run_id, problems)
    prompt_id = store.prompt_id(f"Question: {TEXT}\nAnswer: {TEXT}\n\n")

    def attempt(p: Problem, iteration: int, kind: str, correct: bool) -> AttemptRow:
        return AttemptRow(
            run_id=run_id, iteration=iteration, problem_id=p.id, kind=kind, sample=0, prompt_id=prompt_id,
            question_prompt=f"Question: {p.question}\nAnswer:", hint=TEXT if kind == "rationalized" else None,
            completion=f" {TEXT} The answer is {TEXT}.\n\n", rationale=f"{TEXT} The answer is {TEXT}.", predicted=TEXT,
            correct=correct, verified=False if correct else None, verify_reason=f"step {TEXT} does not hold",
            prompt_tokens=10, new_tokens=5, seconds=0.1, hint_leak=False if kind == "rationalized" else None,
        )

    store.add_attempts([attempt(p, 0, "eval", p.id == "e1") for p in problems[2:]])
    store.set_iteration_phase(run_id, 0, "done")
    store.add_attempts([attempt(problems[0], 1, "generated", True), attempt(problems[1], 1, "generated", False),
                        attempt(problems[1], 1, "rationalized", True)]
                       + [attempt(p, 1, "eval", True) for p in problems[2:]])
    kept = [c.attempt_id for c in store.attempts_of(run_id, 1, "generated") if c.correct]  # the rationalized one is rejected
    store.mark_training(run_id, 1, kept)
    store.set_iteration_phase(run_id, 1, "done", kept=len(kept), steps=2, train_loss=1.5)
    with store.db.write() as con:  # a cancelled run whose message quotes user text
        con.execute("UPDATE runs SET status = 'cancelled', error = ? WHERE id = ?", [f"stopped: {TEXT}", run_id])
    for a in kept:
        store.save_audit(a, "sound", [f"tag {TEXT}"], f"note {TEXT}", f"ada {TEXT}")
    store.create_exemplar_set("hostile", "arithmetic", [
        ExemplarItem("12 + 35", f"12 + 35 = {TEXT}.", "47"),  # fails the step check, which quotes the step
        ExemplarItem("3 + 4", "3 + 4 = 7.", "7", [("A", TEXT), ("B", "seven")]),
    ], note=f"set note {TEXT}")
    return store


@pytest.fixture
def hostile_db(tmp_path) -> Path:
    _seed(tmp_path / "hostile.duckdb")
    return tmp_path / "hostile.duckdb"


# Elements whose text Streamlit renders as Markdown; st.code, st.text and tables show text as it is.
_PLAIN = {"code", "text", "arrow_data_frame", "dataframe", "json", "plotly_chart", "exception", "html"}
_OPTIONS = {"options", "default", "rawValues", "value", "formattedValue", "rawValue", "defaultValue", "values"}


def _walk(node):
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values():
        yield from _walk(child)


def _strings(value, key=""):
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)


def rendered_markdown(at) -> list[tuple[str, str, str]]:
    """(element type, field, text) of every string the page hands to Streamlit's Markdown renderer."""
    out = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", "")
        if proto is None or kind in _PLAIN:
            continue
        fields = MessageToDict(proto, preserving_proto_field_name=False)
        for key, text in _strings(fields):
            if kind == "metric" and key in ("label", "body", "help"):
                out.append((kind, key, text))
            elif kind != "metric" and key in _OPTIONS:
                continue  # a select widget's options are plain text
            else:
                out.append((kind, key, text))
    return out


def plotly_specs(at) -> list[str]:
    return [node.proto.spec for node in _walk(at._tree) if getattr(node, "type", "") == "plotly_chart"]


def chart_strings(spec: str) -> list[str]:
    """Every string in a figure's JSON (which writes < and & as \\u escapes)."""
    return [text for _, text in _strings(json.loads(spec))]


def assert_shown_as_text(at, page: str, must_show: int = 1) -> None:
    texts = rendered_markdown(at)
    for kind, key, text in texts:
        for what, raw in HOSTILE.items():
            assert raw not in text, f"{page}: {kind}.{key} renders the {what} {raw!r} as markup: {text!r}"
    shown = [t for _, _, t in texts if md_escape(HOSTILE["link"]) in t]
    assert len(shown) >= must_show, f"{page}: expected the hostile text, escaped, at least {must_show}x; got {texts}"
    for spec in plotly_specs(at):
        assert not any("<b>x</b>" in t for t in chart_strings(spec)), f"{page}: a chart renders <b>x</b> as HTML"


def _metric_values(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_overview_and_runs_pages_show_run_names_and_errors_as_text(hostile_db, monkeypatch):
    at = open_page(None, monkeypatch, hostile_db)
    # the overview lists run names only in its table and picker (plain text): nothing escaped is needed there
    for kind, key, text in rendered_markdown(at):
        assert all(raw not in text for raw in HOSTILE.values()), (kind, key, text)
    at = open_page("pages/runs.py", monkeypatch, hostile_db, query={"run": "1"})
    assert_shown_as_text(at, "runs")  # the cancelled message quotes the stored error
    assert any("stopped" in e.value and md_escape(TEXT) in e.value for e in at.info)


def _attempt_id(db: Path, problem_id: str, kind: str) -> int:
    with Store(db).db.read() as con:
        return con.execute("SELECT id FROM attempts WHERE problem_id = ? AND kind = ? AND iteration = 1",
                           [problem_id, kind]).fetchone()[0]


def test_browse_page_shows_the_opened_attempt_as_text(hostile_db, monkeypatch):
    at = open_page("pages/browse.py", monkeypatch, hostile_db)
    at.selectbox(key="browse_attempt").set_value(_attempt_id(hostile_db, "e1", "eval")).run()
    assert_no_error(at)
    assert_shown_as_text(at, "browse", must_show=3)  # caption (run name), extracted answer, gold answer
    values = _metric_values(at)
    assert values["Extracted answer"] == values["Gold answer"] == md_escape(TEXT, one_line=True)
    assert any(md_escape(TEXT) in c.value for c in at.caption)  # the run name in the attempt's caption
    # a rejected rationale: why it was rejected quotes the step check, which quotes model text
    at.selectbox(key="browse_attempt").set_value(_attempt_id(hostile_db, "t2", "rationalized")).run()
    assert_shown_as_text(at, "browse", must_show=3)
    assert any("a step does not hold" in i.value and md_escape(TEXT) in i.value for i in at.info)


def test_audit_page_shows_item_labels_and_tags_as_text(hostile_db, monkeypatch):
    at = open_page("pages/audit.py", monkeypatch, hostile_db)
    assert_shown_as_text(at, "audit queue", must_show=0)  # model text is in st.code/st.text here
    at.segmented_control(key="a_view").set_value("What the audits say").run()
    assert_no_error(at)
    assert_shown_as_text(at, "audit statistics", must_show=0)


def test_exemplars_page_shows_set_notes_exemplars_and_check_errors_as_text(hostile_db, monkeypatch):
    at = open_page("pages/exemplars.py", monkeypatch, hostile_db)
    assert_shown_as_text(at, "exemplars", must_show=4)  # the set's note, both check errors, the choices
    errors = [e.value for e in at.error]
    assert any(md_escape(TEXT, one_line=True) in e for e in errors)  # the check error quoting the step, escaped
    assert any(md_escape(f"set note {TEXT}") == c.value for c in at.caption)


def test_accuracy_page_charts_show_run_names_as_text(hostile_db, monkeypatch):
    at = open_page("pages/accuracy.py", monkeypatch, hostile_db, query={"run": "1"})
    assert_shown_as_text(at, "accuracy", must_show=0)
    strings = [t for spec in plotly_specs(at) for t in chart_strings(spec)]
    assert any("&lt;b&gt;x&lt;/b&gt;" in t for t in strings)  # the run's name is in the legend, escaped


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/trajectories.py"])
def test_other_pages_with_run_names_show_them_as_text(hostile_db, monkeypatch, page):
    at = open_page(page, monkeypatch, hostile_db, query={"run": "1"})
    assert_shown_as_text(at, page, must_show=0)
