"""Several auditors: labels per auditor, the agreement statistics (against hand-computed values and the
libraries researchers cite), second-opinion and adjudicate queues, `star audit agreement` and `star audit export`."""

from __future__ import annotations

import json
import math
import random

import duckdb
import pytest

from app_helpers import assert_no_error, one_error_line, page
from audit_seed import seed
from star_core.analysis.agreement import (Agreement, QueueMode, agreement, kappa, kappa_interval, krippendorff_alpha_nominal,
                                          sound_share, verifier_agreement)
from star_core.cli.commands import main
from star_core.store.migrations import m008_labels_per_auditor
from star_core.store import QueueFilter, Store
from star_core.store.audits import AuditError

RATINGS = ("sound", "flawed", "wrong")


# --- the statistics, by hand -------------------------------------------------------------------


def test_kappa_of_a_hand_computed_three_category_table():
    # Table (rows A, columns B): [[4, 1, 0], [1, 2, 0], [0, 0, 2]] over 10 items.
    # p_o = 8/10; margins 5, 3, 2 on both sides: p_e = (25 + 9 + 4) / 100 = 0.38; kappa = 0.42 / 0.62 = 21/31.
    a = ["s"] * 5 + ["f"] * 3 + ["w"] * 2
    b = ["s"] * 4 + ["f"] + ["s"] + ["f"] * 2 + ["w"] * 2
    assert kappa(a, b) == pytest.approx(21 / 31)
    assert kappa(a, a) == 1.0
    assert kappa(["s", "f"], ["f", "s"]) == pytest.approx(-1.0)  # p_o 0, p_e 1/2
    assert math.isnan(kappa([], []))
    assert math.isnan(kappa(["s"] * 4, ["s"] * 4))  # one category from both: chance agreement is 1, kappa undefined


def test_alpha_of_krippendorffs_own_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
    # values 1-5 with gaps; nominal alpha = 0.743 (unit 12 has one value and is not pairable).
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*observers)]
    assert round(krippendorff_alpha_nominal(units), 3) == 0.743
    # Two raters, hand-computed: units (s, s), (s, f), (f, f). Coincidences: o_ss = 2, o_ff = 2, o_sf = o_fs = 1;
    # n = 6, n_s = n_f = 3: alpha = 1 - 5 * 2 / (36 - 18) = 4/9.
    assert krippendorff_alpha_nominal([["s", "s"], ["s", "f"], ["f", "f"]]) == pytest.approx(4 / 9)
    assert math.isnan(krippendorff_alpha_nominal([["s", "s"], ["s"]]))  # no variation
    assert math.isnan(krippendorff_alpha_nominal([["s"], ["f"]]))  # nothing pairable


def test_kappa_interval_brackets_kappa_and_is_reproducible():
    rng = random.Random(3)
    a = [rng.choice(RATINGS) for _ in range(40)]
    b = [x if rng.random() < 0.7 else rng.choice(RATINGS) for x in a]
    low, high = kappa_interval(a, b)
    assert low < kappa(a, b) < high and -1 <= low and high <= 1
    assert (low, high) == kappa_interval(a, b)  # a fixed seed: the same labels print the same interval
    wider = kappa_interval(a[:10], b[:10])
    assert wider[1] - wider[0] > high - low  # fewer items, a wider interval
    assert all(math.isnan(x) for x in kappa_interval(["s"], ["s"]))


def test_agreement_lists_every_pair_and_leaves_undefined_figures_out():
    labels = {1: {"ada": "sound", "bob": "sound"}, 2: {"ada": "flawed", "bob": "sound"}, 3: {"ada": "wrong", "cy": "wrong"},
              4: {"cy": "sound"}}
    result = agreement(labels)
    assert result.auditors == ["ada", "bob", "cy"]
    pairs = {(p.a, p.b): p for p in result.pairs}
    assert pairs["ada", "bob"].n == 2 and pairs["ada", "bob"].kappa == pytest.approx(0.0)  # bob: always sound
    assert pairs["ada", "cy"].n == 1 and pairs["ada", "cy"].kappa is None  # one item, one category: undefined
    assert pairs["bob", "cy"].n == 0 and pairs["bob", "cy"].kappa is None
    assert result.alpha_n == 3  # item 4 has one label
    assert agreement({}) == Agreement([], [], None, 0)


# --- the statistics, against the libraries --------------------------------------------------------


def test_kappa_and_alpha_agree_with_sklearn_and_krippendorff():
    # The test extra's (pyproject.toml): a missing one fails here rather than skipping the check.
    import krippendorff
    import numpy as np
    import sklearn.metrics as sklearn
    rng = random.Random(0)
    for trial in range(30):
        n = rng.randint(2, 60)
        a = [rng.choice(RATINGS) for _ in range(n)]
        b = [x if rng.random() < rng.random() else rng.choice(RATINGS) for x in a]
        if len(set(a) | set(b)) < 2:
            continue
        assert kappa(a, b) == pytest.approx(sklearn.cohen_kappa_score(a, b), abs=1e-12), (a, b)
        # Three raters with gaps: alpha over the units with two or more values.
        c = [x if rng.random() < 0.5 else None for x in b]
        rows = [a, b, c]
        codes = {r: i for i, r in enumerate(RATINGS)}
        data = np.array([[np.nan if v is None else codes[v] for v in row] for row in rows], dtype=float)
        units = [[v for v in unit if v is not None] for unit in zip(*rows)]
        ours = krippendorff_alpha_nominal(units)
        if math.isnan(ours):
            continue
        assert ours == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-12)


# --- the store ------------------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path):
    return seed(tmp_path / "agree.duckdb", problems_per_iteration=20)


def test_two_auditors_keep_a_label_each_and_the_statistics_count_both(seeded):
    store, run_id = seeded
    kept = store.audit_queue(QueueFilter(kept=True, order="oldest"))
    first = kept[0]
    store.save_audit(first, "sound", [], "", "ada")
    store.save_audit(first, "flawed", ["lucky guess"], "", "bob")
    assert store.save_audit(first, "sound", [], "", "ada") is None  # ada's own label is unchanged by bob's
    assert store.audit_item(first, "ada").rating == "sound" and store.audit_item(first, "bob").rating == "flawed"
    assert store.audit_item(first, "bob").other_auditors == 1
    with store.db.read() as con:
        rows = con.execute("SELECT auditor, rating FROM v_audits WHERE attempt_id = ? ORDER BY auditor", [first]).fetchall()
        agree = con.execute("SELECT auditors, ratings, agree FROM v_audit_agreement WHERE attempt_id = ?", [first]).fetchone()
    assert rows == [("ada", "sound"), ("bob", "flawed")]
    assert agree == (2, [{"auditor": "ada", "rating": "sound"}, {"auditor": "bob", "rating": "flawed"}], False)
    item = store.audit_item(first)
    row = sound_share(store, run_id).set_index(["iteration", "kind"]).loc[(item.iteration, item.kind)]
    assert (row.audited, row.sound, row.flawed, row.audited_items, row.adjudicated) == (2, 1, 1, 1, 0)  # both labels count

    # An adjudication: counted instead of the two labels it settles, marked as such.
    store.save_audit(kept[1], "sound", [], "", "ada")
    with pytest.raises(AuditError, match="labels of 1 auditor"):
        store.save_audit(kept[1], "sound", [], "", "cy", adjudicated=True)
    store.save_audit(first, "flawed", [], "steps skip the carry", "cy", adjudicated=True)
    row = sound_share(store, run_id).set_index(["iteration", "kind"]).loc[(item.iteration, item.kind)]
    assert (row.audited, row.sound, row.flawed, row.adjudicated) == (2, 1, 1, 1)  # the adjudication + kept[1]'s label
    adjudication = store.audit_item(first, "cy", adjudicating=True)
    assert (adjudication.rating, adjudication.adjudicated, adjudication.auditor) == ("flawed", True, "cy")
    assert agreement(store.agreement_labels()).auditors == ["ada", "bob"]  # an adjudication is no auditor's rating
    _, _, n = verifier_agreement(store, run_id)
    assert n == 2  # the same labels: the adjudication and kept[1]'s


def test_second_opinion_and_adjudicate_queues(seeded):
    store, _ = seeded
    queue = store.audit_queue(QueueFilter(order="oldest"))
    for a in queue[:5]:
        store.save_audit(a, "sound", [], "", "ada")
    second = QueueFilter(order="oldest", mode=QueueMode.SECOND_OPINION, auditor="bob")
    assert store.audit_queue(second) == queue[:5]
    assert store.audit_queue(QueueFilter(order="oldest", mode="second-opinion", auditor="ada")) == []
    for i, a in enumerate(queue[:5]):
        store.save_audit(a, "wrong" if i in (1, 3) else "sound", [], "", "bob")
    assert store.audit_queue(second) == []  # bob rated them all
    assert store.audited_among(queue[:5], QueueMode.SECOND_OPINION, "bob") == set(queue[:5])
    adjudicate = QueueFilter(order="oldest", mode=QueueMode.ADJUDICATE)
    assert store.audit_queue(adjudicate) == [queue[1], queue[3]]
    store.save_audit(queue[1], "flawed", [], "", "cy", adjudicated=True)
    assert store.audited_among([queue[1], queue[3]], QueueMode.ADJUDICATE) == {queue[1]}
    assert len(store.disagreements()) == 2
    with pytest.raises(AuditError, match="auditor's name"):
        QueueFilter(mode=QueueMode.SECOND_OPINION)
    with pytest.raises(AuditError, match="mode must be one of"):
        QueueFilter(mode="everyone")


def test_migrating_labels_from_before_auditors_keeps_every_label(tmp_path):
    path = tmp_path / "old.duckdb"
    store, _ = seed(path)
    attempt = store.audit_queue(QueueFilter(order="oldest"))[0]
    con = duckdb.connect(str(path))
    # Back to the schema before m008 (as a file written by the previous release), with its labels in it.
    con.execute("DROP VIEW v_audit_agreement")
    con.execute("""CREATE OR REPLACE VIEW v_audits AS
        SELECT a.*, au.id AS audit_id, au.rating, au.tags, au.note, au.auditor, au.created_at AS audited_at,
               (SELECT count(*) FROM audits h WHERE h.attempt_id = au.attempt_id) AS revisions
        FROM (SELECT * FROM audits QUALIFY row_number() OVER (PARTITION BY attempt_id ORDER BY id DESC) = 1) au
        JOIN v_attempts a ON a.attempt_id = au.attempt_id""")
    con.execute("ALTER TABLE audits DROP COLUMN adjudicated")
    old_columns = [r[0] for r in con.execute("DESCRIBE v_audits").fetchall()]
    for rating, auditor in (("sound", "ada"), ("flawed", "ada"), ("wrong", "bob")):
        con.execute("INSERT INTO audits (attempt_id, rating, auditor) VALUES (?, ?, ?)", [attempt, rating, auditor])
    # Later migrations are in the file already, so m008 is applied by hand, as migrate() would in order.
    m008_labels_per_auditor(con)
    con.close()
    store = Store(path).init()
    with store.db.read() as con:
        assert con.execute("SELECT count(*) FROM audits").fetchone()[0] == 3
        rows = con.execute("SELECT auditor, rating, revisions, adjudicated FROM v_audits ORDER BY auditor").fetchall()
        columns = [r[0] for r in con.execute("DESCRIBE v_audits").fetchall()]
    assert rows == [("ada", "flawed", 2, False), ("bob", "wrong", 1, False)]
    assert columns == old_columns + ["adjudicated"]  # what queried v_audits before still finds its columns
    assert store.agreement_labels() == {attempt: {"ada": "flawed", "bob": "wrong"}}


# --- the command line ---------------------------------------------------------------------------


def _forty_shared(store) -> tuple[list[str], list[str]]:
    """ada and bob rate the same 40 rationales (about 70% alike); cy rates 25 of them."""
    ids = store.audit_queue(QueueFilter(order="oldest", kind=None))[:40]
    assert len(ids) == 40
    rng = random.Random(7)
    a, b = [], []
    for i, attempt in enumerate(ids):
        x = rng.choice(RATINGS)
        y = x if rng.random() < 0.7 else rng.choice(RATINGS)
        store.save_audit(attempt, x, [], "", "ada")
        store.save_audit(attempt, y, [], "", "bob")
        if i < 25:
            store.save_audit(attempt, x if rng.random() < 0.8 else rng.choice(RATINGS), [], "", "cy")
        a.append(x)
        b.append(y)
    return a, b


def test_star_audit_agreement_matches_the_references(seeded, capsys):
    # The test extra's (pyproject.toml): a missing one fails here rather than skipping the check.
    import krippendorff
    import numpy as np
    import sklearn.metrics as sklearn
    store, run_id = seeded
    a, b = _forty_shared(store)
    assert main(["audit", "agreement", "--db", str(store.path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"auditors", "pairs", "alpha", "alpha_n"} and out["auditors"] == ["ada", "bob", "cy"]
    pair = next(p for p in out["pairs"] if (p["a"], p["b"]) == ("ada", "bob"))
    assert set(pair) == {"a", "b", "n", "kappa", "ci_low", "ci_high"} and pair["n"] == 40
    assert pair["kappa"] == pytest.approx(sklearn.cohen_kappa_score(a, b), abs=1e-12)
    assert pair["ci_low"] < pair["kappa"] < pair["ci_high"]
    labels = store.agreement_labels()
    codes = {r: i for i, r in enumerate(RATINGS)}
    data = np.array([[codes[labels[i][who]] if who in labels[i] else np.nan for i in sorted(labels)]
                     for who in ("ada", "bob", "cy")], dtype=float)
    assert out["alpha"] == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"),
                                         abs=1e-12)
    assert out["alpha_n"] == 40
    assert main(["audit", "agreement", "--db", str(store.path), "--run", str(run_id)]) == 0
    table = capsys.readouterr().out
    assert "ada vs bob" in table and f"{pair['kappa']:+.3f}" in table and "Krippendorff's alpha" in table


def test_star_audit_bad_input_is_one_line(seeded, tmp_path, capsys):
    store, _ = seeded
    assert main(["audit", "agreement", "--db", str(tmp_path / "none.duckdb")]) == 2
    one_error_line(capsys.readouterr().err, "does not exist")
    assert main(["audit", "agreement", "--db", str(store.path), "--run", "99"]) == 2
    one_error_line(capsys.readouterr().err, "no run 99")
    assert main(["audit", "export", "--db", str(store.path), "--out", str(tmp_path / "l.jsonl")]) == 2
    one_error_line(capsys.readouterr().err, "no audit labels")
    store.save_audit(store.audit_queue(QueueFilter())[0], "sound", [], "", "ada")
    assert main(["audit", "export", "--db", str(store.path), "--out", str(tmp_path / "labels.csv")]) == 2
    one_error_line(capsys.readouterr().err, ".jsonl or .parquet")


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_star_audit_export_loads_in_datasets_unchanged(seeded, tmp_path, suffix, capsys):
    import datasets  # the test extra's
    store, _ = seeded
    ids = store.audit_queue(QueueFilter(order="oldest"))[:3]
    store.save_audit(ids[0], "sound", ["skips a step"], "fine", "ada")
    store.save_audit(ids[0], "wrong", [], "", "bob")
    store.save_audit(ids[0], "flawed", ["lucky guess", "arithmetic slip"], "settled", "cy", adjudicated=True)
    store.save_audit(ids[1], "sound", [], "", "ada")
    out = tmp_path / f"labels.{suffix}"
    assert main(["audit", "export", "--db", str(store.path), "--out", str(out)]) == 0
    assert "wrote 4 audit labels" in capsys.readouterr().out
    loader = "json" if suffix == "jsonl" else "parquet"
    rows = datasets.load_dataset(loader, data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")).to_list()
    assert [(r["attempt_id"], r["auditor"], r["rating"], r["adjudicated"]) for r in rows] == [
        (ids[0], "ada", "sound", False), (ids[0], "bob", "wrong", False), (ids[0], "cy", "flawed", True),
        (ids[1], "ada", "sound", False)]
    first = rows[0]
    item = store.audit_item(ids[0])
    assert (first["question"], first["rationale"], first["answer"], first["gold"]) == (
        item.question, item.rationale, item.predicted_answer, item.gold_answer)
    assert rows[2]["tags"] == ["arithmetic slip", "lucky guess"] and rows[2]["note"] == "settled"
    assert {"question", "rationale", "answer", "gold", "rating", "tags", "note", "auditor", "adjudicated"} <= set(first)


# --- the page's statistics -----------------------------------------------------------------------


def test_the_audit_page_shows_kappa_alpha_and_the_disagreements(seeded, monkeypatch):
    store, _ = seeded
    a, b = _forty_shared(store)
    monkeypatch.setenv("STAR_DB", str(store.path))
    at = page("audit", view="What the audits say")
    assert_no_error(at)
    frames = [d.value for d in at.dataframe]
    pairs = next(f for f in frames if "auditor A" in f.columns)
    row = pairs[(pairs["auditor A"] == "ada") & (pairs["auditor B"] == "bob")].iloc[0]
    assert row["items both rated"] == 40 and row["Cohen's kappa"] == pytest.approx(kappa(a, b))
    alpha = agreement(store.agreement_labels()).alpha
    assert [m.value for m in at.metric if m.label == "Krippendorff's alpha"] == [f"{alpha:.2f}"]
    shown = next(f for f in frames if "adjudicated_rating" in f.columns)
    assert len(shown) == len(store.disagreements()) > 0
