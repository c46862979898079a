"""Numbered, append-only schema migrations.

Each migration is a function ``mNNN_name(con)``; MIGRATIONS lists them in order and
`Store` applies, in one transaction each, those not yet recorded in
``schema_migrations``. Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import duckdb


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE run_id_seq START 1")
    con.execute(
        """
        CREATE TABLE runs (
            id            INTEGER PRIMARY KEY DEFAULT nextval('run_id_seq'),
            name          TEXT NOT NULL,
            task          TEXT NOT NULL,
            model         TEXT NOT NULL,
            config        TEXT NOT NULL,          -- RunConfig as JSON
            status        TEXT NOT NULL,          -- pending | running | done | failed | cancelled
            error         TEXT,
            pid           INTEGER,                -- the worker process while running
            host          TEXT,
            created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at   TIMESTAMP,
            heartbeat_at  TIMESTAMP,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            -- live progress of the current phase
            cur_iteration INTEGER,
            cur_phase     TEXT,
            phase_done    INTEGER,
            phase_total   INTEGER,
            tokens_per_s  DOUBLE,
            eta_s         DOUBLE
        )
        """
    )
    con.execute(
        """
        CREATE TABLE problems (
            run_id      INTEGER NOT NULL,
            problem_id  TEXT NOT NULL,
            split       TEXT NOT NULL,            -- train | eval
            difficulty  INTEGER,
            question    TEXT NOT NULL,
            answer      TEXT NOT NULL,
            choices     TEXT,                     -- JSON [[label, text], ...] for multiple choice
            PRIMARY KEY (run_id, problem_id)
        )
        """
    )
    con.execute("CREATE SEQUENCE prompt_id_seq START 1")
    con.execute(
        """
        CREATE TABLE prompts (                    -- few-shot prefixes, stored once each
            id     INTEGER PRIMARY KEY DEFAULT nextval('prompt_id_seq'),
            sha256 TEXT NOT NULL UNIQUE,
            text   TEXT NOT NULL
        )
        """
    )
    con.execute(
        """
        CREATE TABLE iterations (
            run_id        INTEGER NOT NULL,
            iteration     INTEGER NOT NULL,       -- 0 = few-shot baseline (evaluation only)
            phase         TEXT NOT NULL,          -- generate | rationalize | finetune | evaluate | done
            started_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at   TIMESTAMP,
            kept          INTEGER,                -- rationales used for fine-tuning
            steps         INTEGER,
            train_loss    DOUBLE,                 -- mean loss over the last 10% of steps
            train_tokens  BIGINT,
            train_seconds DOUBLE,
            checkpoint    TEXT,
            PRIMARY KEY (run_id, iteration)
        )
        """
    )
    con.execute("CREATE SEQUENCE attempt_id_seq START 1")
    con.execute(
        """
        CREATE TABLE attempts (
            id               BIGINT PRIMARY KEY DEFAULT nextval('attempt_id_seq'),
            run_id           INTEGER NOT NULL,
            iteration        INTEGER NOT NULL,
            problem_id       TEXT NOT NULL,
            kind             TEXT NOT NULL,       -- generated | rationalized | eval
            sample           INTEGER NOT NULL DEFAULT 0,
            prompt_id        INTEGER NOT NULL,    -- the few-shot prefix (prompts.id)
            question_prompt  TEXT NOT NULL,       -- the text after the prefix, hint included
            hint             TEXT,
            completion       TEXT NOT NULL,       -- raw model output
            rationale        TEXT NOT NULL,
            predicted        TEXT,
            correct          BOOLEAN NOT NULL,
            verified         BOOLEAN,             -- NULL where the task cannot check steps
            verify_reason    TEXT,
            used_for_training BOOLEAN NOT NULL DEFAULT false,
            prompt_tokens    INTEGER,
            new_tokens       INTEGER,
            seconds          DOUBLE,
            created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
            UNIQUE (run_id, iteration, kind, problem_id, sample)
        )
        """
    )
    con.execute(
        """
        CREATE VIEW v_attempts AS
        SELECT a.run_id, a.iteration, a.problem_id, p.split, p.difficulty, a.kind,
               p.question, a.hint, a.rationale, a.predicted AS predicted_answer,
               p.answer AS gold_answer, a.correct, a.verified, a.used_for_training,
               a.id AS attempt_id, a.sample, a.verify_reason, a.completion, a.prompt_id,
               a.question_prompt, a.prompt_tokens, a.new_tokens, a.seconds, a.created_at, p.choices
        FROM attempts a JOIN problems p USING (run_id, problem_id)
        """
    )
    # Eval accuracy per iteration (split 'eval', from eval attempts) and the
    # self-generated accuracy on the training questions (split 'train', first sample).
    con.execute(
        """
        CREATE VIEW v_accuracy AS
        SELECT run_id, iteration, split, difficulty,
               count(*) AS n, count(*) FILTER (WHERE correct) AS correct,
               count(*) FILTER (WHERE correct) / count(*) AS accuracy
        FROM v_attempts
        WHERE (kind = 'eval' AND split = 'eval') OR (kind = 'generated' AND sample = 0)
        GROUP BY GROUPING SETS ((run_id, iteration, split, difficulty), (run_id, iteration, split))
        """
    )


def m002_hint_leak(con: duckdb.DuckDBPyConnection) -> None:
    """A rationalized rationale that restates the hint instead of reasoning is flagged (and by default not kept)."""
    con.execute("ALTER TABLE attempts ADD COLUMN hint_leak BOOLEAN")
    con.execute(
        """
        CREATE OR REPLACE VIEW v_attempts AS
        SELECT a.run_id, a.iteration, a.problem_id, p.split, p.difficulty, a.kind,
               p.question, a.hint, a.rationale, a.predicted AS predicted_answer,
               p.answer AS gold_answer, a.correct, a.verified, a.used_for_training,
               a.id AS attempt_id, a.sample, a.verify_reason, a.completion, a.prompt_id,
               a.question_prompt, a.prompt_tokens, a.new_tokens, a.seconds, a.created_at, p.choices,
               a.hint_leak
        FROM attempts a JOIN problems p USING (run_id, problem_id)
        """
    )


def m003_audits_and_exemplar_sets(con: duckdb.DuckDBPyConnection) -> None:
    """Human audit labels (with history) and versioned few-shot exemplar sets."""
    con.execute("CREATE SEQUENCE audit_id_seq START 1")
    con.execute(
        """
        CREATE TABLE audits (                     -- append-only: a changed label is a new row
            id          BIGINT PRIMARY KEY DEFAULT nextval('audit_id_seq'),
            attempt_id  BIGINT NOT NULL,
            rating      TEXT NOT NULL,            -- sound | flawed | wrong
            tags        TEXT[] NOT NULL DEFAULT [],
            note        TEXT NOT NULL DEFAULT '',
            auditor     TEXT NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        )
        """
    )
    con.execute(
        """
        CREATE TABLE audit_tags (
            name       TEXT PRIMARY KEY,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )
        """
    )
    con.execute(
        "INSERT INTO audit_tags (name) VALUES ('lucky guess'), ('copies the hint'), ('arithmetic slip'), "
        "('skips a step'), ('irrelevant')"
    )
    con.execute(
        """
        CREATE VIEW v_audits AS                   -- the current label of each audited attempt
        SELECT a.*, au.id AS audit_id, au.rating, au.tags, au.note, au.auditor, au.created_at AS audited_at,
               (SELECT count(*) FROM audits h WHERE h.attempt_id = au.attempt_id) AS revisions
        FROM (SELECT * FROM audits QUALIFY row_number() OVER (PARTITION BY attempt_id ORDER BY id DESC) = 1) au
        JOIN v_attempts a ON a.attempt_id = au.attempt_id
        """
    )
    con.execute("CREATE SEQUENCE exemplar_set_id_seq START 1")
    con.execute(
        """
        CREATE TABLE exemplar_sets (
            id          INTEGER PRIMARY KEY DEFAULT nextval('exemplar_set_id_seq'),
            name        TEXT NOT NULL,
            version     INTEGER NOT NULL,
            task        TEXT NOT NULL,
            frozen      BOOLEAN NOT NULL DEFAULT false,   -- set once a run uses it; edits then make a new version
            note        TEXT NOT NULL DEFAULT '',
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            UNIQUE (name, version)
        )
        """
    )
    con.execute(
        """
        CREATE TABLE exemplars (
            set_id            INTEGER NOT NULL,
            position          INTEGER NOT NULL,
            question          TEXT NOT NULL,
            rationale         TEXT NOT NULL,
            answer            TEXT NOT NULL,
            choices           TEXT,                   -- JSON [[label, text], ...]
            source_attempt_id BIGINT,                 -- the audited attempt it came from, if any
            PRIMARY KEY (set_id, position)
        )
        """
    )
    con.execute("ALTER TABLE runs ADD COLUMN exemplar_set_id INTEGER")


def m004_accuracy_without_null_difficulty(con: duckdb.DuckDBPyConnection) -> None:
    """v_accuracy: a task without difficulties (CommonsenseQA, most JSONL files) no longer gets a second
    difficulty-NULL row per iteration beside the overall one; difficulty NULL means overall only."""
    con.execute(
        """
        CREATE OR REPLACE VIEW v_accuracy AS
        SELECT run_id, iteration, split, difficulty,
               count(*) AS n, count(*) FILTER (WHERE correct) AS correct,
               count(*) FILTER (WHERE correct) / count(*) AS accuracy
        FROM v_attempts
        WHERE (kind = 'eval' AND split = 'eval') OR (kind = 'generated' AND sample = 0)
        GROUP BY GROUPING SETS ((run_id, iteration, split, difficulty), (run_id, iteration, split))
        HAVING GROUPING(difficulty) = 1 OR difficulty IS NOT NULL
        """
    )


def m005_task_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Runs and exemplar sets record the task key they were made for (star_core/tasks/key.py), not the name alone.

    Backfill: a run's key comes from its config (only the jsonl task has key settings: answer_type).
    An exemplar set takes the key of a run that used it; otherwise the key it was validated for before
    keys existed: a shipped default set by its name, any other jsonl set the number answer type (the
    only one the old name-only validation knew).
    """
    con.execute("ALTER TABLE runs ADD COLUMN task_key TEXT")
    con.execute(
        """
        UPDATE runs SET task_key = CASE WHEN task = 'jsonl'
            THEN 'jsonl:answer_type=' || coalesce(json_extract_string(config, '$.answer_type'), 'number')
            ELSE task END
        """
    )
    con.execute("ALTER TABLE exemplar_sets ADD COLUMN task_key TEXT")
    con.execute(
        """
        UPDATE exemplar_sets SET task_key = coalesce(
            (SELECT min(r.task_key) FROM runs r WHERE r.exemplar_set_id = exemplar_sets.id),
            CASE WHEN task <> 'jsonl' THEN task
                 WHEN name = 'jsonl-choice-default' THEN 'jsonl:answer_type=choice'
                 WHEN name = 'jsonl-text-default' THEN 'jsonl:answer_type=exact'
                 ELSE 'jsonl:answer_type=number' END)
        """
    )


def m006_train_steps(con: duckdb.DuckDBPyConnection) -> None:
    """The fine-tuning loss at every optimizer step (iterations.train_loss keeps only the mean of the last 10%)."""
    con.execute(
        """
        CREATE TABLE train_steps (
            run_id        INTEGER NOT NULL,
            iteration     INTEGER NOT NULL,
            step          INTEGER NOT NULL,       -- 1-based optimizer step within the iteration
            loss          DOUBLE,                 -- NULL where the loss was not finite
            learning_rate DOUBLE,
            tokens        BIGINT,                 -- completion tokens the step trained on
            PRIMARY KEY (run_id, iteration, step)
        )
        """
    )


def m007_experiments(con: duckdb.DuckDBPyConnection) -> None:
    """Experiments: named groups of runs on the same problems and eval questions (the paper's comparison),
    each run one arm; the public view v_experiment_runs lists them."""
    con.execute("CREATE SEQUENCE experiment_id_seq START 1")
    con.execute(
        """
        CREATE TABLE experiments (
            id          INTEGER PRIMARY KEY DEFAULT nextval('experiment_id_seq'),
            name        TEXT NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            config      TEXT NOT NULL             -- JSON: the kind, the preset and the settings applied to every arm
        )
        """
    )
    con.execute(
        """
        CREATE TABLE experiment_runs (
            experiment_id INTEGER NOT NULL,
            arm           TEXT NOT NULL,          -- e.g. fewshot-answer, direct, star (star_core/engine/experiments.py)
            run_id        INTEGER NOT NULL,
            PRIMARY KEY (experiment_id, arm),
            UNIQUE (run_id)
        )
        """
    )
    con.execute(
        """
        CREATE VIEW v_experiment_runs AS
        SELECT e.id AS experiment_id, e.name AS experiment, er.arm, er.run_id
        FROM experiments e JOIN experiment_runs er ON er.experiment_id = e.id
        """
    )


def m008_labels_per_auditor(con: duckdb.DuckDBPyConnection) -> None:
    """Several auditors per attempt: v_audits keeps each auditor's current label, not the last label of anyone.

    An adjudication (audits.adjudicated) settles a disagreement between auditors; the latest one of an
    attempt is its own row of v_audits, beside the auditors' labels it settles. Every stored label stays
    (they count as not adjudicated), and v_audits keeps its columns, with `adjudicated` last;
    `revisions` now counts the history of that auditor's label (or of the adjudication).
    v_audit_agreement: each attempt two or more auditors rated, with their ratings (docs/audit.md#in-sql).
    """
    con.execute("ALTER TABLE audits ADD COLUMN adjudicated BOOLEAN NOT NULL DEFAULT false")
    con.execute(
        """
        CREATE OR REPLACE VIEW v_audits AS
        WITH current AS (
            SELECT *, count(*) OVER w AS revisions
            FROM audits
            WINDOW w AS (PARTITION BY attempt_id, CASE WHEN adjudicated THEN NULL ELSE auditor END, adjudicated)
            QUALIFY row_number() OVER (PARTITION BY attempt_id, CASE WHEN adjudicated THEN NULL ELSE auditor END,
                                       adjudicated ORDER BY id DESC) = 1
        )
        SELECT a.*, au.id AS audit_id, au.rating, au.tags, au.note, au.auditor, au.created_at AS audited_at,
               au.revisions, au.adjudicated
        FROM current au JOIN v_attempts a ON a.attempt_id = au.attempt_id
        """
    )
    con.execute(
        """
        CREATE VIEW v_audit_agreement AS
        SELECT attempt_id, any_value(run_id) AS run_id, any_value(iteration) AS iteration, any_value(kind) AS kind,
               any_value(problem_id) AS problem_id,
               count(*) FILTER (WHERE NOT adjudicated) AS auditors,
               list({'auditor': auditor, 'rating': rating} ORDER BY auditor) FILTER (WHERE NOT adjudicated) AS ratings,
               count(DISTINCT rating) FILTER (WHERE NOT adjudicated) = 1 AS agree,
               any_value(rating) FILTER (WHERE adjudicated) AS adjudicated_rating,
               any_value(auditor) FILTER (WHERE adjudicated) AS adjudicated_by
        FROM v_audits
        GROUP BY attempt_id
        HAVING count(*) FILTER (WHERE NOT adjudicated) >= 2
        """
    )


def m009_liveness(con: duckdb.DuckDBPyConnection) -> None:
    """runs.progress_at: when the run last reported progress (UTC), apart from heartbeat_at, which the process
    that owns a run now writes (in UTC) every 30 s whatever it is doing, as the proof that it is alive."""
    con.execute("ALTER TABLE runs ADD COLUMN progress_at TIMESTAMP")


def m012_imported_runs(con: duckdb.DuckDBPyConnection) -> None:
    """Runs imported from another framework's files (`star import`, docs/import.md): where they came from, which
    files (and how many of each file's rows) are in, and each imported attempt's reward.

    An imported run is an ordinary run (status done) to every page; the engine refuses to resume it. A file's
    `rows_done` is how many whole rows (lines) of it are stored, so a re-import reads only what was added since.
    """
    con.execute(
        """
        CREATE TABLE imported_runs (
            run_id            INTEGER PRIMARY KEY,
            format            TEXT NOT NULL,      -- trl-grpo | verl | inspect
            source            TEXT NOT NULL,      -- the file or folder imported, as an absolute path
            framework         TEXT NOT NULL,      -- TRL | verl | Inspect AI
            framework_version TEXT,               -- NULL where the files do not say
            correct_rule      TEXT NOT NULL,      -- how `correct` was decided, in words
            created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
        )
        """
    )
    con.execute(
        """
        CREATE TABLE imported_files (
            run_id      INTEGER NOT NULL,
            path        TEXT NOT NULL,            -- relative to imported_runs.source (the file's name for a single file)
            rows_done   BIGINT NOT NULL,          -- whole rows (lines) stored; a re-import starts after them
            skipped     TEXT,                     -- what the last import of it left out (a line cut short), if anything
            imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, path)
        )
        """
    )
    con.execute(
        """
        CREATE TABLE attempt_rewards (            -- the reward the other framework gave an imported attempt
            attempt_id BIGINT PRIMARY KEY,
            reward     DOUBLE
        )
        """
    )
    con.execute(
        """
        CREATE VIEW v_imported_runs AS
        SELECT i.run_id, r.name, i.format, i.framework, i.framework_version, i.source, i.correct_rule, i.created_at,
               (SELECT count(*) FROM imported_files f WHERE f.run_id = i.run_id) AS files,
               (SELECT sum(rows_done) FROM imported_files f WHERE f.run_id = i.run_id) AS rows
        FROM imported_runs i JOIN runs r ON r.id = i.run_id
        """
    )


def m013_seed_and_given_steps(con: duckdb.DuckDBPyConnection) -> None:
    """Seeded runs and partial-solution hints (docs/paper.md#the-seeded-loop).

    problems.solution: a dataset's own worked solution (gsm8k), the seed's and the partial hints' reference.
    attempts.given_text: the first steps of the reference a partial hint gave (the completion starts with them);
    given_steps and steps: how many steps were given and how many the reference has, so that the share of steps
    the model wrote itself is `1 - sum(given_steps) / sum(steps)`. A seed attempt (kind 'seed') is all given.
    v_attempts gains given_steps and steps (and given_text) as its last columns.
    """
    con.execute("ALTER TABLE problems ADD COLUMN solution TEXT")
    con.execute("ALTER TABLE attempts ADD COLUMN given_text TEXT")
    con.execute("ALTER TABLE attempts ADD COLUMN given_steps INTEGER")
    con.execute("ALTER TABLE attempts ADD COLUMN steps INTEGER")
    con.execute(
        """
        CREATE OR REPLACE VIEW v_attempts AS
        SELECT a.run_id, a.iteration, a.problem_id, p.split, p.difficulty, a.kind,
               p.question, a.hint, a.rationale, a.predicted AS predicted_answer,
               p.answer AS gold_answer, a.correct, a.verified, a.used_for_training,
               a.id AS attempt_id, a.sample, a.verify_reason, a.completion, a.prompt_id,
               a.question_prompt, a.prompt_tokens, a.new_tokens, a.seconds, a.created_at, p.choices,
               a.hint_leak, a.given_steps, a.steps, a.given_text
        FROM attempts a JOIN problems p USING (run_id, problem_id)
        """
    )


def m014_browse_speed(con: duckdb.DuckDBPyConnection) -> None:
    """Two tables derived from attempts, so the accuracy and coverage figures read a few rows per question or
    per iteration instead of every attempt (star_core/store/attempts.py keeps them current on every insert,
    training mark and problem save; backfilled here from what is stored):
    question_outcomes: per run, iteration, kind (generated, rationalized) and question, whether any attempt
    was correct and whether any is used for training;
    iteration_accuracy: per run, iteration, split and difficulty, the attempts v_accuracy counts and how many
    were correct."""
    con.execute(
        """
        CREATE TABLE question_outcomes (
            run_id      INTEGER NOT NULL,
            iteration   INTEGER NOT NULL,
            kind        TEXT NOT NULL,            -- generated | rationalized
            problem_id  TEXT NOT NULL,
            solved      BOOLEAN NOT NULL,         -- some attempt of this kind was correct
            kept        BOOLEAN NOT NULL          -- some attempt of this kind is used for training
        )
        """
    )
    con.execute(
        """
        INSERT INTO question_outcomes
        SELECT run_id, iteration, kind, problem_id, bool_or(correct), bool_or(used_for_training)
        FROM attempts WHERE kind IN ('generated', 'rationalized')
        GROUP BY run_id, iteration, kind, problem_id
        ORDER BY run_id, iteration
        """
    )
    con.execute(
        """
        CREATE TABLE iteration_accuracy (
            run_id      INTEGER NOT NULL,
            iteration   INTEGER NOT NULL,
            split       TEXT NOT NULL,
            difficulty  INTEGER,
            n           BIGINT NOT NULL,          -- eval attempts on eval questions, first generated sample on train ones
            correct     BIGINT NOT NULL
        )
        """
    )
    con.execute(
        """
        INSERT INTO iteration_accuracy
        SELECT a.run_id, a.iteration, p.split, p.difficulty, count(*), count(*) FILTER (WHERE a.correct)
        FROM attempts a JOIN problems p USING (run_id, problem_id)
        WHERE (a.kind = 'eval' AND p.split = 'eval') OR (a.kind = 'generated' AND a.sample = 0)
        GROUP BY a.run_id, a.iteration, p.split, p.difficulty
        ORDER BY a.run_id, a.iteration
        """
    )


MIGRATIONS = [m001_initial, m002_hint_leak, m003_audits_and_exemplar_sets, m004_accuracy_without_null_difficulty,
              m005_task_keys, m006_train_steps, m007_experiments, m008_labels_per_auditor,
              m009_liveness, m012_imported_runs, m013_seed_and_given_steps, m014_browse_speed]
