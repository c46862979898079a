"""Soak: two runs on one machine while a person-like script uses the app in Chromium.

    python scripts/soak.py [--minutes 30] [--db PATH] [--run-args "..."] [--wait-runs-minutes 60]
    python scripts/soak.py --tiny --minutes 1     # a tiny random model: checks the script works

What it does:

* starts `streamlit run app.py` on a fresh database (or --db);
* starts one run as the app's Runs form does (create_run + jobs.launch: a background worker)
  and one with `star run` on the command line, which queues behind it (both with the queue of a
  private slots folder, so nothing else on the machine queues with them);
* for --minutes, drives Chromium (Playwright, Debian's /usr/bin/chromium) in a loop: the Browse page
  (a run filter, a search, sorting), the Audit page (labels with the keys 1, 2 and 3 on unaudited
  rationales) and, every --edit-every seconds, the Exemplars page (adds an exemplar to a set made
  for the soak);
* then waits for both runs to end (--wait-runs-minutes), and prints what it counted: errors shown
  on any page (an exception element, an error alert, 'Traceback' on the page), labels pressed vs
  stored, exemplar edits made vs stored, and how each run ended.

Prints figures; exits 0 when nothing went wrong, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
AUDITOR = "soak"
SET_NAME = "soak-edits"
TINY_FLAGS = ["--train-size", "16", "--eval-size", "8", "--max-new-tokens", "12", "--gen-batch-size", "4",
              "--batch-size", "4", "--min-steps", "40", "--device", "cpu"]


@dataclass
class Counts:
    errors: list[str] = field(default_factory=list)  # what a page showed that a user would call an error
    labels_pressed: int = 0  # keys that moved the page on (a label saved, as the page says)
    label_keys_refused: int = 0  # keys the page answered with a cue instead (pressed for an item it had left)
    label_keys_unanswered: int = 0  # keys after which nothing visible happened
    edits_made: int = 0
    edits_refused: int = 0
    browse_actions: int = 0
    audit_visits_without_items: int = 0
    page_visits: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(db: Path, env: dict, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=dict(env, STAR_DB=str(db)), stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200:
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"streamlit did not start (see {log})")
        time.sleep(0.5)


def start_runs(db: Path, flags: list[str], env: dict, folder: Path, cli_flags: list[str] = ()) -> tuple[int, subprocess.Popen]:
    """Run 1 as the app starts one (a background worker); run 2 with `star run`, queued behind it."""
    from star_core.runtime import jobs
    from star_core.engine.prepare import create_run, prepare_run
    from star_core.store import Store

    cli = subprocess.run([sys.executable, "-m", "star_core.cli", "run", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    os.environ.update(env)  # the worker inherits the private slots folder
    store = Store(db).init()
    given = _as_settings(flags)
    run_id = create_run(store, prepare_run(given).config)
    jobs.launch(store, run_id)
    time.sleep(2)  # the app's run asks for the slot first
    cli_run = subprocess.Popen([sys.executable, "-m", "star_core.cli", "run", "--db", str(db), *flags, *cli_flags], cwd=ROOT,
                               env=env, stdout=open(folder / "cli-run.log", "w"), stderr=subprocess.STDOUT)
    return run_id, cli_run


def _as_settings(flags: list[str]) -> dict:
    """`star run` flags as RunConfig settings, through the CLI's own parser."""
    from star_core.cli.commands import build_parser
    from star_core.core.settings_spec import given_settings

    return given_settings(build_parser().parse_args(["run", *flags]))


def seed_exemplar_set(db: Path) -> None:
    from star_core.store import ExemplarItem, Store
    from star_core.tasks.arithmetic import rationale_for

    Store(db).create_exemplar_set(SET_NAME, "arithmetic", [ExemplarItem("12 + 7", rationale_for(12, 7), "19")],
                                  note="edited by scripts/soak.py")


# --- the browser ----------------------------------------------------------------------------------


def settle(page, timeout_s: float = 60) -> None:
    """Wait until the app has finished its script run (the 'running' widget is gone)."""
    from playwright.sync_api import expect

    time.sleep(0.3)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout_s * 1000)


def open_page(page, url: str, title: str, counts: Counts) -> None:
    """Go to a page and wait until it is drawn (its title shown, its script finished)."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=60000)
    settle(page)
    counts.page_visits += 1


def look_for_errors(page, where: str, counts: Counts) -> None:
    found = []
    for selector in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        for el in page.locator(selector).all():
            try:
                found.append(el.inner_text(timeout=2000).strip().splitlines()[0][:200])
            except Exception:  # noqa: BLE001 - gone while read
                pass
    body = page.locator("body").inner_text(timeout=10000)
    if "Traceback" in body:
        found.append("'Traceback' on the page")
    for text in found:
        counts.errors.append(f"{where}: {text}")


def browse(page, url: str, run_id: int, counts: Counts, cycle: int) -> None:
    open_page(page, f"{url}/browse?run={run_id}", "Browse rationales", counts)
    from playwright.sync_api import expect

    search = page.get_by_role("textbox", name="Search question and rationale")
    expect(search).to_be_visible(timeout=60000)
    search.fill(("answer", "+", "=", "")[cycle % 4])
    search.press("Enter")
    settle(page)
    expect(page.get_by_text(re.compile(r"attempts? match")).first).to_be_visible(timeout=60000)
    counts.browse_actions += 1
    look_for_errors(page, "browse", counts)


def audit(page, url: str, counts: Counts, keys: int, cycle: int) -> None:
    from playwright.sync_api import expect

    item = page.get_by_text(re.compile(r"Item \d+ of"))
    empty = page.get_by_text(re.compile("No rationale matches|No rationales to audit yet"))
    # Unaudited training rationales; before the run has written any, its eval answers (iteration 0).
    for kind in ("", "&kind=eval"):
        open_page(page, f"{url}/audit?order=oldest&un=1&auditor={AUDITOR}{kind}", "Audit rationales", counts)
        expect(item.or_(empty)).to_be_visible(timeout=60000)
        if item.count():
            break
    if not item.count():
        counts.audit_visits_without_items += 1
        look_for_errors(page, "audit", counts)
        return  # nothing to audit yet
    title = page.get_by_role("heading", name="Audit rationales")
    for n in range(keys):
        expect(page.get_by_role("button", name="Sound")).to_be_visible(timeout=60000)
        title.first.click()  # focus out of any text box: keys are shortcuts
        before = page.url
        page.keyboard.press("123"[(cycle + n) % 3])
        try:
            page.wait_for_function("u => window.location.href !== u", arg=before, timeout=20000)
            counts.labels_pressed += 1
        except Exception:  # noqa: BLE001 - the page did not move on
            if page.get_by_text("that key was for #").count():
                counts.label_keys_refused += 1
            else:
                counts.label_keys_unanswered += 1
        settle(page)
    look_for_errors(page, "audit", counts)


def edit_exemplars(page, url: str, counts: Counts, n: int) -> None:
    from star_core.tasks.arithmetic import rationale_for

    open_page(page, f"{url}/exemplars?set={SET_NAME}@1", "Exemplar sets", counts)
    from playwright.sync_api import expect

    page.get_by_text("Add an exemplar by hand").first.click()
    a, b = 20 + n, 3 + n % 7
    form = page.get_by_test_id("stForm").filter(has=page.get_by_role("button", name="Add exemplar"))
    expect(form).to_be_visible(timeout=60000)
    form.get_by_role("textbox", name="Question").fill(f"{a} + {b}")
    form.get_by_role("textbox", name="Rationale").fill(rationale_for(a, b))
    form.get_by_role("textbox", name="Answer", exact=True).fill(str(a + b))
    form.get_by_role("button", name="Add exemplar").click()
    added = page.get_by_text("Added an exemplar")
    refused = page.get_by_test_id("stAlertContentError")
    try:
        expect(added.or_(refused).first).to_be_visible(timeout=60000)
    except Exception:  # noqa: BLE001 - neither: the click got no answer
        pass
    settle(page)
    if added.count():
        counts.edits_made += 1
    else:
        counts.edits_refused += 1
    look_for_errors(page, "exemplars", counts)


def drive(url: str, run_id: int, minutes: float, edit_every_s: float, counts: Counts, shots: Path) -> None:
    """Drive the pages until `minutes` are over; a step that fails leaves a screenshot in `shots`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            end = time.monotonic() + minutes * 60
            last_edit = 0.0
            cycle = 0
            while time.monotonic() < end:
                for name, step in (("browse", lambda: browse(page, url, run_id, counts, cycle)),
                                   ("audit", lambda: audit(page, url, counts, keys=3, cycle=cycle))):
                    try:
                        step()
                    except Exception as exc:  # noqa: BLE001 - a step that could not be done is counted, not fatal
                        shot = f"{name}-{cycle}.png"
                        page.screenshot(path=str(shots / shot))
                        counts.errors.append(f"driver: {name} ({shot}): {type(exc).__name__}: "
                                             f"{' '.join(str(exc).split())[:300]}")
                if time.monotonic() - last_edit >= edit_every_s:
                    try:
                        edit_exemplars(page, url, counts, counts.edits_made + counts.edits_refused)
                    except Exception as exc:  # noqa: BLE001
                        shot = f"exemplars-{cycle}.png"
                        page.screenshot(path=str(shots / shot))
                        counts.errors.append(f"driver: exemplars ({shot}): {type(exc).__name__}: "
                                             f"{' '.join(str(exc).split())[:300]}")
                    last_edit = time.monotonic()
                cycle += 1
                print(f"  {time.strftime('%H:%M:%S')} cycle {cycle}: {counts.labels_pressed} labels, "
                      f"{counts.edits_made} edits, {len(counts.errors)} errors", flush=True)
        finally:
            browser.close()


# --- the end -----------------------------------------------------------------------------------------


def report(db: Path, app_run: int, cli_run: subprocess.Popen, counts: Counts, wait_minutes: float) -> bool:
    from star_core.store import Store

    store = Store(db)
    deadline = time.monotonic() + wait_minutes * 60
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if len(runs) >= 2 and not runs.status.isin(["running", "queued", "pending"]).any() and cli_run.poll() is not None:
            break
        time.sleep(5)
    runs = store.list_runs()
    labels = store.audits_table(history=True)
    stored_labels = int((labels.auditor == AUDITOR).sum()) if not labels.empty else 0
    sets = store.list_exemplar_sets()
    soak_set = sets[sets.name == SET_NAME]
    stored_edits = int(soak_set.exemplars.max()) - 1 if not soak_set.empty else 0
    print()
    print(f"errors shown:            {len(counts.errors)}")
    for e in counts.errors[:20]:
        print(f"    {e}")
    print(f"labels pressed / stored: {counts.labels_pressed} / {stored_labels}"
          f"   (keys answered with a cue: {counts.label_keys_refused}, with nothing: {counts.label_keys_unanswered})")
    print(f"exemplar edits / stored: {counts.edits_made} / {stored_edits}   (refused: {counts.edits_refused})")
    print(f"page visits: {counts.page_visits}, browse actions: {counts.browse_actions}, "
          f"audit visits with nothing to audit: {counts.audit_visits_without_items}")
    for _, r in runs.iterrows():
        how = "app (worker)" if int(r.id) == app_run else "star run"
        print(f"run {int(r.id)} ({how}): {r.status}, {int(r.iterations_done)}/{int(r.iterations_planned)} iterations"
              + (f", error: {str(r.error).splitlines()[0][:120]}" if isinstance(r.error, str) and r.error else ""))
    both_done = len(runs) >= 2 and (runs.status == "done").all()
    ok = (not counts.errors and counts.labels_pressed == stored_labels and counts.edits_made == stored_edits
          and counts.label_keys_unanswered == 0 and both_done)
    print("OK" if ok else "NOT OK")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the browser drives the pages")
    parser.add_argument("--db", default=None, help="the database (default: a new one in a temp folder)")
    parser.add_argument("--run-args", default="--iterations 1", help="`star run` flags of both runs, quoted")
    parser.add_argument("--cli-run-args", default="", help="more flags for the `star run` one only, e.g. \"--no-rationalize\" "
                        "(the two runs then make a with/without comparison on the same problems)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and tiny runs: checks the script")
    parser.add_argument("--edit-every", type=float, default=10.0, help="seconds between exemplar edits")
    parser.add_argument("--wait-runs-minutes", type=float, default=60.0, help="how long to wait for the runs at the end")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no browser at {CHROMIUM} (apt-get install -y chromium)")

    folder = Path(tempfile.mkdtemp(prefix="star-soak-"))
    db = Path(args.db) if args.db else folder / "soak.duckdb"
    flags = shlex.split(args.run_args)
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import build_tiny_model  # the tests' tiny random Llama (the embedded model's tokenizer)

        flags += ["--model", str(build_tiny_model(folder / "tiny-model"))] + TINY_FLAGS
    env = dict(os.environ, PYTHONPATH=str(ROOT), STAR_SLOTS=str(folder / "slots"))
    print(f"soak in {folder}: database {db}, runs: star run {' '.join(flags)}", flush=True)

    port = free_port()
    app = start_app(db, env, port, folder / "app.log")
    cli_run = None
    try:
        app_run, cli_run = start_runs(db, flags, env, folder, shlex.split(args.cli_run_args))
        seed_exemplar_set(db)
        counts = Counts()
        drive(f"http://127.0.0.1:{port}", app_run, args.minutes, args.edit_every, counts, folder)
        ok = report(db, app_run, cli_run, counts, args.wait_runs_minutes)
    finally:
        app.terminate()
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
        if cli_run is not None and cli_run.poll() is None:
            print(f"the star run process is still going (pid {cli_run.pid}); logs in {folder}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
