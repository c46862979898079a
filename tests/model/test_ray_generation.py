"""The batch-decoder seam and generation on Ray actors (--workers).

Pure parts (the batch plan, the batch seeds, where workers go) on hand cases; the local
decoder's per-batch seeds on the tiny model; then, on a local two-CPU Ray cluster, a
phase decoded by two actors against the single-process path, with an actor killed while
it holds batches, and a whole run with workers against one without.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import signal
import subprocess
import sys

import pytest

from tiny import tiny_config
from star_core.model.batch_decoder import DecodeBatch, LocalDecoder, batch_seed, plan_batches
from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError
from star_core.model.generate import Decoding
from star_core.model.loading import load_model

# --- the batch plan ------------------------------------------------------------------


@pytest.mark.parametrize(
    "items, per_batch, done, expected",
    [
        ([], 3, set(), []),
        ([1, 2, 3, 4, 5], 2, set(), [(0, [1, 2]), (1, [3, 4]), (2, [5])]),
        ([1, 2, 3, 4, 5], 2, {1, 2}, [(1, [3, 4]), (2, [5])]),  # a stored batch keeps the others' indices
        ([1, 2, 3, 4, 5], 2, {3, 4, 5}, [(0, [1, 2])]),
        ([1, 2, 3, 4, 5], 2, {3}, [(0, [1, 2]), (1, [4]), (2, [5])]),  # a batch partly stored: the rest, same index
        ([1, 2, 3], 5, {1, 2, 3}, []),
        ([1, 2, 3], 1, {2}, [(0, [1]), (2, [3])]),
    ],
)
def test_plan_batches(items, per_batch, done, expected):
    assert plan_batches(items, per_batch, lambda i: i in done) == expected


def test_plan_batches_needs_a_batch_size():
    with pytest.raises(ValueError):
        plan_batches([1], 0, lambda i: False)


def test_batch_seeds_depend_on_the_batch_only():
    seed = batch_seed(7, 2, "generated", 3)
    assert seed == batch_seed(7, 2, "generated", 3)  # wherever and whenever it is decoded
    others = {batch_seed(8, 2, "generated", 3), batch_seed(7, 1, "generated", 3),
              batch_seed(7, 2, "rationalized", 3), batch_seed(7, 2, "generated", 4)}
    assert seed not in others and len(others) == 4
    assert all(0 <= s < 2**63 for s in others | {seed})


# --- where the workers go ------------------------------------------------------------


@pytest.mark.parametrize(
    "nodes, workers, share",
    [
        ([2], 2, 1),
        ([2], 1, 2),
        ([16], 4, 4),
        ([16, 16], 4, 8),
        ([16, 16], 3, 8),  # 16 // 10 fits only one per node: 8 cores each lets three fit
        ([4, 2], 3, 2),
        ([3, 3], 4, 1),
        ([8.0], 3, 2),
    ],
)
def test_cpu_share(nodes, workers, share):
    from star_core.model.distributed.ray_generation import cpu_share

    assert cpu_share(nodes, workers) == share
    assert sum(int(n) // share for n in nodes) >= workers  # they fit
    assert share == max(int(n) for n in nodes) or sum(int(n) // (share + 1) for n in nodes) < workers  # the most that fits


def test_too_many_workers_for_the_cores_is_a_message():
    from star_core.model.distributed.ray_generation import WorkersError, cpu_share

    with pytest.raises(WorkersError, match="needs at least 3 CPU cores"):
        cpu_share([1, 1], 3)


def test_placement_puts_a_worker_on_each_gpu_where_there_are_gpus():
    from star_core.model.distributed.ray_generation import WorkersError, placement

    gpu_nodes = [{"CPU": 16, "GPU": 2}, {"CPU": 16, "GPU": 2}]
    assert placement("auto", 4, gpu_nodes) == (1, 1, "cuda")
    assert placement("cuda", 2, gpu_nodes) == (1, 1, "cuda")
    assert placement("cpu", 4, gpu_nodes) == (8, 0, "cpu")
    assert placement("auto", 2, [{"CPU": 4}]) == (2, 0, "cpu")
    with pytest.raises(WorkersError, match="has 4"):
        placement("auto", 5, gpu_nodes)
    with pytest.raises(WorkersError, match="has 0"):
        placement("cuda", 1, [{"CPU": 4}])


def test_worker_settings_are_validated():
    assert RunConfig(workers=2).workers == 2 and RunConfig().workers == 0 and RunConfig().train_processes == 1
    with pytest.raises(ConfigError, match="ray_address"):
        RunConfig(ray_address="head:6379")
    with pytest.raises(ConfigError, match="workers"):
        RunConfig(workers=-1)
    with pytest.raises(ConfigError, match="train_processes"):
        RunConfig(train_processes=9, batch_size=8)


def test_a_run_without_workers_imports_no_ray(tiny_model, tmp_path):
    code = (
        "import sys\n"
        "from tiny import tiny_config\n"
        "from star_core import cli\n"
        "from star_core.engine.loop import _GenerationModels\n"
        f"models = _GenerationModels(tiny_config({tiny_model!r}, iterations=0))\n"
        "models.get(None)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# --- the local decoder's seeds -------------------------------------------------------

QUESTIONS = [f"Question: {a} + {b} = ?\nAnswer:" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 1), (2, 3)]]
PREFIX = "Question: 1 + 1 = ?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"


def batches_of(questions, size=2, seed=0, kind="generated"):
    return [DecodeBatch(i, batch_seed(seed, 1, kind, i), tuple(questions[s : s + size]))
            for i, s in enumerate(range(0, len(questions), size))]


def texts(results):
    return {batch.index: [c.text for c in completions] for batch, completions in results}


def test_a_sampled_batch_depends_on_its_own_seed_not_on_the_batches_before_it(tiny_model):
    lm = load_model(tiny_model, "cpu")
    sampling = Decoding(max_new_tokens=8, temperature=1.0, top_p=1.0)
    batches = batches_of(QUESTIONS)
    every = texts(LocalDecoder(lm).decode(PREFIX, sampling, batches))
    assert sorted(every) == [0, 1, 2]
    last_alone = texts(LocalDecoder(lm).decode(PREFIX, sampling, batches[2:]))
    assert last_alone[2] == every[2]  # a resumed phase samples its remaining batches as the first try would have
    reseeded = texts(LocalDecoder(lm).decode(PREFIX, sampling, batches_of(QUESTIONS, seed=1)))
    assert reseeded != every  # and the seed matters (a random model's samples at T=1 differ)


# --- on a local Ray cluster ----------------------------------------------------------

GREEDY = Decoding(max_new_tokens=8)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray  # scripts/install.sh --test installs the ray extra: a missing Ray fails here rather than skipping
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def pools(monkeypatch):
    """Every RayDecoderPool the loop makes, so that a test can reach its actors."""
    from star_core.model.distributed import ray_generation

    made = []

    class Recorded(ray_generation.RayDecoderPool):
        def __init__(self, config):
            super().__init__(config)
            made.append(self)

    monkeypatch.setattr(ray_generation, "RayDecoderPool", Recorded)
    return made


def attempt_table(store, run_id):
    """Every stored attempt's identity and content, in stored order."""
    from star_core.core.states import AttemptKind

    iterations = sorted(store.iteration_phases(run_id))
    return [(n, c.kind.value, c.problem_id, c.sample, c.completion, c.correct)
            for n in iterations for kind in AttemptKind for c in store.attempts_of(run_id, n, kind)]


def kill_once_started(monkeypatch, slot=1):
    """kill -9 one decode actor's process as soon as the run's first pool has its actors up, before the phase's
    first batch comes back: the batches the pool then gives that actor are lost with it. (Killing it when the first
    batch is stored instead raced: under load the other actor could have decoded the rest of the phase by then.)
    Returns the pids killed."""
    from star_core.model.distributed import ray_generation

    pool_class, killed = ray_generation.RayDecoderPool, []
    start = pool_class._start

    def start_then_kill(pool):
        starting = not pool._actors
        start(pool)
        if starting and not killed:
            killed.append(pool.workers_info[slot]["pid"])
            os.kill(killed[-1], signal.SIGKILL)

    monkeypatch.setattr(pool_class, "_start", start_then_kill)
    return killed


def run_tiny(folder, tiny_model, **settings):
    from star_core.engine.loop import execute_run
    from star_core.engine.prepare import create_run
    from star_core.store import Store

    folder.mkdir(exist_ok=True)
    store = Store(folder / "s.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, **settings))
    execute_run(store, run_id)
    assert store.get_run(run_id).status == "done"
    steps = store.train_steps([run_id])
    losses = [float(x) for x in steps[steps.iteration == 1].sort_values("step").loss]
    return attempt_table(store, run_id), losses, store.run_folder(run_id) / "iteration-1"


@pytest.mark.slow
def test_a_run_on_two_workers_and_two_train_processes_matches_one_process_despite_a_kill_9(ray_cluster, tiny_model,
                                                                                           tmp_path, pools,
                                                                                           monkeypatch):
    """A direct run (it fine-tunes on every training question's gold answer, so even a random model fine-tunes),
    evaluated before and after fine-tuning: the second evaluation decodes with the new checkpoint on the workers."""
    from test_distributed_finetune import assert_same_weights

    # Batches of one question: the actors hold two each, and the phase has many more, some of which the killed
    # actor's slot is given after its death at the latest.
    settings = dict(mode="direct", min_steps=4, gen_batch_size=1, eval_size=12)
    one_attempts, one_losses, one_checkpoint = run_tiny(tmp_path / "local", tiny_model, **settings)
    killed = kill_once_started(monkeypatch)
    attempts, losses, checkpoint = run_tiny(tmp_path / "ray", tiny_model, workers=2, train_processes=2, **settings)
    assert len(killed) == 1 and pools[0].replaced == 1  # killed mid-phase; a fresh actor took its place
    keys = [row[:4] for row in attempts]
    assert len(keys) == len(set(keys)) == 24 and keys == [row[:4] for row in one_attempts]  # nothing twice or lost
    # Before fine-tuning: the same completions in the same order (greedy) ...
    assert [row for row in attempts if row[0] == 0] == [row for row in one_attempts if row[0] == 0]
    # ... then two processes take the steps one takes, to a checkpoint of the same weights in the same format.
    assert len(losses) == len(one_losses) == 4 and losses == pytest.approx(one_losses, rel=1e-4, abs=1e-5)
    assert (checkpoint / "adapter_config.json").exists()
    assert_same_weights(tiny_model, one_checkpoint, checkpoint)

    # Sampling, on the same (live) actors: each batch's samples come from its own seed, on whichever actor.
    sampling = Decoding(max_new_tokens=8, temperature=1.0, top_p=1.0)
    batches = batches_of(QUESTIONS)
    expected = texts(LocalDecoder(load_model(tiny_model, "cpu")).decode(PREFIX, sampling, batches))
    assert texts(pools[0].for_checkpoint(None).decode(PREFIX, sampling, batches)) == expected
    pools[0].release()
