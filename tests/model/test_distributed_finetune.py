"""Fine-tuning in two processes (--train-processes 2, gloo on this CPU) takes the steps one process takes.

The batch split and its token counts on hand cases; then two real processes launched as a
run launches them, against one process with the same global batch: the same loss at every
step (up to float rounding), a stop where it was asked, and a saved state that one process
resumes to the same loss curve and weights. The checkpoint two processes write is checked
by the run with --train-processes 2 in test_ray_generation.py.
"""

from __future__ import annotations

import pytest
import torch

from star_core.model.distributed.data_parallel import predicted_tokens, shard_bounds
from star_core.model.distributed.train_processes import _Tail, finetune_in_processes, threads_each
from star_core.model.finetune import IGNORE, Example, TrainSettings, finetune, save_checkpoint
from star_core.model.loading import load_model, use_bf16

PREFIX = "Question: 1 + 1 = ?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"
EXAMPLES = [
    Example(f"Question: {a} + {b} = ?\nAnswer:", f" {a} + {b} = {a + b}. The answer is {a + b}.\n\n")
    for a, b in [(3, 4), (12, 9), (5, 5), (40, 2), (7, 8), (123, 456), (9, 9)]
]


@pytest.mark.parametrize(
    "rows, world, parts",
    [
        (8, 2, [(0, 4), (4, 8)]),
        (7, 2, [(0, 4), (4, 7)]),
        (5, 3, [(0, 2), (2, 4), (4, 5)]),
        (3, 3, [(0, 1), (1, 2), (2, 3)]),
        (4, 1, [(0, 4)]),
        (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),  # fewer rows than processes: RunConfig forbids it; empty parts
    ],
)
def test_shard_bounds_cover_the_batch_once(rows, world, parts):
    assert [shard_bounds(rows, world, r) for r in range(world)] == parts


def test_shard_bounds_name_a_bad_rank():
    with pytest.raises(ValueError, match="rank 2"):
        shard_bounds(4, 2, 2)


@pytest.mark.parametrize(
    "labels, count",
    [
        ([IGNORE, IGNORE, 5, 6, 7], 3),
        ([5, 6, 7], 2),  # the first label is predicted by nothing
        ([IGNORE, IGNORE], 0),
        ([IGNORE, 4, IGNORE, 9], 2),
    ],
)
def test_predicted_tokens(labels, count):
    assert predicted_tokens(labels) == count


@pytest.mark.parametrize("threads, processes, each", [(2, 2, 1), (16, 4, 4), (1, 2, 1), (7, 2, 3)])
def test_threads_each(threads, processes, each):
    assert threads_each(threads, processes) == each


def test_the_progress_tail_reads_complete_lines_only(tmp_path):
    path = tmp_path / "progress.jsonl"
    tail = _Tail(path)
    assert tail.lines() == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert tail.lines() == [{"step": 1}, {"step": 2}]
    with open(path, "a") as f:
        f.write('p": 3}\n')
    assert tail.lines() == [{"step": 3}] and tail.lines() == []


def settings(method: str) -> TrainSettings:
    # A global batch of 4 over 7 examples: the order reshuffles mid-run; each process takes 2 rows of every batch.
    # 12 steps: a stop asked after the second is seen before the last.
    return TrainSettings(steps=12, batch_size=4, learning_rate=1e-2 if method == "lora" else 1e-3, method=method,
                         lora_rank=4, seed=5)


def one_process(tiny_model, method, folder):
    lm = load_model(tiny_model, "cpu", for_training=True)
    result = finetune(lm, PREFIX, EXAMPLES, settings(method))
    return result, save_checkpoint(lm, folder)


def weights(tiny_model, checkpoint) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_model(tiny_model, "cpu", checkpoint=checkpoint).model.state_dict().items()}


def assert_same_weights(tiny_model, a, b):
    """Two checkpoints of one base model load to the same weights.

    In float32, element by element (at bf16's precision: full checkpoints are bf16). Under bf16 autocast, the
    weights of two processes really do differ from one process's, and not through resuming: one process stopped and
    resumed is bit-identical to one that ran through, but two processes uninterrupted part from one process by
    0.0100 after their first step, one Adam step at lr 1e-2 (docs/measurements.md). Adam's step is about lr in size
    whatever the gradient's, so an element whose gradient is near zero moves a whole step one way or the other,
    depending on how bf16 rounded the rows of a batch split two ways. There each tensor is compared as a whole:
    measured, at most 2.0% apart (float32: 4e-7), while the losses agree to 1e-5.
    """
    wa, wb = weights(tiny_model, a), weights(tiny_model, b)
    assert wa.keys() == wb.keys()
    if use_bf16(torch.device("cpu")):
        for name in wa:
            assert (wa[name] - wb[name]).norm() <= 5e-2 * wb[name].norm(), name
        return
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=2e-2, atol=1e-3, msg=name)


@pytest.mark.slow
def test_two_processes_stop_where_asked_and_their_state_resumes_to_one_process_s_curve(tmp_path, tiny_model):
    expected, one_checkpoint = one_process(tiny_model, "lora", tmp_path / "one")
    state, checkpoint = tmp_path / "state", tmp_path / "two"
    seen = []
    stopped = finetune_in_processes(tiny_model, "cpu", 2, PREFIX, EXAMPLES, settings("lora"), tmp_path / "job",
                                    checkpoint, on_step=lambda step, total, loss, tps: seen.append((step, loss)),
                                    should_stop=lambda: len(seen) >= 2, state_dir=state)
    assert 2 <= stopped.steps < 12 and not checkpoint.exists()  # stopped early: its state saved, no checkpoint
    assert [s for s, _ in seen] == list(range(1, stopped.steps + 1))  # every step reported as one process reports it
    assert [loss for _, loss in seen] == stopped.losses
    assert stopped.losses == pytest.approx(expected.losses[: stopped.steps], rel=1e-4, abs=1e-5)  # the whole batch's
    assert not (tmp_path / "job").exists()

    # The state two processes saved is the one a single process saves: one process resumes it (any N could).
    lm = load_model(tiny_model, "cpu", for_training=True)
    resumed = finetune(lm, PREFIX, EXAMPLES, settings("lora"), state_dir=state)
    assert resumed.resumed_from == stopped.steps and resumed.steps == 12
    assert resumed.losses == pytest.approx(expected.losses, rel=1e-4, abs=1e-5)
    assert resumed.tokens == expected.tokens  # the whole batch's tokens, counted once
    assert_same_weights(tiny_model, one_checkpoint, save_checkpoint(lm, checkpoint))
