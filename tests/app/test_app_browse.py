"""The browse page: filters narrow the table, search, paging, one attempt in full, and the
side-by-side view, with model text never rendered as HTML."""

from __future__ import annotations

import pytest

from app_helpers import assert_no_crash, assert_no_error, finished_run_db, open_page, texts, unescaped
from star_core.engine.filtering import FilterRule, rule_for
from star_core.analysis.present import diff_html
from star_core.engine.filtering import why_kept
from star_core.store import AttemptFilter, AttemptRow, Store

PAGE = "pages/browse.py"


@pytest.fixture
def db(tmp_path, tmp_path_factory, tiny_model):
    return finished_run_db(tmp_path_factory, tiny_model, tmp_path / "b.duckdb")


def table(at):
    return at.dataframe[0].value


def test_filters_narrow_the_table(db, monkeypatch):
    store = Store(db)
    total = store.attempt_count()
    at = open_page(PAGE, monkeypatch, db)
    assert len(table(at)) == min(total, 50)
    assert f"**{total:,}** attempts match" in texts(at)

    at.multiselect(key="f_kinds").set_value(["eval"]).run()
    evals = table(at)
    assert set(evals.kind) == {"eval"} and 0 < len(evals) < total
    assert f"**{len(evals)}** attempts match" in texts(at)

    at.multiselect(key="f_iterations").set_value([1]).run()
    assert set(table(at).iteration) == {1} and set(table(at).kind) == {"eval"}

    at.multiselect(key="f_kinds").set_value(["rationalized", "generated"]).run()
    at.selectbox(key="f_correct").set_value("no").run()
    narrowed = table(at)
    assert set(narrowed.kind) <= {"rationalized", "generated"} and not narrowed.correct.any()

    # A search for a question's text finds exactly that question's attempts.
    question = narrowed.question.iloc[0]
    at.multiselect(key="f_kinds").set_value([]).run()
    at.multiselect(key="f_iterations").set_value([]).run()
    at.selectbox(key="f_correct").set_value("any").run()
    at.text_input(key="f_search").set_value(question).run()
    found = table(at)
    assert set(found.question) == {question}
    expected = store.browse_attempts(AttemptFilter(search=question)).total
    assert len(found) == expected

    at.text_input(key="f_search").set_value("no attempt says this").run()
    assert not at.dataframe and any("No attempt matches" in i.value for i in at.info)


def test_sorting_and_pages(db, monkeypatch):
    at = open_page(PAGE, monkeypatch, db)
    at.selectbox(key="f_size").set_value(25).run()
    first = table(at)
    assert list(first.attempt_id) == sorted(first.attempt_id, reverse=True)
    at.number_input(key="f_page").set_value(2).run()
    second = table(at)
    assert second.attempt_id.max() < first.attempt_id.min()
    at.toggle(key="f_desc").set_value(False).run()  # a new sort goes back to page 1
    assert at.number_input(key="f_page").value == 1
    assert table(at).attempt_id.iloc[0] == 1


def test_an_attempt_in_full_and_side_by_side(db, monkeypatch):
    store = Store(db)
    # A wrong rationalized attempt of a training question (the tiny random model writes many).
    rationalized = store.browse_attempts(AttemptFilter(kinds=["rationalized"], iterations=[1], correct=False)).rows
    assert not rationalized.empty
    target = rationalized.iloc[0]
    # A rationale that is HTML must show as text.
    evil = '<script>alert("x")</script><b>bold</b> & 2 + 2'
    with store.db.write() as con:
        con.execute("UPDATE attempts SET rationale = ? WHERE id = ?", [evil, int(target.attempt_id)])

    at = open_page(PAGE, monkeypatch, db)
    at.multiselect(key="f_kinds").set_value(["rationalized"]).run()
    at.selectbox(key="browse_attempt").set_value(int(target.attempt_id)).run()
    assert_no_error(at)
    page = texts(at)
    assert f"Attempt #{target.attempt_id}" in page
    assert evil in [c.value for c in at.code]  # the full rationale, verbatim, as code
    assert target.question in [c.value for c in at.code]
    assert "(The answer is" in page  # the hint shown to the model
    assert any(m.label == "Gold answer" and m.value == target.gold_answer for m in at.metric)
    # Its verdict: a wrong answer is rejected whatever the filter; nothing says it was kept.
    verdicts = [unescaped(x.value) for x in list(at.info) + list(at.success)
                if unescaped(x.value).startswith(("Rejected", "Kept", "Not kept"))]
    assert verdicts == ["Rejected: the extracted answer is not the gold answer."]

    # Side by side: by default the self-generated vs the rationalized rationale of the same iteration.
    # A training question: generated in iterations 1 and 2 (never in iteration 0, which only evaluates), and
    # rationalized in iteration 1, where it was wrong.
    across = [d.value for d in at.dataframe if "sample" in d.value.columns][0]
    assert set(across.iteration) == {1, 2}
    assert {(1, "generated"), (1, "rationalized"), (2, "generated")} <= set(zip(across.iteration, across.kind))
    assert set(across.kind) <= {"generated", "rationalized"}
    left = at.selectbox(key=f"cmp_{target.attempt_id}_l")
    right = at.selectbox(key=f"cmp_{target.attempt_id}_r")
    assert "iteration 1 · generated" in left.format_func(left.value)
    assert "iteration 1 · rationalized" in right.format_func(right.value)
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 2
    assert "&lt;script&gt;" in bodies[1] and "<script>" not in "".join(bodies)


def test_add_the_opened_attempt_to_an_exemplar_set(db, monkeypatch):
    store = Store(db)
    generated = store.browse_attempts(AttemptFilter(kinds=["generated"]), sort="attempt_id", descending=False).rows
    first, second, bad = (int(i) for i in generated.attempt_id[:3])
    # Rationales a tiny random model would not write: two sound ones and one whose step is wrong.
    with store.db.write() as con:
        for attempt_id, result in ((first, "gold"), (second, "gold"), (bad, "gold + 1")):
            con.execute(f"UPDATE attempts a SET rationale = p.question || ' = ' || ({result.replace('gold', 'p.answer::BIGINT')}) || '.' "
                        "FROM problems p WHERE p.run_id = a.run_id AND p.problem_id = a.problem_id AND a.id = ?", [attempt_id])

    at = open_page(PAGE, monkeypatch, db)
    at.multiselect(key="f_kinds").set_value(["generated"]).run()
    at.selectbox(key="browse_attempt").set_value(first).run()
    names = at.selectbox(key="b_set_name")
    assert names.options == ["arithmetic-default"] and names.value == "arithmetic-default"  # the run's set; none curated yet
    # A new name, typed: the browser sends the typed text as the value (AppTest only picks listed options).
    names.options.append("curated")
    names.set_value("curated").run()
    assert at.selectbox(key="b_set_name").options == ["arithmetic-default", "curated"]
    at.button(key="b_add_to_set").click().run()
    assert_no_error(at)
    assert unescaped(at.success[-1].value) == "Added to a new set, curated@1."
    curated = store.find_exemplar_set("curated")
    assert [it.source_attempt_id for it in curated.items] == [first]
    assert curated.items[0].answer == store.attempt_detail(first)["gold_answer"]

    at.button(key="b_add_to_set").click().run()  # twice: no duplicate
    assert unescaped(at.success[-1].value) == "Already in curated@1: nothing changed."

    # A run uses curated@1: adding another attempt makes curated@2, and says so.
    store.use_exemplar_set(1, curated.id)
    at.selectbox(key="browse_attempt").set_value(second).run()
    assert at.selectbox(key="b_set_name").value == "curated"  # the name picked before is kept
    at.button(key="b_add_to_set").click().run()
    assert "Added to curated@2, a new version: curated@1 is used by a run" in unescaped(at.success[-1].value)
    assert [it.source_attempt_id for it in store.find_exemplar_set("curated").items] == [first, second]
    assert [it.source_attempt_id for it in store.exemplar_set(curated.id).items] == [first]  # the run's version is untouched

    # An exemplar that fails the task's step check is refused with the reason, and nothing changes.
    at.selectbox(key="browse_attempt").set_value(bad).run()
    at.button(key="b_add_to_set").click().run()
    assert_no_crash(at)
    assert not at.success
    assert len(at.error) == 1, [unescaped(e.value) for e in at.error]  # the refusal, and nothing else
    assert unescaped(at.error[0].value).startswith("Not added: ") and "step" in at.error[0].value
    assert store.find_exemplar_set("curated").label == "curated@2" and len(store.find_exemplar_set("curated").items) == 2


def test_diff_highlights_and_escapes():
    left, right = diff_html("1 + 2 = 3. The answer is 3.", "1 + 2 = <b>4</b>. The answer is 4.")
    assert "<b>" not in right and "&lt;b&gt;4&lt;/b&gt;" in right
    assert "line-through" in left and "3." in left  # removed words struck out on the left
    assert 'rgba(60, 200, 90' in right  # added words highlighted on the right


VERIFIED = FilterRule(require_steps=True)
ANSWER = FilterRule(require_steps=False)


def test_why_kept_explains_each_case():
    assert why_kept({"kind": "eval"}, VERIFIED).startswith("Evaluation")
    assert why_kept({"kind": "generated", "correct": True, "verified": True, "used_for_training": True},
                    VERIFIED).startswith("Kept")
    assert why_kept({"kind": "generated", "correct": False}, VERIFIED).startswith("Rejected: the extracted answer")
    assert "step" in why_kept({"kind": "rationalized", "correct": True, "verified": False, "verify_reason": "2+2=5"},
                              VERIFIED)
    assert "hint" in why_kept({"kind": "rationalized", "correct": True, "verified": True, "hint_leak": True}, VERIFIED)


def test_why_kept_follows_the_runs_filter():
    """Under --filter answer a failed step rejects nothing: the sentence must not blame the step."""
    wrong_step = {"kind": "generated", "correct": True, "verified": False, "verify_reason": "step 1 '3' makes 3, not 4"}
    assert "a step does not hold" in why_kept(wrong_step, VERIFIED)
    assert why_kept(wrong_step, ANSWER).startswith("Not kept: correct, but a duplicate")
    leak = {"kind": "rationalized", "correct": True, "verified": None, "hint_leak": True}
    assert "hint leak" in why_kept(leak, ANSWER)
    assert "hint leak" not in why_kept(leak, FilterRule(require_steps=False, keep_hint_leaks=True))


def test_the_rule_a_run_is_explained_by_is_the_one_it_filtered_with():
    from star_core.core.config import RunConfig

    assert rule_for(RunConfig(filter="answer"), True) == ANSWER
    assert rule_for(RunConfig(filter="verified"), True) == VERIFIED
    assert rule_for(RunConfig(filter="verified"), False) == ANSWER  # a task that cannot check steps


def test_store_browse_queries_page_and_count(tmp_path):
    """The SQL behind the page on a hand-made store: filters, search escaping, paging, count."""
    from star_core.core.config import RunConfig
    from star_core.tasks.base import Problem

    store = Store(tmp_path / "q.duckdb").init()
    run_id = store.create_run(RunConfig(name="q"))
    store.save_problems(run_id, [Problem(f"p{i}", f"{i} + 1 = ?", str(i + 1), "train", 1 + i % 2) for i in range(10)])
    prompt = store.prompt_id("prefix")
    rows = [AttemptRow(run_id, it, f"p{i}", "generated", 0, prompt, "q", None, "c", f"{i} + 1 = {i + 1}. 100%_sure",
                       str(i + 1), i % 2 == 0, None, "", 1, 1, 0.1) for it in (1, 2) for i in range(10)]
    store.add_attempts(rows)
    page = store.browse_attempts(AttemptFilter(correct=True), limit=3, offset=0)
    assert page.total == 10 and len(page.rows) == 3 and page.rows.correct.all()
    assert list(page.rows.attempt_id) == sorted(page.rows.attempt_id, reverse=True)
    assert store.browse_attempts(AttemptFilter(difficulties=[2], iterations=[2])).total == 5
    assert store.browse_attempts(AttemptFilter(search="100%_SURE")).total == 20  # % and _ are literal
    assert store.browse_attempts(AttemptFilter(search="100%xsure")).total == 0
    assert store.browse_attempts(AttemptFilter(search="3 + 1 = ?")).total == 2  # in the question
    assert store.browse_attempts(AttemptFilter(verified="unchecked")).total == 20
    last = store.browse_attempts(limit=3, offset=18, sort="iteration", descending=False)
    assert len(last.rows) == 2 and set(last.rows.iteration) == {2}


def test_choices_of_reads_problem_choices_json():
    from star_core.analysis.present import choices_of

    assert choices_of('[["A", "a dog"], ["B", "<b>a cat</b>"]]') == [("A", "a dog"), ("B", "<b>a cat</b>")]
    assert choices_of(None) == [] and choices_of("") == [] and choices_of(float("nan")) == []
    assert choices_of("not json") == [("?", "not json")]
