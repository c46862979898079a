"""The `star` command: run STaR loops, list and cancel runs, export kept rationales, open the app."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ConfigError, StarError
from ..core.settings_spec import NO_QUEUE_HELP, SETTINGS, add_flags, flag, given_settings

DEFAULT_DB = "star.duckdb"
# What `star exemplars compare` lets one set for both of its runs: which eval questions, and how they are answered.
COMPARE_SETTINGS = ("model", "data", "data_map", "skip_bad_lines", "eval_size", "min_difficulty", "max_difficulty",
                    "seed", "max_new_tokens", "gen_batch_size", "device")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        for field, message in exc.field_messages().items():
            print(f"error: invalid {flag(field)}: {message}", file=sys.stderr)
    except StarError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        resume = f" resume with: star run --db {args.db} --resume {args.run_id}" if getattr(args, "run_id", None) else ""
        print(f"\ninterrupted;{resume}", file=sys.stderr)
        return 130
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star",
        description="STaR Studio: run the Self-Taught Reasoner loop and inspect every rationale it produces.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="start (or resume) a STaR run",
        description="Run the STaR loop: the seed alone or a few-shot baseline (iteration 0), then per iteration "
        "generate, rationalize, filter, fine-tune (from the seed's model, or the base model without a seed) and "
        "evaluate. Every attempt is stored in the database as it is made.",
    )
    _add_db(run)
    run.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a crashed, cancelled or interrupted run")
    _add_no_queue(run)
    _add_preset(run)
    group = run.add_argument_group("run settings (ignored with --resume: a run keeps its stored settings)")
    add_flags(group, list(SETTINGS))
    run.set_defaults(handler=_cmd_run)

    runs = sub.add_parser("runs", help="list the runs in a database with status and accuracy")
    _add_db(runs)
    runs.add_argument("--run", type=int, dest="run", metavar="RUN_ID",
                      help="one run's eval accuracy by iteration and difficulty instead, with what each iteration kept, "
                           "and which iteration's model is the best and which the latest")
    runs.set_defaults(handler=_cmd_runs)

    cancel = sub.add_parser(
        "cancel", help="cancel a queued or running run (as the app's Cancel button; resume it later)",
        description="Ask a run to stop: a running run stops after its current batch or step, a queued one leaves "
        "the queue before it loads a model, one whose worker is still starting is stopped. Its attempts stay "
        "stored; resume it with star run --resume RUN_ID.",
    )
    _add_db(cancel)
    # Not dest run_id: main's Ctrl-C message offers to resume args.run_id, which fits only `star run`.
    cancel.add_argument("run", type=int, metavar="RUN_ID", help="the run (see `star runs`)")
    cancel.set_defaults(handler=_cmd_cancel)

    export = sub.add_parser(
        "export", help="export a run's kept rationales as a fine-tuning dataset, or with --model its best model",
        description="Without --model: a run's kept rationales as prompt/completion rows (jsonl or parquet). With "
        "--model: the model of the run's best iteration (highest eval accuracy, the earliest of a tie), or of "
        "--iteration K, as a folder holding the base model with the fine-tuning merged in and its tokenizer, which "
        "transformers' AutoModelForCausalLM.from_pretrained(DIR) loads. A run keeps the checkpoints of its best and "
        "its latest iteration (star runs --run N names them).",
    )
    _add_db(export)
    export.add_argument("--run", type=int, required=True, dest="run", help="the run id (see `star runs`)")
    export.add_argument("--model", action="store_true", help="write the run's best model to the folder --out")
    export.add_argument("--iteration", type=int, metavar="K", help="with --model: iteration K's model instead of "
                        "the best one (its checkpoint must still be on disk)")
    export.add_argument("--format", choices=("jsonl", "parquet"), help="rationales: output format (default: jsonl)")
    export.add_argument("--out", required=True, help="the file to write (- for standard output; a FIFO or a "
                                                     "character device is written through); with --model, a new "
                                                     "folder")
    export.set_defaults(handler=_cmd_export)

    _add_import(sub)

    _add_compare(sub)

    _add_audit(sub)

    _add_exemplars(sub)

    _add_experiment(sub)

    app = sub.add_parser("app", help="open STaR Studio in the browser")
    _add_db(app)
    app.add_argument("--port", type=int, default=8501, help="port to listen on (default: 8501)")
    app.add_argument("--address", default="127.0.0.1", help="address to listen on (default: localhost only)")
    app.set_defaults(handler=_cmd_app)
    return parser


def _add_import(sub) -> None:
    from ..core.states import IMPORT_FORMATS

    imp = sub.add_parser(
        "import", help="import another framework's generations (TRL GRPO, verl, Inspect) as a run",
        description="Read the completions another framework wrote and store them as a run that every page shows: "
        "steps become iterations, each prompt a problem, its completions at a step samples. Importing the same "
        "files again adds only what is new (a new step's file, the rest of a file cut mid-line). The engine does "
        "not resume an imported run. docs/import.md has each format's mapping.",
    )
    imp.add_argument("format", metavar="FORMAT", help=f"what wrote the files: {', '.join(IMPORT_FORMATS)}")
    imp.add_argument("path", metavar="PATH", help="a file, or a folder searched for the format's files "
                     "(trl-grpo: completions_*.parquet; verl: {step}.jsonl; inspect: .eval or .json logs)")
    _add_db(imp)
    imp.add_argument("--name", help="the run's name (default: the format and the folder's name)")
    imp.add_argument("--task", metavar="KEY", help="judge each completion with this task's answer check against the "
                     "file's gold answer (and its step check where it has one): arithmetic, gsm8k, commonsenseqa, "
                     "or a jsonl key such as jsonl:answer_type=number")
    imp.add_argument("--correct", metavar="COLUMN>THRESHOLD", help="the column (an Inspect scorer) that says a "
                     "completion is right, and from what value: e.g. acc>0.5, reward>=1 (ops: > >= < <= ==)")
    imp.set_defaults(handler=_cmd_import)


def _add_compare(sub) -> None:
    compare = sub.add_parser(
        "compare", help="compare two runs (or two iterations) on their shared eval questions",
        description="Paired comparison of two evaluations on the eval questions both answered: each accuracy, the "
        "difference B - A with a 95% confidence interval (Newcombe's hybrid score interval for paired proportions) "
        "and an exact McNemar p-value, the four cells (both right, only A, only B, both wrong), per difficulty.",
    )
    _add_db(compare)
    compare.add_argument("a", metavar="RUN[@ITERATION]", help="side A, e.g. 3 or 3@2 (default iteration: the last evaluated)")
    compare.add_argument("b", metavar="RUN[@ITERATION]", help="side B")
    compare.add_argument("--format", choices=("table", "json"), default="table",
                         help="table (readable) or json (one object, for scripts; default: table)")
    compare.set_defaults(handler=_cmd_compare)


def _add_audit(sub) -> None:
    audit = sub.add_parser("audit", help="agreement between auditors, and the audit labels as a dataset")
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    agreement = actions.add_parser(
        "agreement", help="Cohen's kappa per pair of auditors and Krippendorff's alpha over all",
        description="Agreement between auditors on the rationales two or more of them rated (adjudications "
        "left out): Cohen's kappa for every pair on the items both rated, with n and a 95% bootstrap interval "
        "over items, and Krippendorff's alpha (nominal) over all auditors.",
    )
    _add_db(agreement)
    agreement.add_argument("--run", type=int, help="only this run's rationales")
    agreement.add_argument("--format", choices=("table", "json"), default="table", help="table or json (default: table)")
    agreement.set_defaults(handler=_cmd_audit_agreement)
    export = actions.add_parser("export", help="one row per (attempt, auditor) as JSONL or parquet")
    _add_db(export)
    export.add_argument("--out", required=True, help="labels.jsonl or labels.parquet (- for standard output)")
    export.add_argument("--format", choices=("jsonl", "parquet"), help="default: from the file's name")
    export.add_argument("--run", type=int, help="only this run's labels")
    export.set_defaults(handler=_cmd_audit_export)


def _add_preset(parser, default_note: str = "", none: bool = False) -> None:
    from ..core.presets import PRESETS, describe

    listed = "; ".join(f"{name} = {describe(name)}" for name in PRESETS)
    parser.add_argument("--preset", metavar="NAME", choices=list(PRESETS) + (["none"] if none else []),
                        help=(f"a named set of settings ({', '.join(PRESETS)}); a setting given beside it overrides "
                              f"the preset's value{default_note}. {listed}").replace("%", "%%"))


def _add_no_queue(parser) -> None:
    parser.add_argument("--no-queue", action="store_true", help=NO_QUEUE_HELP)


def _add_exemplars(sub) -> None:
    from ..tasks import KEY_FIELDS

    exemplars = sub.add_parser(
        "exemplars", help="list, import and export few-shot exemplar sets",
        description="Named, versioned few-shot exemplar sets. A set is validated for a task key (the task and the "
        "settings its answer check depends on, e.g. --task jsonl --answer-type choice); a run may use only a set "
        "made for its own key.",
    )
    actions = exemplars.add_subparsers(dest="action", required=True, metavar="ACTION")

    def task_flags(parser) -> None:
        add_flags(parser.add_argument_group("task (as for star run)"), ["task", *KEY_FIELDS])

    listing = actions.add_parser("list", help="every set: name@version, task key, size, frozen, runs using it")
    _add_db(listing)
    listing.add_argument("--all", action="store_true", help="every task (default: only the task given, if any)")
    task_flags(listing)
    listing.set_defaults(handler=_cmd_exemplars_list)

    imp = actions.add_parser("import", help="a new set (or the next version of NAME) from a JSONL file")
    _add_db(imp)
    imp.add_argument("file", help="one {question, rationale, answer[, choices]} object per line")
    imp.add_argument("--name", required=True, help="the set's name")
    imp.add_argument("--note", default="", help="a note stored with the set")
    task_flags(imp)
    imp.set_defaults(handler=_cmd_exemplars_import)

    compare = actions.add_parser(
        "compare", help="evaluate two sets few-shot on the same eval questions and compare them (paired)",
        description="Evaluate set A and set B as two ordinary iteration-0 runs (the few-shot baseline alone) with "
        "the same settings, so they answer the same eval questions; the runs are stored as an experiment of kind "
        "exemplars. Prints star compare's figures (accuracies, B - A with its 95% interval, exact McNemar p) and, "
        "in JSON, star compare's keys plus set_a and set_b.",
    )
    _add_db(compare)
    compare.add_argument("a", metavar="A[@VERSION]", help="set A (NAME alone: its latest version), e.g. arithmetic-default")
    compare.add_argument("b", metavar="B[@VERSION]", help="set B")
    compare.add_argument("--format", choices=("table", "json"), default="table", help="table or json (default: table)")
    _add_no_queue(compare)
    add_flags(compare.add_argument_group("settings of both runs (as for star run)"), list(COMPARE_SETTINGS))
    compare.set_defaults(handler=_cmd_exemplars_compare)

    exp = actions.add_parser("export", help="write a set as JSONL (the import format)")
    _add_db(exp)
    exp.add_argument("ref", metavar="NAME[@VERSION]", help="the set (NAME alone: its latest version)")
    exp.add_argument("--out", required=True, help="the file to write (- for standard output)")
    exp.set_defaults(handler=_cmd_exemplars_export)


def _add_experiment(sub) -> None:
    from ..core.presets import PAPER_EXPERIMENT_PRESETS

    experiment = sub.add_parser(
        "experiment", help="run the paper's comparison: five arms on the same problems and eval questions",
        description="An experiment is a named group of runs on the same problems and eval questions.",
    )
    kinds = experiment.add_subparsers(dest="kind", required=True, metavar="KIND")
    paper = kinds.add_parser(
        "paper", help="few-shot answer only, few-shot with rationales, direct fine-tuning, STaR without "
                      "rationalization, STaR",
        description="The arms of the paper's tables, run in order as ordinary runs: (1) few-shot, answer only; "
        "(2) few-shot with rationales; (3) direct fine-tuning on the gold answers; (4) STaR without "
        "rationalization; (5) STaR. Every setting given applies to every arm, so they share the problems and the "
        "eval questions; every arm that trains gets the same fine-tuning steps per iteration (--steps, or by "
        "default those of direct fine-tuning: epochs passes over every training question). Prints the table: "
        "eval accuracy overall and per difficulty, iterations, kept rationales, training tokens, wall time.",
    )
    _add_db(paper)
    paper.add_argument("--resume", type=int, metavar="EXPERIMENT_ID", help="continue an experiment's unfinished arms")
    _add_no_queue(paper)
    defaults = ", ".join(f"{p} for --task {t}" for t, p in PAPER_EXPERIMENT_PRESETS.items())
    _add_preset(paper, f" (default: {defaults}; none = no preset)", none=True)
    group = paper.add_argument_group("settings applied to every arm (ignored with --resume)")
    add_flags(group, [name for name in SETTINGS if name not in ("mode", "rationalize")])
    paper.set_defaults(handler=_cmd_experiment)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the DuckDB database file (default: {DEFAULT_DB})")


# --- commands ------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from ..engine.loop import Cancelled, execute_run
    from ..engine.prepare import create_run, prepare_run
    from .progress import ConsoleReporter, accuracy_table
    from ..store import Store

    given = given_settings(args)
    prepared = prepare_run(given, args.preset) if args.resume is None else None  # a bad flag stops before the file is touched
    store = Store.patient(args.db, on_wait=lambda message: print(f"note: {message}", file=sys.stderr)).init()
    if args.resume is not None:
        if args.preset:
            given["preset"] = args.preset
        if given:
            print(f"note: --resume keeps run {args.resume}'s stored settings; ignoring {', '.join(flag(k) for k in given)}", file=sys.stderr)
        args.run_id = args.resume
        store.get_run(args.resume)
    else:
        config = prepared.config
        if args.preset:
            print(f"note: preset {args.preset} (settings given beside it override its values)", file=sys.stderr)
        if prepared.suggested:
            shown = ", ".join(f"{flag(k)} {v}" for k, v in prepared.suggested.items())
            print(f"note: using {shown}, the {config.task} task's default (give the option to change it)", file=sys.stderr)
        args.run_id = create_run(store, config, ConsoleReporter())
        print(f"run {args.run_id} in {args.db}: {config.task} on {config.model}, {config.iterations} iterations")
    try:
        execute_run(store, args.run_id, ConsoleReporter(), queue=not args.no_queue)
    except Cancelled:
        print(f"run {args.run_id} cancelled; resume with: star run --db {args.db} --resume {args.run_id}", file=sys.stderr)
        return 1
    except StarError:
        raise
    except Exception as exc:
        print(f"error: run {args.run_id} failed: {type(exc).__name__}: {exc}\n"
              f"Its attempts so far are stored; resume with: star run --db {args.db} --resume {args.run_id}", file=sys.stderr)
        return 1
    print()
    print(accuracy_table(store, args.run_id))
    from ..tasks import chance_accuracy

    chance = chance_accuracy(store.get_run(args.run_id).config.task)
    if chance is not None:
        print(f"(chance accuracy of this task: {chance:.0%})")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from ..analysis.stats import CI_METHOD, TEST_METHOD
    from ..engine.experiments import (create_experiment, experiment_table, format_star_against_arms, format_table, plan,
                                      run_experiment, star_against_arms)
    from ..engine.loop import Cancelled
    from ..core.presets import paper_experiment_preset
    from .progress import ConsoleReporter
    from ..store import Store

    given = given_settings(args)
    preset = paper_experiment_preset(given.get("task"), args.preset)
    reporter = ConsoleReporter()
    if args.resume is None:
        plan(given, preset, args.kind)  # a bad flag stops before the file is touched
        store = Store(args.db).init()
        experiment_id = create_experiment(store, given, preset, args.kind, reporter)
        runs = store.get_experiment(experiment_id).runs
        print(f"experiment {experiment_id} in {args.db}: {args.kind}{', preset ' + preset if preset else ''}; "
              f"runs {', '.join(str(r) for r in runs.values())}")
    else:
        experiment_id = args.resume
        store = Store(args.db).init()
        store.get_experiment(experiment_id)
        if given or args.preset:
            print(f"note: --resume keeps experiment {experiment_id}'s stored settings; ignoring the settings given",
                  file=sys.stderr)
    resume = f"star experiment {args.kind} --db {args.db} --resume {experiment_id}"
    current: list[int] = []  # the arm's run that is running, for the message if it fails

    def on_arm(label: str, run_id: int) -> None:
        current[:] = [run_id]
        print(f"\n== {label}: run {run_id}", flush=True)

    try:
        run_experiment(store, experiment_id, reporter, queue=not args.no_queue, on_arm=on_arm)
    except Cancelled:
        print(f"experiment {experiment_id}: an arm was cancelled; continue with: {resume}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: {resume}", file=sys.stderr)
        return 130
    except StarError as exc:
        print(f"error: {exc}\nContinue with: {resume}", file=sys.stderr)
        return 1
    except Exception as exc:  # as star run: one line (details in the run's stored error), and how to go on
        where = f" (run {current[0]})" if current else ""
        print(f"error: experiment {experiment_id} failed{where}: {_one_line(exc)}\n"
              f"Its attempts so far are stored; continue with: {resume}", file=sys.stderr)
        return 1
    summary = store.experiment_summary(experiment_id)
    table = experiment_table(summary, store.experiment_accuracy(experiment_id))
    print(f"\nExperiment {experiment_id} ({args.kind}): eval accuracy at each arm's last iteration\n{format_table(table)}")
    print(f"\nSTaR paired with each arm on the same eval questions ({CI_METHOD}; {TEST_METHOD}):\n"
          + format_star_against_arms(star_against_arms(store, summary)))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..engine.importing import import_run
    from ..store import Store

    store = Store(args.db, on_wait=_say_waiting)
    with tqdm(total=0, unit="row", desc="import", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        outcome = import_run(store, args.format, args.path, name=args.name, task=args.task, correct=args.correct,
                             on_progress=progress)
    for line in outcome.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if outcome.run_id is None:
        print("nothing to import")
    elif outcome.rows == 0:
        print(f"run {outcome.run_id}: nothing new (every row of these files is already stored)")
    else:
        made = "new run" if outcome.new_run else "run"
        print(f"{made} {outcome.run_id}: {outcome.rows} completions from {outcome.files} file(s); "
              f"browse it with: star app --db {args.db}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from ..analysis.run_models import model_lines, on_disk, run_models
    from .progress import accuracy_table, runs_table

    store = _existing_store(args.db, on_wait=_say_waiting)
    if args.run is None:
        print(runs_table(store))
        return 0
    store.get_run(args.run)  # a RunStateError naming the missing run
    print(accuracy_table(store, args.run))
    models = run_models(store.finished_iterations(args.run))
    if models is not None:
        print("\nModels (a run keeps the checkpoints of its best and latest iteration, and a seeded run its seed's):")
        print("\n".join(f"  {line}" for line in model_lines(models)))
        if on_disk(models.best):
            print(f"  export the best with: star export --model --db {args.db} --run {args.run} --out DIR")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from ..runtime.jobs import cancel
    from ..core.states import RunStatus

    store = _existing_store(args.db, on_wait=_say_waiting)
    was = cancel(store, args.run)
    resume = f"resume it with: star run --db {args.db} --resume {args.run}"
    if was == RunStatus.RUNNING:
        print(f"run {args.run}: cancel requested; it stops after its current batch or step ({resume})")
    elif was == RunStatus.QUEUED:
        print(f"run {args.run}: cancel requested; it leaves the queue within seconds, before it loads a model "
              f"({resume})")
    elif was == RunStatus.CANCELLED:
        print(f"run {args.run} cancelled: its worker was stopped just after it had started the run ({resume})")
    else:
        print(f"run {args.run} cancelled before its worker started ({resume})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..analysis.export import export_kept
    from ..store import Store

    if args.model:
        return _export_model(args)
    if args.iteration is not None:
        raise StarError("--iteration chooses the model to export: give it with --model")
    if not Path(args.db).exists():
        raise StarError(f"database {args.db} does not exist")
    count = export_kept(Store(args.db, on_wait=_say_waiting), args.run, Path(args.out), args.format or "jsonl")
    _say_written(f"{count} kept rationales of run {args.run}", args.out)
    return 0


def _export_model(args: argparse.Namespace) -> int:
    from ..analysis.present import pct
    from ..engine.model_export import export_model

    if args.format is not None:
        raise StarError("--format is for the kept rationales; --model writes a model folder")
    store = _existing_store(args.db, on_wait=_say_waiting)
    done = export_model(store, args.run, Path(args.out), args.iteration)
    which = "its best" if done.best else "not its best"
    print(f"wrote the model of run {args.run}, iteration {done.iteration.iteration} ({which}; eval "
          f"{pct(done.iteration.accuracy)}, {done.iteration.correct}/{done.iteration.n}), {done.dtype}, to {args.out}; "
          f"load it with AutoModelForCausalLM.from_pretrained({str(args.out)!r})")
    return 0


def _say_written(what: str, out: str) -> None:
    """What an export wrote where: on stderr when the rows went to stdout, so that the pipe gets only the rows."""
    from ..analysis.export import is_stdout

    if is_stdout(out):
        print(f"wrote {what} to standard output", file=sys.stderr)
    else:
        print(f"wrote {what} to {out}")


def _cmd_compare(args: argparse.Namespace) -> int:
    import json

    from ..analysis.comparison import RunRef, compare_runs, format_table
    from ..store import Store

    if not Path(args.db).exists():
        raise StarError(f"database {args.db} does not exist")
    a, b = RunRef.parse(args.a), RunRef.parse(args.b)
    store = Store(args.db)
    result = compare_runs(store, a, b)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_table(result, store.run_labels()))
    return 0


def _cmd_audit_agreement(args: argparse.Namespace) -> int:
    import json

    from ..analysis.agreement import agreement, format_agreement

    store = _existing_store(args.db, on_wait=_say_waiting)
    if args.run is not None:
        store.get_run(args.run)
    result = agreement(store.agreement_labels(args.run))
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_agreement(result))
    return 0


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from ..analysis.export import export_labels

    store = _existing_store(args.db, on_wait=_say_waiting)
    count = export_labels(store, Path(args.out), args.format, args.run)
    _say_written(f"{count} audit labels", args.out)
    return 0


def _say_waiting(message: str) -> None:
    """A command waiting for a database another process holds says so (it gives up after the store's lock_timeout)."""
    print(f"note: {message}…", file=sys.stderr, flush=True)


def _existing_store(path: str, **options):
    from ..store import Store

    if not Path(path).exists():
        raise StarError(f"database {path} does not exist (start a run with: star run --db {path})")
    return Store(path, **options)


def _cmd_exemplars_list(args: argparse.Namespace) -> int:
    from ..tasks import task_key

    store = _existing_store(args.db)
    given = given_settings(args)
    key = None if args.all or "task" not in given else task_key(RunConfig(**given))
    sets = store.list_exemplar_sets(key=key)
    if sets.empty:
        print(f"no exemplar sets{' for ' + key.describe() if key else ''} in {args.db}")
        return 0
    shown = sets[["label", "task_key", "exemplars", "frozen", "runs", "note"]].rename(
        columns={"label": "set", "task_key": "task key", "runs": "used by runs"})
    print(shown.to_string(index=False))
    return 0


def _cmd_exemplars_import(args: argparse.Namespace) -> int:
    from ..engine import exemplars as ex
    from ..tasks import task_key

    config = RunConfig(**given_settings(args))  # the task flags: the key the set is validated for
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StarError(f"cannot read exemplar file {path}: {exc}") from exc
    from ..store import Store

    store = Store(args.db).init()
    set_id = ex.import_jsonl(store, args.name, task_key(config), text, note=args.note, source=str(path))
    s = store.exemplar_set(set_id)
    print(f"imported {len(s.items)} exemplars as {s.label} for {s.task_key.describe()}; use it with: "
          f"star run --exemplars {s.label}")
    return 0


def _cmd_exemplars_export(args: argparse.Namespace) -> int:
    from ..engine import exemplars as ex
    from ..analysis.export import write_text

    store = _existing_store(args.db)
    s = store.find_exemplar_set(args.ref)
    write_text(Path(args.out), ex.to_jsonl(s.items))
    _say_written(f"{len(s.items)} exemplars of {s.label} ({s.task_key.describe()})", args.out)
    return 0


def _cmd_exemplars_compare(args: argparse.Namespace) -> int:
    import json

    from ..engine import exemplar_compare
    from ..analysis.comparison import format_table
    from ..engine.loop import Cancelled
    from .progress import ConsoleReporter
    from ..store import Store

    store = Store.patient(args.db, on_wait=lambda message: print(f"note: {message}", file=sys.stderr)).init()
    reporter = ConsoleReporter()
    experiment_id = exemplar_compare.create(store, args.a, args.b, given_settings(args), reporter)  # both checked first
    found = exemplar_compare.result(store, experiment_id)
    # With --format json, standard output holds the JSON alone.
    print(f"exemplar comparison {experiment_id} in {args.db}: {found.set_a} (run {found.run_a}) vs {found.set_b} "
          f"(run {found.run_b})", file=sys.stderr if args.format == "json" else sys.stdout)
    current: list[int] = []  # the side's run that is running, for the message if it fails

    def on_arm(label: str, run_id: int) -> None:
        current[:] = [run_id]
        print(f"== {label}: run {run_id}", file=sys.stderr, flush=True)

    try:
        exemplar_compare.run(store, experiment_id, reporter, queue=not args.no_queue, on_arm=on_arm)
    except Cancelled:
        print(f"exemplar comparison {experiment_id} was cancelled", file=sys.stderr)
        return 1
    except Exception as exc:  # as star run: one line (details in the run's stored error), and how to go on
        where = f" (run {current[0]})" if current else ""
        print(f"error: exemplar comparison {experiment_id} failed{where}: {_one_line(exc)}\n"
              f"Its attempts so far are stored; continue with: {_continue_comparison(store, args.db, found)}",
              file=sys.stderr)
        return 1
    found = exemplar_compare.result(store, experiment_id)
    if args.format == "json":
        print(json.dumps(found.to_dict(), indent=2))
    else:
        print()
        print(format_table(found.comparison, store.run_labels()))
    return 0


def _one_line(exc: BaseException) -> str:
    """An unexpected error as one line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _continue_comparison(store, db: str, found) -> str:
    """The commands that finish an exemplar comparison: resume each side not done, then compare their iteration 0."""
    from ..core.states import RunStatus

    steps = [f"star run --db {db} --resume {run_id}" for run_id in (found.run_a, found.run_b)
             if store.get_run(run_id).status != RunStatus.DONE]
    return " && ".join([*steps, f"star compare --db {db} {found.run_a}@0 {found.run_b}@0"])


def is_loopback(address: str) -> bool:
    """Whether an address to listen on keeps the app on this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # empty (every address), or a host name that may resolve to a public interface


def _cmd_app(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parents[2] / "app.py"
    if not app.exists():
        raise StarError(f"the app is not installed beside the engine ({app} is missing)")
    os.environ["STAR_DB"] = str(Path(args.db).resolve())
    if not is_loopback(args.address):
        print(f"warning: the app listens on {args.address or 'every address'}, so other machines can reach it, and it "
              "has no login: anyone who reaches it can create database files, load any file this user can read as a "
              "dataset and start runs (--address 127.0.0.1 keeps it on this machine)", file=sys.stderr, flush=True)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(app), "--server.address", args.address, "--server.port", str(args.port),
                "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    return stcli.main()

