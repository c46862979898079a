"""Hand audits: the audit queue, labels with their history, the tag list, and what the audits say.

`audits` is append-only: saving a changed label inserts a new row, and `v_audits`
shows each auditor's latest label per attempt (and the latest adjudication, where
auditors disagreed and someone settled it), so every earlier label stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..core.states import QUEUE_ORDERS, RATINGS, VERIFIER_ROWS, QueueMode
from ..core.errors import StarError
from ..core.states import AttemptKind
from ..tasks.base import choices_from_json
from .queries import Queries

QUEUE_KINDS = tuple(AttemptKind)


class AuditError(StarError):
    """An audit label or queue filter is invalid."""


@dataclass(frozen=True)
class QueueFilter:
    """What the audit queue holds, and in which order.

    kind None means the training kinds (generated and rationalized): eval
    rationales are never trained on, but can be audited when asked for.
    """

    run_id: int | None = None
    iteration: int | None = None
    kind: str | None = None  # generated | rationalized | eval
    kept: bool | None = None  # used_for_training: True kept, False rejected, None both
    correct_unverified: bool = False  # right final answer, steps not verified
    unaudited_only: bool = False
    order: str = "random"  # random | oldest | disagreement
    seed: int = 0
    mode: QueueMode = QueueMode.ALL
    auditor: str = ""  # who is auditing: second-opinion leaves out what they rated

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", QueueMode(self.mode))
        except ValueError:
            raise AuditError(f"mode must be one of {', '.join(QueueMode)}, got {self.mode!r}") from None
        object.__setattr__(self, "auditor", (self.auditor or "").strip())
        if self.mode == QueueMode.SECOND_OPINION and not self.auditor:
            raise AuditError("a second-opinion queue needs the auditor's name: it leaves out what they rated")
        if self.kind is not None and self.kind not in QUEUE_KINDS:
            raise AuditError(f"kind must be one of {', '.join(QUEUE_KINDS)}, got {self.kind!r}")
        if self.order not in QUEUE_ORDERS:
            raise AuditError(f"order must be one of {', '.join(QUEUE_ORDERS)}, got {self.order!r}")


@dataclass
class AuditItem:
    """One rationale as the auditor sees it, with its current label (if any)."""

    attempt_id: int
    run_id: int
    iteration: int
    kind: str
    problem_id: str
    question: str
    choices: tuple[tuple[str, str], ...]  # (label, text); empty without choices
    hint: str | None
    rationale: str
    predicted_answer: str | None
    gold_answer: str
    correct: bool
    verified: bool | None
    verify_reason: str
    hint_leak: bool | None
    used_for_training: bool
    created_at: object
    rating: str | None = None
    tags: list[str] | None = None
    note: str = ""
    auditor: str | None = None
    audited_at: object = None
    revisions: int = 0
    adjudicated: bool = False
    # Every current label of the attempt: (auditor, rating, adjudicated), adjudication last.
    labels: tuple[tuple[str, str, bool], ...] = ()
    given_text: str | None = None  # the reference's first steps a partial hint gave (the rationale starts with them)

    @property
    def other_auditors(self) -> int:
        """Auditors other than this label's who rated the attempt (an adjudication is not counted)."""
        return len({who for who, _, adj in self.labels if not adj and who != self.auditor})


# The disagreement between the answer check and the step verifier, highest first:
# a right answer whose steps fail (a lucky guess or a copied hint) is the most
# suspect; a hint leak adds to it.
_DISAGREEMENT = (
    "(CASE WHEN a.verified IS NOT NULL AND a.correct <> a.verified THEN 2 ELSE 0 END"
    " + CASE WHEN coalesce(a.hint_leak, false) THEN 1 ELSE 0 END)"
)
# Each auditor's current label (adjudications left out): what agreement and second opinions are about.
_OWN_LABELS = """
    (SELECT attempt_id, auditor, rating FROM audits WHERE NOT adjudicated
     QUALIFY row_number() OVER (PARTITION BY attempt_id, auditor ORDER BY id DESC) = 1)
"""
# The labels the sound share counts: an attempt's adjudicated label where it has one, otherwise every
# auditor's own label (so an attempt two auditors rated counts twice until someone adjudicates it).
_COUNTED_LABELS = """
    (SELECT * FROM v_audits v WHERE v.adjudicated
        OR NOT EXISTS (SELECT 1 FROM audits j WHERE j.attempt_id = v.attempt_id AND j.adjudicated))
"""
_ORDER_SQL = {
    "random": "hash(a.attempt_id, ?::BIGINT), a.attempt_id",
    "oldest": "a.created_at, a.attempt_id",
    "disagreement": f"{_DISAGREEMENT} DESC, a.created_at, a.attempt_id",
}


class AuditQueries(Queries):
    # --- the queue ----------------------------------------------------------

    def audit_queue(self, f: QueueFilter) -> list[int]:
        """The attempt ids the filter selects, in the order asked for."""
        where, params = ["1 = 1"], []
        if f.run_id is not None:
            where.append("a.run_id = ?")
            params.append(f.run_id)
        if f.iteration is not None:
            where.append("a.iteration = ?")
            params.append(f.iteration)
        if f.kind is not None:
            where.append("a.kind = ?")
            params.append(f.kind)
        else:
            where.append("a.kind IN ('generated', 'rationalized')")
        if f.kept is not None:
            where.append("a.used_for_training = ?")
            params.append(f.kept)
        if f.correct_unverified:
            where.append("a.correct AND a.verified IS DISTINCT FROM true")
        if f.unaudited_only:
            where.append("NOT EXISTS (SELECT 1 FROM audits au WHERE au.attempt_id = a.attempt_id)")
        if f.mode == QueueMode.SECOND_OPINION:
            where.append("EXISTS (SELECT 1 FROM audits au WHERE au.attempt_id = a.attempt_id AND NOT au.adjudicated"
                         " AND au.auditor <> ?)")
            where.append("NOT EXISTS (SELECT 1 FROM audits au WHERE au.attempt_id = a.attempt_id AND NOT au.adjudicated"
                         " AND au.auditor = ?)")
            params += [f.auditor, f.auditor]
        elif f.mode == QueueMode.ADJUDICATE:
            where.append(f"a.attempt_id IN (SELECT attempt_id FROM {_OWN_LABELS} GROUP BY attempt_id"
                         " HAVING count(DISTINCT rating) > 1)")
        order = _ORDER_SQL[f.order]
        if f.order == "random":
            params.append(f.seed)
        sql = f"SELECT a.attempt_id FROM v_attempts a WHERE {' AND '.join(where)} ORDER BY {order}"
        with self.db.read() as con:
            return [r[0] for r in con.execute(sql, params).fetchall()]

    def audit_item(self, attempt_id: int, auditor: str | None = None, adjudicating: bool = False) -> AuditItem | None:
        """An attempt with the label shown to its auditor: `auditor`'s own (None: the latest label of anyone),
        or, `adjudicating`, the attempt's adjudication. `labels` holds every current label."""
        auditor = (auditor or "").strip() or None
        with self.db.read() as con:
            row = con.execute(
                """
                SELECT a.attempt_id, a.run_id, a.iteration, a.kind, a.problem_id, a.question, a.choices, a.hint,
                       a.rationale, a.predicted_answer, a.gold_answer, a.correct, a.verified,
                       coalesce(a.verify_reason, ''), a.hint_leak, a.used_for_training, a.created_at, a.given_text
                FROM v_attempts a WHERE a.attempt_id = ?
                """,
                [attempt_id],
            ).fetchone()
            labels = con.execute(
                "SELECT rating, tags, note, auditor, audited_at, revisions, adjudicated, audit_id FROM v_audits "
                "WHERE attempt_id = ? ORDER BY adjudicated, audit_id",
                [attempt_id],
            ).fetchall()
        if row is None:
            return None
        row = list(row)
        given_text = row.pop()
        row[6] = choices_from_json(row[6])
        if adjudicating:
            own = [lab for lab in labels if lab[6]]
        elif auditor is not None:
            own = [lab for lab in labels if lab[3] == auditor and not lab[6]]
        else:
            own = sorted(labels, key=lambda lab: lab[7])  # the latest label of anyone
        label = list(own[-1][:7]) if own else [None, None, "", None, None, 0, False]
        label[2] = label[2] or ""
        return AuditItem(*row, *label, labels=tuple((lab[3], lab[0], bool(lab[6])) for lab in labels),
                         given_text=given_text)

    def audited_among(self, attempt_ids: list[int], mode: QueueMode = QueueMode.ALL, auditor: str = "") -> set[int]:
        """Which of these attempts are done for the queue's mode: labelled by anyone (all), by `auditor`
        (second opinion), adjudicated (adjudicate)."""
        if not attempt_ids:
            return set()
        cond, params = {
            QueueMode.ALL: ("true", []),
            QueueMode.SECOND_OPINION: ("NOT adjudicated AND auditor = ?", [(auditor or "").strip()]),
            QueueMode.ADJUDICATE: ("adjudicated", []),
        }[QueueMode(mode)]
        with self.db.read() as con:
            rows = con.execute(
                f"SELECT DISTINCT attempt_id FROM audits WHERE attempt_id IN (SELECT unnest(?::BIGINT[])) AND {cond}",
                [attempt_ids, *params],
            ).fetchall()
        return {r[0] for r in rows}

    def audit_filter_options(self) -> pd.DataFrame:
        """(run_id, iteration, kind, attempts) present in the store, for the queue's filter widgets."""
        with self.db.read() as con:
            return con.execute(
                "SELECT run_id, iteration, kind, count(*) AS attempts FROM attempts "
                "GROUP BY ALL ORDER BY run_id, iteration, kind"
            ).df()

    # --- labels -------------------------------------------------------------

    def save_audit(self, attempt_id: int, rating: str, tags: list[str] | tuple = (), note: str = "",
                   auditor: str = "", adjudicated: bool = False) -> int | None:
        """Record `auditor`'s label; a changed label is a new row (history). Returns its id, or None if nothing
        changed. Each auditor has a label of their own: another auditor's label is never replaced.

        `adjudicated`: the label that settles a disagreement between auditors (the attempt must have labels of
        two or more); the latest adjudication of an attempt is the one that counts, whoever gave it.
        Tags not yet in the tag list are added to it.
        """
        if rating not in RATINGS:
            raise AuditError(f"rating must be one of {', '.join(RATINGS)}, got {rating!r}")
        auditor = (auditor or "").strip()
        if not auditor:
            raise AuditError("give the auditor's name: every label records who made it")
        tags = sorted({t.strip() for t in tags if t and t.strip()})
        note = note or ""
        with self.db.write() as con:
            if con.execute("SELECT count(*) FROM attempts WHERE id = ?", [attempt_id]).fetchone()[0] == 0:
                raise AuditError(f"there is no attempt {attempt_id} in {self.db.path}")
            if adjudicated:
                rated_by = con.execute("SELECT count(DISTINCT auditor) FROM audits WHERE attempt_id = ? AND NOT adjudicated",
                                       [attempt_id]).fetchone()[0]
                if rated_by < 2:
                    raise AuditError(f"attempt {attempt_id} has labels of {rated_by} auditor(s); an adjudication settles "
                                     "a disagreement between two or more")
                current = con.execute("SELECT rating, tags, note, auditor FROM audits WHERE attempt_id = ? AND adjudicated "
                                      "ORDER BY id DESC LIMIT 1", [attempt_id]).fetchone()
            else:
                current = con.execute("SELECT rating, tags, note, auditor FROM audits WHERE attempt_id = ? AND auditor = ? "
                                      "AND NOT adjudicated ORDER BY id DESC LIMIT 1", [attempt_id, auditor]).fetchone()
            if current is not None and (current[0], sorted(current[1]), current[2], current[3]) == (rating, tags, note, auditor):
                return None
            for tag in tags:
                con.execute("INSERT INTO audit_tags (name) VALUES (?) ON CONFLICT DO NOTHING", [tag])
            return con.execute(
                "INSERT INTO audits (attempt_id, rating, tags, note, auditor, adjudicated) VALUES (?, ?, ?::TEXT[], ?, ?, ?) "
                "RETURNING id",
                [attempt_id, rating, tags, note, auditor, bool(adjudicated)],
            ).fetchone()[0]

    def audit_history(self, attempt_id: int) -> pd.DataFrame:
        """Every label an attempt was given, newest first."""
        with self.db.read() as con:
            return con.execute(
                "SELECT id, rating, tags, note, auditor, adjudicated, created_at FROM audits WHERE attempt_id = ? "
                "ORDER BY id DESC",
                [attempt_id],
            ).df()

    # --- the tag list -------------------------------------------------------

    def audit_tags(self) -> list[str]:
        with self.db.read() as con:
            return [r[0] for r in con.execute("SELECT name FROM audit_tags ORDER BY created_at, name").fetchall()]

    def add_audit_tag(self, name: str) -> None:
        name = (name or "").strip()
        if not name:
            raise AuditError("a tag needs a name")
        with self.db.write() as con:
            con.execute("INSERT INTO audit_tags (name) VALUES (?) ON CONFLICT DO NOTHING", [name])

    def remove_audit_tag(self, name: str) -> None:
        """Take a tag off the list offered to auditors; labels that carry it keep it."""
        with self.db.write() as con:
            con.execute("DELETE FROM audit_tags WHERE name = ?", [name])

    # --- what the audits say -------------------------------------------------

    def sound_counts(self, run_id: int | None = None, kept_only: bool = True) -> pd.DataFrame:
        """Per run, iteration and kind: the labels counted and how many say sound (agreement.sound_share adds the share).

        The labels counted (`audited`) are each attempt's adjudicated label where it has one (`adjudicated`
        of them), otherwise every auditor's own label: an attempt two auditors rated and nobody adjudicated
        counts twice. `audited_items` is how many attempts have a label. `kept_only` counts only rationales that
        went into fine-tuning (the number that says how good the training data was); `kept` is how many
        there were, audited or not, so the audit's coverage shows.
        """
        kept_filter = "AND a.used_for_training" if kept_only else ""
        with self.db.read() as con:
            df = con.execute(
                f"""
                WITH per_attempt AS (
                    SELECT a.run_id, a.iteration, a.kind, a.attempt_id,
                           count(v.rating) AS labels,
                           count(*) FILTER (WHERE v.rating = 'sound') AS sound,
                           count(*) FILTER (WHERE v.rating = 'flawed') AS flawed,
                           count(*) FILTER (WHERE v.rating = 'wrong') AS wrong,
                           count(*) FILTER (WHERE v.adjudicated) AS adjudicated
                    FROM v_attempts a LEFT JOIN {_COUNTED_LABELS} v ON v.attempt_id = a.attempt_id
                    WHERE a.kind IN ('generated', 'rationalized') {kept_filter} AND (? IS NULL OR a.run_id = ?)
                    GROUP BY ALL
                )
                SELECT run_id, iteration, kind, count(*) AS kept, sum(labels)::BIGINT AS audited,
                       sum(sound)::BIGINT AS sound, sum(flawed)::BIGINT AS flawed, sum(wrong)::BIGINT AS wrong,
                       count(*) FILTER (WHERE labels > 0) AS audited_items, sum(adjudicated)::BIGINT AS adjudicated
                FROM per_attempt GROUP BY ALL ORDER BY run_id, iteration, kind
                """,
                [run_id, run_id],
            ).df()
        return df

    def verifier_table(self, run_id: int | None = None) -> pd.DataFrame:
        """Labels by the automatic filter's verdict (rows, VERIFIER_ROWS) and the human rating (columns).

        The labels are those the sound share counts: the adjudicated one where there is one, otherwise
        every auditor's (agreement.verifier_agreement turns the table into Cohen's kappa).
        """
        with self.db.read() as con:
            rows = con.execute(
                f"""
                SELECT CASE WHEN verified IS NULL THEN 'cannot verify'
                            WHEN correct AND verified THEN 'passes (right answer, steps hold)'
                            WHEN correct THEN 'right answer, steps fail'
                            ELSE 'wrong answer' END AS verifier,
                       rating, count(*) AS n
                FROM {_COUNTED_LABELS} c WHERE (? IS NULL OR run_id = ?) GROUP BY ALL
                """,
                [run_id, run_id],
            ).fetchall()
        order = list(VERIFIER_ROWS)
        table = pd.DataFrame(0, index=order, columns=list(RATINGS), dtype=int)
        for verifier, rating, n in rows:
            table.loc[verifier, rating] = n
        table = table.loc[(table.sum(axis=1) > 0) | (table.index != "cannot verify")]
        table.index.name = "verifier"
        return table

    def flagged_by_tag(self, tag: str | None = None, run_id: int | None = None) -> pd.DataFrame:
        """Audited rationales with each tag of their current label (one row per tag)."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT tag, attempt_id, run_id, iteration, kind, question, rationale,
                       predicted_answer, gold_answer, rating, note, auditor, audited_at
                FROM (SELECT *, unnest(tags) AS tag FROM v_audits)
                WHERE (? IS NULL OR tag = ?) AND (? IS NULL OR run_id = ?)
                ORDER BY tag, run_id, iteration, attempt_id
                """,
                [tag, tag, run_id, run_id],
            ).df()

    def audit_counts_by_tag(self, run_id: int | None = None) -> pd.DataFrame:
        with self.db.read() as con:
            return con.execute(
                """
                SELECT tag, count(*) AS rationales FROM (SELECT unnest(tags) AS tag, run_id FROM v_audits)
                WHERE ? IS NULL OR run_id = ? GROUP BY tag ORDER BY rationales DESC, tag
                """,
                [run_id, run_id],
            ).df()

    def audits_table(self, run_id: int | None = None, history: bool = False) -> pd.DataFrame:
        """Labels joined to their attempts, for export: each auditor's current label (and each attempt's
        adjudication), or every label with `history`."""
        source = (
            "(SELECT au.*, au.id AS audit_id, au.created_at AS audited_at FROM audits au)" if history
            else "(SELECT * FROM v_audits)"
        )
        with self.db.read() as con:
            return con.execute(
                f"""
                SELECT l.audit_id, l.attempt_id, a.run_id, a.iteration, a.kind, a.problem_id, a.question, a.hint,
                       a.rationale, a.predicted_answer, a.gold_answer, a.correct, a.verified, a.verify_reason,
                       a.hint_leak, a.used_for_training, l.rating, array_to_string(l.tags, '; ') AS tags, l.note,
                       l.auditor, l.adjudicated, l.audited_at
                FROM {source} l JOIN v_attempts a ON a.attempt_id = l.attempt_id
                WHERE ? IS NULL OR a.run_id = ?
                ORDER BY a.run_id, a.iteration, a.attempt_id, l.audit_id
                """,
                [run_id, run_id],
            ).df()

    # --- agreement between auditors ------------------------------------------

    def agreement_labels(self, run_id: int | None = None) -> dict[int, dict[str, str]]:
        """{attempt id: {auditor: rating}} of every attempt two or more auditors rated (v_audit_agreement);
        adjudications are left out, since they are not an independent rating."""
        with self.db.read() as con:
            rows = con.execute(
                """
                SELECT attempt_id, r.auditor, r.rating
                FROM (SELECT attempt_id, run_id, unnest(ratings) AS r FROM v_audit_agreement)
                WHERE ? IS NULL OR run_id = ?
                ORDER BY attempt_id, r.auditor
                """,
                [run_id, run_id],
            ).fetchall()
        out: dict[int, dict[str, str]] = {}
        for attempt_id, auditor, rating in rows:
            out.setdefault(int(attempt_id), {})[auditor] = rating
        return out

    def auditors(self, run_id: int | None = None) -> list[str]:
        """Everyone who gave a label of their own (in the run, if given), by name."""
        with self.db.read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT auditor FROM v_audits WHERE NOT adjudicated AND (? IS NULL OR run_id = ?) ORDER BY auditor",
                [run_id, run_id]).fetchall()]

    def disagreements(self, run_id: int | None = None) -> pd.DataFrame:
        """The attempts auditors rated differently, with each rating and any adjudication (v_audit_agreement)."""
        with self.db.read() as con:
            df = con.execute(
                """
                SELECT g.attempt_id, g.run_id, g.iteration, g.kind, a.question, a.rationale, a.predicted_answer,
                       a.gold_answer, g.ratings, g.adjudicated_rating, g.adjudicated_by
                FROM v_audit_agreement g JOIN v_attempts a USING (attempt_id)
                WHERE NOT g.agree AND (? IS NULL OR g.run_id = ?)
                ORDER BY g.run_id, g.iteration, g.attempt_id
                """,
                [run_id, run_id],
            ).df()
        df["ratings"] = ["; ".join(f"{r['auditor']}: {r['rating']}" for r in ratings) for ratings in df["ratings"]]
        return df

    def label_export_rows(self, run_id: int | None = None) -> pd.DataFrame:
        """One row per (attempt, auditor) for `star audit export`: each auditor's current label, and each
        attempt's adjudication as a row of its adjudicator marked adjudicated."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT attempt_id, run_id, iteration, kind, problem_id, question, rationale,
                       predicted_answer AS answer, gold_answer AS gold, rating, tags, note, auditor, adjudicated,
                       strftime(audited_at, '%Y-%m-%dT%H:%M:%S') AS audited_at
                FROM v_audits WHERE ? IS NULL OR run_id = ?
                ORDER BY run_id, iteration, attempt_id, adjudicated, auditor
                """,
                [run_id, run_id],
            ).df()
