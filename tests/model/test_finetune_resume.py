"""Fine-tuning resumes from its saved state with the same result as if it had never stopped."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tiny import tiny_config
from star_core.model import train_state
from star_core.model.finetune import Example, TrainSettings, finetune
from star_core.model.loading import load_model

PREFIX = "Question: 1 + 1 = ?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"
EXAMPLES = [
    Example(f"Question: {a} + {b} = ?\nAnswer:", f" {a} + {b} = {a + b}. The answer is {a + b}.\n\n")
    for a, b in [(3, 4), (12, 9), (5, 5), (40, 2), (7, 8)]
]


def trained(lm) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in lm.model.named_parameters() if p.requires_grad}


def settings(method: str, steps: int = 23) -> TrainSettings:
    # batch 2 over 5 examples: the data order is reshuffled mid-run, so the order and its generator must be restored.
    return TrainSettings(steps=steps, batch_size=2, learning_rate=1e-2 if method == "lora" else 1e-3, method=method,
                         lora_rank=4, seed=3)


class Crash(Exception):
    pass


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_cancelled_fine_tuning_resumes_to_the_same_losses_and_weights(tmp_path, tiny_model, method):
    whole = load_model(tiny_model, "cpu", for_training=True)
    expected = finetune(whole, PREFIX, EXAMPLES, settings(method), state_dir=tmp_path / "whole")
    expected_weights = trained(whole)

    state = tmp_path / "stopped"
    first = load_model(tiny_model, "cpu", for_training=True)
    steps_seen: list[int] = []
    stopped = finetune(first, PREFIX, EXAMPLES, settings(method), on_step=lambda s, *_: steps_seen.append(s),
                       should_stop=lambda: len(steps_seen) >= 7, state_dir=state)
    assert stopped.steps == 7 and train_state.saved_step(state) == 7  # saved when it was stopped

    second = load_model(tiny_model, "cpu", for_training=True)  # a new process: the base model again
    resumed_steps: list[int] = []
    result = finetune(second, PREFIX, EXAMPLES, settings(method), on_step=lambda s, *_: resumed_steps.append(s),
                      state_dir=state)
    assert result.resumed_from == 7 and resumed_steps == list(range(8, 24))
    assert result.steps == expected.steps == 23
    assert result.losses == pytest.approx(expected.losses, rel=1e-5, abs=1e-6)
    assert result.final_loss == pytest.approx(expected.final_loss, rel=1e-5)
    assert result.tokens == expected.tokens and result.computed_tokens == expected.computed_tokens
    weights = trained(second)
    assert weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # Training moved the weights (a resume that changed nothing would not pass for a trivial reason).
    assert any(not torch.equal(value, p) for value, p in zip(expected_weights.values(), trained(first).values()))


def test_a_crash_resumes_from_the_last_periodic_state(tmp_path, tiny_model):
    expected = finetune(load_model(tiny_model, "cpu", for_training=True), PREFIX, EXAMPLES, settings("lora"))

    def crash_at_13(step, *_):
        if step == 13:
            raise Crash()

    state = tmp_path / "state"
    with pytest.raises(Crash):
        finetune(load_model(tiny_model, "cpu", for_training=True), PREFIX, EXAMPLES, settings("lora"),
                 on_step=crash_at_13, state_dir=state)
    assert train_state.saved_step(state) == train_state.EVERY_STEPS == 10  # the one before the crash
    result = finetune(load_model(tiny_model, "cpu", for_training=True), PREFIX, EXAMPLES, settings("lora"),
                      state_dir=state)
    assert result.resumed_from == 10
    assert result.losses == pytest.approx(expected.losses, rel=1e-5, abs=1e-6)


def test_a_state_of_another_job_is_not_used(tmp_path, tiny_model):
    state = tmp_path / "state"
    calls: list[int] = []
    finetune(load_model(tiny_model, "cpu", for_training=True), PREFIX, EXAMPLES, settings("lora"),
             on_step=lambda s, *_: calls.append(s), should_stop=lambda: len(calls) >= 4, state_dir=state)
    assert train_state.saved_step(state) == 4
    other = finetune(load_model(tiny_model, "cpu", for_training=True), PREFIX, EXAMPLES[:3], settings("lora", steps=5),
                     state_dir=state)
    assert other.resumed_from == 0 and other.steps == 5


def test_a_half_written_state_is_ignored_and_the_newest_complete_one_wins(tmp_path):
    folder = tmp_path / "state"
    train_state.save(folder, 10, {"fingerprint": "job", "x": torch.ones(2)})
    train_state.save(folder, 20, {"fingerprint": "job", "x": torch.full((2,), 2.0)})
    (folder / "step-000030.pt.partial").write_bytes(b"cut short by a kill")
    assert [s for s, _ in train_state.state_files(folder)] == [20]  # the older one was removed once 20 was in place
    state = train_state.load(folder, "job")
    assert state["step"] == 20 and state["x"].tolist() == [2.0, 2.0]
    assert train_state.load(folder, "another job") is None
    (folder / "step-000040.pt").write_bytes(b"damaged")
    assert train_state.load(folder, "job") is None  # unreadable: fine-tuning starts over instead of failing


@pytest.mark.parametrize("steps_since, seconds_since, last_save_s, due", [
    (0, 100.0, 0.0, False),  # nothing new since the last save
    (9, 59.0, 0.0, False),
    (10, 1.0, 0.0, True),  # every 10 steps
    (1, 60.0, 0.0, True),  # or every 60 s, whichever first
    (10, 5.0, 1.0, False),  # a save that took 1 s: not again within 10 s
    (10, 10.0, 1.0, True),
    (3, 90.0, 10.0, False),  # slow saves (full fine-tuning of a large model) stay under ~10% of the time
    (3, 100.0, 10.0, True),
])
def test_when_a_state_is_saved(steps_since, seconds_since, last_save_s, due):
    assert train_state.checkpoint_due(steps_since, seconds_since, last_save_s) is due


# --- through the loop ---------------------------------------------------------------------------


class CancelAtStep:
    """A reporter that asks the run to stop at a given fine-tuning step (as the Cancel button would)."""

    def __init__(self, store, run_id: int, step: int):
        self.store, self.run_id, self.step, self.in_finetune = store, run_id, step, False

    def phase(self, iteration, phase, total):
        self.in_finetune = phase == "finetune"

    def advance(self, done, total, tokens_per_s, note=""):
        if self.in_finetune and done == self.step:
            self.store.request_cancel(self.run_id)

    def message(self, text):
        pass


@pytest.mark.slow
def test_a_run_cancelled_while_fine_tuning_resumes_it_to_the_same_result(tmp_path, tiny_model, monkeypatch):
    from star_core.engine.loop import Cancelled, execute_run
    from star_core.engine.prepare import create_run
    from star_core.store import Store
    from star_core.tasks.arithmetic import ArithmeticTask

    monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, predicted, problem: True)  # every iteration trains
    config = tiny_config(tiny_model, filter="answer", min_steps=14, batch_size=3)

    def adapter(store: Store, run_id: int) -> dict[str, torch.Tensor]:
        folder = store.iterations(run_id).set_index("iteration").checkpoint[1]
        return load_file(f"{folder}/adapter_model.safetensors")

    whole = Store(tmp_path / "whole.duckdb").init()
    run = create_run(whole, config)
    execute_run(whole, run)

    stopped = Store(tmp_path / "stopped.duckdb").init()
    run2 = create_run(stopped, config)
    with pytest.raises(Cancelled):
        execute_run(stopped, run2, CancelAtStep(stopped, run2, step=6))
    state_dir = stopped.run_folder(run2) / "iteration-1.train"
    assert stopped.get_run(run2).status == "cancelled" and train_state.saved_step(state_dir) == 6
    execute_run(stopped, run2)

    assert stopped.get_run(run2).status == "done"
    assert not state_dir.exists()  # removed once the final checkpoint was saved
    a, b = whole.iterations(run).set_index("iteration"), stopped.iterations(run2).set_index("iteration")
    assert b.steps[1] == a.steps[1] == 14
    assert b.train_loss[1] == pytest.approx(a.train_loss[1], rel=1e-5)
    la, lb = whole.train_steps([run]), stopped.train_steps([run2])
    assert lb.step.tolist() == la.step.tolist() == list(range(1, 15))
    assert lb.loss.tolist() == pytest.approx(la.loss.tolist(), rel=1e-5, abs=1e-6)
    expected, got = adapter(whole, run), adapter(stopped, run2)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
