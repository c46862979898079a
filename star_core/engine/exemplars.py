"""Few-shot exemplars: the shipped files, and the named, versioned sets in the store.

The default set of each task is `data/exemplars/<task>.jsonl`, written by us; a
run records it (or the set its `exemplars` setting names) in the store as the
exact version it prompted with. Every exemplar must pass the task's answer check
and, where the task has one, its step verifier before a run may use it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..core.errors import DatasetError
from ..store.exemplar_sets import ExemplarItem, ExemplarSet, ExemplarSetError, check_set_name
from ..tasks import TaskKey, task_for_key
from ..tasks.base import ANSWER_MARKER, Exemplar, Problem, Task, build_prefix, choices_from_json

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def default_exemplar_path(task: Task) -> Path:
    """The task's shipped exemplars (the jsonl task has one file per answer type)."""
    return DATA_DIR / "exemplars" / f"{getattr(task, 'exemplar_file', task.name)}.jsonl"


def load_exemplars(task: Task, path: Path | None = None) -> list[Exemplar]:
    """Read an exemplar file; every line must parse and pass the task's checks (errors name path:line)."""
    path = path or default_exemplar_path(task)
    if not path.exists():
        raise DatasetError(f"exemplar file {path} does not exist")
    return [it.exemplar for it in parse_jsonl(path.read_text(), task, source=str(path))]


def check_exemplar(task: Task, ex: Exemplar) -> str | None:
    """Why an exemplar is unfit for the prompt, or None when it passes the task's checks."""
    problem = Problem(id="exemplar", question=ex.question, answer=ex.answer, split="exemplar", choices=ex.choices)
    completion = task.format_completion(ex.rationale, ex.answer)
    predicted = task.extract_answer(completion)
    if not task.is_correct(predicted, problem):
        return f"its answer {ex.answer!r} does not pass the {task.name} answer check (read back as {predicted!r})"
    if task.can_verify_steps:
        verdict = task.verify_steps(completion, problem)
        if verdict.ok is False:
            return f"its rationale fails the step check: {verdict.reason}"
    return None


# --- Exemplar sets in the store ------------------------------------------------------
# The default set of a task, sets built from audited rationales or by hand, edits (a frozen set gets a new
# version), validation, the exact prompt the engine builds, its token count, and JSONL import/export.


def default_set_name(task: Task) -> str:
    """'<task>-default'; the jsonl task has one per answer type (its `default_set` stem)."""
    return f"{getattr(task, 'default_set', default_exemplar_path(task).stem)}-default"



def validate_items(task: Task, items: list[ExemplarItem]) -> list[str | None]:
    """For each exemplar, why it is unfit (the task's answer check, then its step check), or None."""
    out = []
    for it in items:
        if not it.question.strip() or not it.rationale.strip() or not it.answer.strip():
            out.append("question, rationale and answer must all be filled in")
        else:
            out.append(check_exemplar(task, it.exemplar))
    return out


def check_items(task: Task, items: list[ExemplarItem], what: str) -> None:
    """Raise a DatasetError naming every exemplar of `what` that fails the task's checks."""
    problems = [f"exemplar {i}: {why}" for i, why in enumerate(validate_items(task, items), start=1) if why]
    if problems:
        raise DatasetError(f"{what} has exemplars that fail the {task.name} checks: " + "; ".join(problems))


def strip_final_answer(rationale: str) -> str:
    """A stored rationale without its closing 'The answer is ...' sentence (the prompt format adds it back)."""
    markers = list(ANSWER_MARKER.finditer(rationale))
    return rationale[: markers[-1].start()].strip() if markers else rationale.strip()


def items_from_attempts(store, attempt_ids: list[int]) -> tuple[TaskKey, list[ExemplarItem]]:
    """(task key, exemplars) from stored attempts: question, rationale and the gold answer."""
    rows = store.attempts_for_exemplars(list(attempt_ids))
    missing = sorted(set(attempt_ids) - set(rows.attempt_id))
    if missing:
        raise ExemplarSetError(f"there are no attempts {', '.join(map(str, missing))} in {store.path}")
    keys = sorted(set(rows.task_key))
    if len(keys) > 1:
        raise ExemplarSetError(f"the attempts come from runs of different tasks ({', '.join(keys)}); a set is for one task")
    items = [
        ExemplarItem(
            question=r.question, rationale=strip_final_answer(r.rationale), answer=r.gold_answer,
            choices=choices_from_json(r.choices if isinstance(r.choices, str) else None),
            source_attempt_id=int(r.attempt_id),
        )
        for r in rows.itertuples()
    ]
    return TaskKey.parse(keys[0]), items


def create_set(store, name: str, key: TaskKey | str, items: list[ExemplarItem], note: str = "") -> int:
    """A new set (or the next version of `name`) for a task key; every exemplar must pass that task's checks."""
    check_set_name(name)
    key = TaskKey.of(key)
    check_items(task_for_key(key), items, f"exemplar set {name!r}")
    return store.create_exemplar_set(name, key, items, note)


def create_set_from_attempts(store, name: str, attempt_ids: list[int], note: str = "") -> int:
    if not attempt_ids:
        raise ExemplarSetError("choose at least one audited rationale to build the set from")
    key, items = items_from_attempts(store, attempt_ids)
    return create_set(store, name, key, items, note)


def add_attempts_to_set(store, name: str, attempt_ids: list[int]) -> int:
    """Append attempts to the latest version of set `name` (creating the set if it does not exist)."""
    key, new = items_from_attempts(store, attempt_ids)
    check_set_name(name)
    try:
        current = store.find_exemplar_set(name)
    except ExemplarSetError:
        return create_set(store, name, key, new)
    if current.task_key != key:
        raise ExemplarSetError(
            f"exemplar set {name!r} is for task {current.task_key.describe()}; these rationales are {key.describe()}"
        )
    already = {it.source_attempt_id for it in current.items if it.source_attempt_id is not None}
    new = [it for it in new if it.source_attempt_id not in already]
    if not new:
        return current.id
    return edit_set(store, current.id, current.items + new)


def edit_set(store, set_id: int, items: list[ExemplarItem], note: str | None = None) -> int:
    """Replace a set's exemplars; returns the id holding them (a new version when the set is frozen)."""
    current = store.exemplar_set(set_id)
    check_items(task_for_key(current.task_key), items, f"exemplar set {current.label}")
    return store.write_exemplars(set_id, items, note)


def update_exemplar(store, set_id: int, position: int, item: ExemplarItem) -> int:
    items = list(store.exemplar_set(set_id).items)
    _check_position(items, position)
    why = validate_items(task_for_key(store.exemplar_set(set_id).task_key), [item])[0]
    if why:
        raise DatasetError(f"exemplar {position + 1} is not saved: {why}")
    items[position] = item
    return edit_set(store, set_id, items)


def add_exemplar(store, set_id: int, item: ExemplarItem) -> int:
    current = store.exemplar_set(set_id)
    why = validate_items(task_for_key(current.task_key), [item])[0]
    if why:
        raise DatasetError(f"the new exemplar is not added: {why}")
    return edit_set(store, set_id, current.items + [item])


def remove_exemplar(store, set_id: int, position: int) -> int:
    items = list(store.exemplar_set(set_id).items)
    _check_position(items, position)
    del items[position]
    return store.write_exemplars(set_id, items)


def move_exemplar(store, set_id: int, position: int, offset: int) -> int:
    """Move one exemplar up (offset -1) or down (+1); the order is the order in the prompt."""
    items = list(store.exemplar_set(set_id).items)
    _check_position(items, position)
    target = min(max(position + offset, 0), len(items) - 1)
    items.insert(target, items.pop(position))
    return store.write_exemplars(set_id, items)


def _check_position(items: list, position: int) -> None:
    if not 0 <= position < len(items):
        raise ExemplarSetError(f"the set has no exemplar {position + 1} (it has {len(items)})")


# --- the default set and runs --------------------------------------------------


def default_set_id(store, task: Task) -> int:
    """The task's shipped exemplar file as a set ('<task>-default'); a new version when the file changed.

    One look-and-insert in the store: app reruns and `star run`s registering it at once leave one version.
    """
    items = [ExemplarItem(e.question, e.rationale, e.answer, e.choices) for e in load_exemplars(task)]
    note = f"shipped with STaR Studio: {default_exemplar_path(task).name}"
    return store.ensure_exemplar_set(default_set_name(task), task.key, items, note)


def resolve_run_set(store, task: Task, ref: str) -> ExemplarSet:
    """The exemplar set a run's `exemplars` setting names, checked for use ('' = the task's default)."""
    if not ref.strip():
        chosen = store.exemplar_set(default_set_id(store, task))
    else:
        chosen = store.find_exemplar_set(ref)
    if chosen.task_key != task.key:
        raise ExemplarSetError(
            f"exemplar set {chosen.label} was validated for task {chosen.task_key.describe()}, but the run's task is "
            f"{task.key.describe()}; use a set made for that task (star exemplars list), or import one for it "
            f"(star exemplars import FILE --name NAME with the run's task flags)"
        )
    if not chosen.items:
        raise ExemplarSetError(f"exemplar set {chosen.label} has no exemplars")
    check_items(task, chosen.items, f"exemplar set {chosen.label}")
    return chosen


def exemplars_for_run(store, run_id: int, task: Task) -> list[Exemplar]:
    """The exact exemplars a run prompts with: its recorded set, or the task's file for runs from before sets."""
    set_id = store.run_exemplar_set_id(run_id)
    if set_id is None:
        return load_exemplars(task)
    return [it.exemplar for it in store.exemplar_set(set_id).items]


# --- the prompt and its size ------------------------------------------------------


def prompt_preview(task: Task, items: list[ExemplarItem], with_hints: bool = False) -> str:
    """The few-shot prefix exactly as the engine builds it (build_prefix)."""
    return build_prefix(task, [it.exemplar for it in items], with_hints=with_hints)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_spec: str):
    """The tokenizer of a model spec (model.load_tokenizer), cached per process for the page's token counts."""
    from ..model.loading import load_tokenizer as load

    return load(model_spec)


def token_count(model_spec: str, text: str) -> int:
    """Tokens of a prompt prefix as the engine encodes it (with the tokenizer's BOS where it uses one)."""
    return len(load_tokenizer(model_spec)(text, add_special_tokens=True).input_ids)


# --- JSONL ---------------------------------------------------------------------------


def to_jsonl(items: list[ExemplarItem]) -> str:
    """One exemplar per line, in the format of data/exemplars/*.jsonl."""
    lines = []
    for it in items:
        row = {"question": it.question}
        if it.choices:
            row["choices"] = [list(c) for c in it.choices]
        row.update(rationale=it.rationale, answer=it.answer)
        if it.source_attempt_id is not None:
            row["source_attempt_id"] = it.source_attempt_id
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


def parse_jsonl(text: str, task: Task | None = None, source: str = "") -> list[ExemplarItem]:
    """Exemplars from JSONL text (a shipped file or an upload): all lines or none.

    The first bad line raises a DatasetError naming it (`source:line`, or `line N` without a
    source). With a task, each exemplar must also pass its answer and step checks.
    """
    where = (lambda n: f"{source}:{n}") if source else (lambda n: f"line {n}")
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where(number)}: not valid JSON ({exc.msg} at column {exc.colno}); nothing was imported") from exc
        if not isinstance(raw, dict):
            raise DatasetError(f"{where(number)}: expected a JSON object with question, rationale and answer; nothing was imported")
        missing = [k for k in ("question", "rationale", "answer") if k not in raw]
        if missing:
            raise DatasetError(f"{where(number)}: missing {', '.join(missing)}; nothing was imported")
        try:
            choices = tuple((str(c[0]), str(c[1])) for c in raw.get("choices") or ())
        except (TypeError, IndexError, KeyError) as exc:
            raise DatasetError(f"{where(number)}: choices must be a list of [label, text] pairs; nothing was imported") from exc
        attempt = raw.get("source_attempt_id")
        item = ExemplarItem(str(raw["question"]), str(raw["rationale"]), str(raw["answer"]), choices,
                            int(attempt) if isinstance(attempt, int) else None)
        if task is not None:
            why = validate_items(task, [item])[0]
            if why:
                raise DatasetError(f"{where(number)}: {why}; nothing was imported")
        items.append(item)
    if not items:
        raise DatasetError(f"{source or 'the file'} has no exemplars; nothing was imported")
    return items


def import_jsonl(store, name: str, key: TaskKey | str, text: str, note: str = "", source: str = "") -> int:
    """A new set (or the next version of `name`) for a task key from JSONL text; all lines or none."""
    check_set_name(name)
    key = TaskKey.of(key)
    items = parse_jsonl(text, task_for_key(key), source=source)
    return store.create_exemplar_set(name, key, items, note)

