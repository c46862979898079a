"""Audit labels, their history, the queue's filters and orders, and what the audits say."""

from __future__ import annotations

import math

import pytest

from app_helpers import wait_for
from star_core.analysis.agreement import cohen_kappa, sound_share, verifier_agreement, wilson_interval
from star_core.store import QueueFilter
from star_core.store.audits import AuditError


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook example
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_cohen_kappa():
    assert cohen_kappa(10, 0, 0, 10) == 1.0
    assert cohen_kappa(5, 5, 5, 5) == 0.0
    assert cohen_kappa(20, 5, 10, 15) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa(0, 0, 0, 0))


def test_a_changed_label_appends_history_and_the_view_shows_the_latest(seeded):
    store, _ = seeded
    attempt_id = store.audit_queue(QueueFilter(order="oldest"))[0]
    first = store.save_audit(attempt_id, "sound", ["skips a step"], "looks fine", "ada")
    assert store.save_audit(attempt_id, "sound", ["skips a step"], "looks fine", "ada") is None  # no change, no row
    second = store.save_audit(attempt_id, "flawed", ["lucky guess", "my new tag"], "wrong steps", "ada")
    assert second > first
    history = store.audit_history(attempt_id)
    assert list(history.rating) == ["flawed", "sound"]
    item = store.audit_item(attempt_id)
    assert (item.rating, item.tags, item.note, item.revisions) == ("flawed", ["lucky guess", "my new tag"], "wrong steps", 2)
    assert "my new tag" in store.audit_tags()  # a new tag joins the list


def test_bad_labels_are_refused_with_the_reason(seeded):
    store, _ = seeded
    attempt_id = store.audit_queue(QueueFilter())[0]
    with pytest.raises(AuditError, match="rating must be one of sound, flawed, wrong"):
        store.save_audit(attempt_id, "great", [], "", "ada")
    with pytest.raises(AuditError, match="auditor"):
        store.save_audit(attempt_id, "sound", [], "", "  ")
    with pytest.raises(AuditError, match="no attempt 99999"):
        store.save_audit(99999, "sound", [], "", "ada")


def test_queue_filters(seeded):
    store, run_id = seeded
    everything = store.audit_queue(QueueFilter(order="oldest"))
    assert len(everything) == 2 * (12 + 4)  # 12 generated + 4 rationalized per iteration
    it1 = store.audit_queue(QueueFilter(run_id=run_id, iteration=1, order="oldest"))
    assert len(it1) == 16 and all(store.audit_item(a).iteration == 1 for a in it1)
    rationalized = store.audit_queue(QueueFilter(kind="rationalized"))
    assert len(rationalized) == 8 and {store.audit_item(a).kind for a in rationalized} == {"rationalized"}
    kept = store.audit_queue(QueueFilter(kept=True))
    assert kept and all(store.audit_item(a).used_for_training for a in kept)
    rejected = store.audit_queue(QueueFilter(kept=False))
    assert set(kept) | set(rejected) == set(everything) and not set(kept) & set(rejected)
    suspect = store.audit_queue(QueueFilter(correct_unverified=True))
    assert suspect and all(store.audit_item(a).correct and not store.audit_item(a).verified for a in suspect)
    store.save_audit(everything[0], "sound", [], "", "ada")
    assert everything[0] not in store.audit_queue(QueueFilter(unaudited_only=True))
    assert store.audited_among(everything[:3]) == {everything[0]}


def test_queue_orders(seeded):
    store, _ = seeded
    oldest = store.audit_queue(QueueFilter(order="oldest"))
    assert oldest == sorted(oldest)
    r1 = store.audit_queue(QueueFilter(order="random", seed=1))
    assert r1 == store.audit_queue(QueueFilter(order="random", seed=1)) and sorted(r1) == oldest
    assert r1 != store.audit_queue(QueueFilter(order="random", seed=2))
    disagreement = store.audit_queue(QueueFilter(order="disagreement"))
    first, last = store.audit_item(disagreement[0]), store.audit_item(disagreement[-1])
    assert first.correct and first.verified is False  # right answer, failing steps: most suspect first
    assert not (last.correct and last.verified is False)
    with pytest.raises(AuditError, match="order"):
        QueueFilter(order="newest")


def test_sound_share_agreement_and_tags(seeded):
    store, run_id = seeded
    kept = store.audit_queue(QueueFilter(kept=True, order="oldest"))
    for i, a in enumerate(kept):
        store.save_audit(a, "sound" if i % 4 else "flawed", ["skips a step"] if i % 4 == 0 else [], "", "ada")
    suspect = store.audit_queue(QueueFilter(correct_unverified=True, order="oldest"))
    for a in suspect[:3]:
        store.save_audit(a, "flawed", ["lucky guess"], "", "ada")
    share = sound_share(store, run_id)
    row = share[(share.iteration == 1) & (share.kind == "generated")].iloc[0]
    assert row.audited == row.kept > 0
    assert row.sound_share == pytest.approx(row.sound / row.audited)
    assert 0 <= row.ci_low <= row.sound_share <= row.ci_high <= 1
    table, kappa, n = verifier_agreement(store, run_id)
    assert n == len(kept) + 3
    assert table.loc["passes (right answer, steps hold)"].sum() == len(kept)
    assert table.loc["right answer, steps fail", "flawed"] == 3
    assert -1 <= kappa <= 1
    flagged = store.flagged_by_tag("lucky guess")
    assert sorted(flagged.attempt_id) == sorted(suspect[:3])
    counts = dict(zip(*store.audit_counts_by_tag().T.values))
    assert counts["lucky guess"] == 3
    csv = store.audits_table(run_id).to_csv(index=False)
    assert csv.splitlines()[0].startswith("audit_id,attempt_id,run_id") and len(csv.splitlines()) == len(kept) + 4


def test_tag_list_editing(seeded):
    store, _ = seeded
    store.add_audit_tag("circular")
    assert "circular" in store.audit_tags()
    store.remove_audit_tag("irrelevant")
    assert "irrelevant" not in store.audit_tags()
    with pytest.raises(AuditError):
        store.add_audit_tag("  ")


def _busy_writer(path: str, run_id: int, stop) -> None:
    from star_core.store import Store

    store, n = Store(path), 1
    while not stop.is_set():
        store.set_progress(run_id, iteration=1, phase="generate", done=n, total=10**6)
        n += 1


@pytest.mark.slow
def test_labels_are_saved_while_a_run_writes(seeded):
    import multiprocessing

    store, run_id = seeded
    stop = multiprocessing.get_context("spawn").Event()
    writer = multiprocessing.get_context("spawn").Process(target=_busy_writer, args=(str(store.path), run_id, stop))
    writer.start()

    def progress() -> int:
        return int(store.list_runs().phase_done.fillna(0).max())

    try:
        before = wait_for(progress, timeout=60, what="the writer's first progress write")
        ids = store.audit_queue(QueueFilter(order="oldest"))[:10]
        for a in ids:
            store.save_audit(a, "sound", [], "", "ada")
        after = progress()
    finally:
        stop.set()
        writer.join(30)
    assert writer.exitcode == 0 and store.audited_among(ids) == set(ids)
    assert after > before  # the writer kept writing while the labels were saved
