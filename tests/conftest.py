"""The whole suite's fixtures: the tiny model's folder (tiny.py), torch's threads, the slow tests' order, the run
queue of its own, and the reference data sets. Each folder's conftest.py has what that folder's tests share.

The tiny model lets engine, loop and app tests exercise the real code path (load_model from a local folder,
shared-prefix generation, fine-tuning) in seconds; its tokenizer is the embedded default's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from dataclasses import dataclass

from tiny import build_tiny_model

# A sample of each reference dataset ships in tests/data (tests/data/README.md: the rows and their licences).
SAMPLE_DATASETS = Path(__file__).resolve().parent / "data"
# A folder with the full training splits (gsm8k/train.jsonl, commonsenseqa/train.jsonl): the same tests then
# run on them too. Unset, they run on the sample alone.
DATASETS_ENV = "STAR_DATASETS_DIR"
FULL_ROWS = {"gsm8k": 7473, "commonsenseqa": 9741}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a tiny random Llama checkpoint (a `model` value for RunConfig)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _use_cores(cores: list[int]) -> None:
    """Keep this process, and the processes it starts, to `cores`; torch takes one thread per core."""
    if cores:
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(max(1, len(cores) or min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _own_cores():
    # Each pytest-xdist process (pyproject's addopts), with the runs and apps its tests start, keeps to cores of
    # its own: a child's threads on the other test process's core slowed both many times over (docs/testing.md).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = ALL_CORES[index::workers] if workers > 1 else ALL_CORES
    _use_cores(share or ALL_CORES)  # more test processes than cores: they share them all
    yield


@pytest.fixture(autouse=True)
def _slow_tests_use_every_core(request):
    # A slow test runs a real model or a browser: it may use every core, as it did before the quick tests were
    # kept to their own (those it shares with wait a little; it would take twice as long on one core).
    if request.node.get_closest_marker("slow") is None or not ALL_CORES:
        yield
        return
    own = sorted(os.sched_getaffinity(0))
    _use_cores(ALL_CORES)
    yield
    _use_cores(own)


def pytest_collection_modifyitems(items):
    # The slow tests run whole models in other processes, and two model processes on a 2-core machine
    # slow each other many times over (docs/measurements.md): so they run one after another in one
    # test process, started first, while the other test process takes the quick ones.
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("slow"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _keep_the_main_module():
    # AppTest leaves a page's script as sys.modules["__main__"]; a child started with the "spawn"
    # method afterwards re-runs __main__'s file, so it would run that page and die (NoSessionContext).
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True, scope="session")
def _own_run_queue(tmp_path_factory):
    # The tests' runs (and their workers, which inherit the environment) queue among themselves,
    # not behind the real runs of this machine (star_core/engine/run_queue.py).
    os.environ["STAR_SLOTS"] = str(tmp_path_factory.mktemp("slots"))
    yield


@dataclass(frozen=True)
class ReferenceData:
    """A folder holding gsm8k/train.jsonl and commonsenseqa/train.jsonl, and how many rows each has."""

    folder: Path
    rows: dict

    def path(self, dataset: str) -> Path:
        return self.folder / dataset / "train.jsonl"


def reference_data_sets() -> list[ReferenceData]:
    """The shipped sample, and the full files where STAR_DATASETS_DIR names them (a wrong folder fails, never skips)."""
    sets = [ReferenceData(SAMPLE_DATASETS, {"gsm8k": 40, "commonsenseqa": 40})]
    if os.environ.get(DATASETS_ENV):
        folder = Path(os.environ[DATASETS_ENV]).expanduser()
        missing = [str(folder / d / "train.jsonl") for d in FULL_ROWS if not (folder / d / "train.jsonl").is_file()]
        assert not missing, f"{DATASETS_ENV}={folder} lacks {', '.join(missing)}"
        sets.append(ReferenceData(folder, FULL_ROWS))
    return sets


def pytest_generate_tests(metafunc):
    # A test that takes `reference_data` runs once per data set: always the sample, the full files when given.
    if "reference_data" in metafunc.fixturenames:
        sets = reference_data_sets()
        metafunc.parametrize("reference_data", sets, ids=["sample", "full"][: len(sets)])
