"""Exemplar sets: named, versioned lists of few-shot exemplars.

A set is (name, version). Once a run uses a version it is frozen: writing to a
frozen version creates the next version of the name instead, so the run keeps
pointing (runs.exemplar_set_id) to the exact text it was prompted with.
Checking exemplars against a task is star_core/engine/exemplars.py's job, not the store's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from ..core.errors import StarError
from ..tasks.base import Exemplar, choices_from_json, choices_to_json
from ..tasks.key import TaskKey
from .queries import Queries

SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")


class ExemplarSetError(StarError):
    """An exemplar set does not exist, or a name or version is invalid."""


@dataclass(frozen=True)
class ExemplarItem(Exemplar):
    """An exemplar as a set stores it: with the audited attempt it came from, if any."""

    source_attempt_id: int | None = None

    @property
    def exemplar(self) -> Exemplar:
        return Exemplar(self.question, self.rationale, self.answer, self.choices)


@dataclass
class ExemplarSet:
    id: int
    name: str
    version: int
    task: str  # the task's name
    frozen: bool
    note: str
    created_at: object
    task_key: TaskKey = None  # the key its exemplars were validated for; a run may use the set only with the same key
    items: list[ExemplarItem] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def parse_set_ref(ref: str) -> tuple[str, int | None]:
    """'NAME' -> (NAME, None) (the latest version); 'NAME@VERSION' -> (NAME, VERSION)."""
    name, _, version = ref.strip().partition("@")
    check_set_name(name)
    if not _:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ExemplarSetError(f"exemplar set {ref!r}: the version after '@' must be a whole number from 1, got {version!r}")
    return name, int(version)


def check_set_name(name: str) -> None:
    if not SET_NAME.fullmatch(name or ""):
        raise ExemplarSetError(
            f"exemplar set name {name!r} must be 1-80 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )


class ExemplarSetQueries(Queries):
    def list_exemplar_sets(self, task: str | None = None, key: TaskKey | str | None = None) -> pd.DataFrame:
        """Every version of every set (of one task name or key, if given): key, size, frozen flag and how many runs use it."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT s.id, s.name, s.version, s.name || '@' || s.version AS label, s.task, s.task_key, s.frozen, s.note, s.created_at,
                       (SELECT count(*) FROM exemplars e WHERE e.set_id = s.id) AS exemplars,
                       (SELECT count(*) FROM runs r WHERE r.exemplar_set_id = s.id) AS runs,
                       s.version = max(s.version) OVER (PARTITION BY s.name) AS latest
                FROM exemplar_sets s WHERE (? IS NULL OR s.task = ?) AND (? IS NULL OR s.task_key = ?)
                ORDER BY s.name, s.version DESC
                """,
                [task, task, key and str(TaskKey.of(key)), key and str(TaskKey.of(key))],
            ).df()

    def exemplar_set(self, set_id: int) -> ExemplarSet:
        with self.db.read() as con:
            row = con.execute(
                "SELECT id, name, version, task, frozen, note, created_at, task_key FROM exemplar_sets WHERE id = ?", [set_id]
            ).fetchone()
            if row is None:
                raise ExemplarSetError(f"there is no exemplar set with id {set_id} in {self.db.path}")
            items = _stored_items(con, set_id)
        return ExemplarSet(*row[:7], task_key=TaskKey.parse(row[7]), items=items)

    def find_exemplar_set(self, ref: str) -> ExemplarSet:
        """The set a reference names: 'NAME' is its latest version, 'NAME@VERSION' that version."""
        name, version = parse_set_ref(ref)
        with self.db.read() as con:
            if version is None:
                row = con.execute("SELECT id FROM exemplar_sets WHERE name = ? ORDER BY version DESC LIMIT 1", [name]).fetchone()
            else:
                row = con.execute("SELECT id FROM exemplar_sets WHERE name = ? AND version = ?", [name, version]).fetchone()
            if row is None:
                known = [r[0] for r in con.execute("SELECT DISTINCT name FROM exemplar_sets ORDER BY name").fetchall()]
                versions = [r[0] for r in con.execute(
                    "SELECT version FROM exemplar_sets WHERE name = ? ORDER BY version", [name]).fetchall()]
        if row is None:
            if versions:
                raise ExemplarSetError(
                    f"exemplar set {name!r} has no version {version} (it has {', '.join(map(str, versions))})"
                )
            hint = f"known sets: {', '.join(known)}" if known else "the database has no exemplar sets yet"
            raise ExemplarSetError(f"there is no exemplar set {name!r} in {self.db.path} ({hint})")
        return self.exemplar_set(row[0])

    def create_exemplar_set(self, name: str, key: TaskKey | str, items: list[ExemplarItem], note: str = "") -> int:
        """A new set, or the next version of an existing name (of the same task key). Returns its id."""
        check_set_name(name)
        with self.db.write() as con:
            return _insert_version(con, name, TaskKey.of(key), items, note)

    def ensure_exemplar_set(self, name: str, key: TaskKey | str, items: list[ExemplarItem], note: str = "") -> int:
        """The latest version of `name` if it holds exactly these exemplars, else a new version holding them; its id.

        The look and the insert are one write transaction: the file is one process's alone while it lasts,
        and the threads of a process write one at a time, so callers racing each other (two app reruns,
        three `star run` at once) leave one version, not one each.
        """
        check_set_name(name)
        with self.db.write() as con:
            row = con.execute("SELECT id FROM exemplar_sets WHERE name = ? ORDER BY version DESC LIMIT 1", [name]).fetchone()
            if row is not None and same_exemplars(_stored_items(con, row[0]), items):
                return row[0]
            return _insert_version(con, name, TaskKey.of(key), items, note)

    def write_exemplars(self, set_id: int, items: list[ExemplarItem], note: str | None = None) -> int:
        """Replace a set's exemplars (an edit, reorder or removal) and return the id now holding them.

        A frozen set is never changed: the exemplars go into a new version of its name.
        """
        with self.db.write() as con:
            row = con.execute("SELECT name, task_key, frozen, note FROM exemplar_sets WHERE id = ?", [set_id]).fetchone()
            if row is None:
                raise ExemplarSetError(f"there is no exemplar set with id {set_id} in {self.db.path}")
            name, key, frozen, old_note = row
            if frozen:
                return _insert_version(con, name, TaskKey.parse(key), items, old_note if note is None else note)
            con.execute("DELETE FROM exemplars WHERE set_id = ?", [set_id])
            _insert_items(con, set_id, items)
            if note is not None:
                con.execute("UPDATE exemplar_sets SET note = ? WHERE id = ?", [note, set_id])
            return set_id

    def use_exemplar_set(self, run_id: int, set_id: int) -> None:
        """A run uses this exact version: freeze it and record it on the run."""
        with self.db.write() as con:
            use_exemplar_set(con, run_id, set_id)

    def run_exemplar_set_id(self, run_id: int) -> int | None:
        with self.db.read() as con:
            row = con.execute("SELECT exemplar_set_id FROM runs WHERE id = ?", [run_id]).fetchone()
        return row[0] if row else None

    def runs_with_exemplar_sets(self) -> pd.DataFrame:
        """Each run with the exemplar set it was prompted with ('name@version'), for grouping accuracy."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT r.id AS run_id, r.name AS run_name, r.task, r.model, r.status, r.exemplar_set_id,
                       coalesce(s.name || '@' || s.version, r.task || ' file (before exemplar sets)') AS exemplar_set
                FROM runs r LEFT JOIN exemplar_sets s ON s.id = r.exemplar_set_id
                ORDER BY r.id
                """
            ).df()

    def attempts_for_exemplars(self, attempt_ids: list[int]) -> pd.DataFrame:
        """The question, rationale, gold answer, choices and task key of attempts, in the order given."""
        with self.db.read() as con:
            df = con.execute(
                """
                SELECT a.attempt_id, r.task_key, a.question, a.rationale, a.gold_answer, a.choices
                FROM v_attempts a JOIN runs r ON r.id = a.run_id
                WHERE a.attempt_id IN (SELECT unnest(?::BIGINT[]))
                """,
                [list(attempt_ids)],
            ).df()
        order = {a: i for i, a in enumerate(attempt_ids)}
        return df.sort_values("attempt_id", key=lambda s: s.map(order)).reset_index(drop=True)

    def sound_attempts(self, run_id: int | None = None, task: str | None = None) -> pd.DataFrame:
        """Attempts rated sound (candidates for an exemplar set), once each: by their adjudication where they
        have one, otherwise by every auditor who rated them."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT v.attempt_id, v.run_id, v.iteration, v.kind, v.question, v.rationale, v.gold_answer,
                       v.verified, array_to_string(v.tags, '; ') AS tags, v.note, v.auditor, r.task
                FROM v_audits v JOIN runs r ON r.id = v.run_id
                WHERE v.rating = 'sound' AND (? IS NULL OR v.run_id = ?) AND (? IS NULL OR r.task = ?)
                  AND (v.adjudicated OR NOT EXISTS (
                      SELECT 1 FROM v_audits o WHERE o.attempt_id = v.attempt_id AND (o.adjudicated OR o.rating <> 'sound')))
                QUALIFY row_number() OVER (PARTITION BY v.attempt_id ORDER BY v.audit_id DESC) = 1
                ORDER BY v.run_id, v.iteration, v.attempt_id
                """,
                [run_id, run_id, task, task],
            ).df()


def _insert_version(con, name: str, key: TaskKey, items: list[ExemplarItem], note: str) -> int:
    existing = con.execute("SELECT DISTINCT task_key FROM exemplar_sets WHERE name = ?", [name]).fetchall()
    if existing and existing[0][0] != str(key):
        raise ExemplarSetError(
            f"exemplar set {name!r} is for task {TaskKey.parse(existing[0][0]).describe()}, not {key.describe()}; choose another name"
        )
    version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM exemplar_sets WHERE name = ?", [name]).fetchone()[0]
    set_id = con.execute(
        "INSERT INTO exemplar_sets (name, version, task, task_key, note) VALUES (?, ?, ?, ?, ?) RETURNING id",
        [name, version, key.name, str(key), note],
    ).fetchone()[0]
    _insert_items(con, set_id, items)
    return set_id


def _insert_items(con, set_id: int, items: list[ExemplarItem]) -> None:
    if not items:
        return
    con.executemany(
        "INSERT INTO exemplars (set_id, position, question, rationale, answer, choices, source_attempt_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (set_id, i, it.question, it.rationale, it.answer, choices_to_json(it.choices),
             it.source_attempt_id)
            for i, it in enumerate(items)
        ],
    )


def same_exemplars(a: list[ExemplarItem], b: list[ExemplarItem]) -> bool:
    """The same prompt text in the same order (where an exemplar came from does not change the prompt)."""
    def text(items):
        return [(it.question, it.rationale, it.answer, tuple(tuple(c) for c in it.choices)) for it in items]

    return text(a) == text(b)


def _stored_items(con, set_id: int) -> list[ExemplarItem]:
    rows = con.execute(
        "SELECT question, rationale, answer, choices, source_attempt_id FROM exemplars WHERE set_id = ? ORDER BY position",
        [set_id],
    ).fetchall()
    return [_item(*r) for r in rows]


def _item(question, rationale, answer, choices, source_attempt_id) -> ExemplarItem:
    return ExemplarItem(question, rationale, answer, choices_from_json(choices), source_attempt_id)


def use_exemplar_set(con, run_id: int, set_id: int) -> None:
    """Inside a write transaction: the run is prompted with this exact version, which is frozen from now on."""
    con.execute("UPDATE exemplar_sets SET frozen = true WHERE id = ?", [set_id])
    con.execute("UPDATE runs SET exemplar_set_id = ? WHERE id = ?", [set_id, run_id])
