"""Answer a run's eval questions again with another copy of a model, exactly as one of its iterations was
evaluated: the stored few-shot prefix and question prompts, the same batches in the same order, greedy decoding
with the run's settings. Used to check that an exported model (model_export.py) is the model that was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import RunStateError
from ..core.states import AttemptKind
from ..model.batch_decoder import DecodeBatch, LocalDecoder, batch_seed, plan_batches
from ..model.generate import Decoding, PrefixGenerator
from ..model.loading import load_model
from ..store import Store
from ..tasks import get_task
from .judge import judge
from .loop import decoding_order


@dataclass(frozen=True)
class Reevaluation:
    iteration: int
    correct: int  # right answers of the model given
    n: int
    stored_correct: int  # right answers the run stored for the iteration
    same_completions: int  # completions identical, character for character, to the stored ones

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    @property
    def stored_accuracy(self) -> float:
        return self.stored_correct / self.n


def reevaluate(store: Store, run_id: int, iteration: int, model: str, device: str | None = None) -> Reevaluation:
    """Evaluate `model` (a model spec, e.g. an exported folder) on run `run_id`'s eval questions as iteration
    `iteration` was evaluated, and compare with what was stored (nothing is written). `device`: the run's."""
    config = store.get_run(run_id).config
    task = get_task(config.task, config)
    stored = store.eval_answers(run_id, iteration)
    problems = [p for p in store.load_problems(run_id) if p.split == "eval"]
    if stored.empty or set(stored.problem_id) != {p.id for p in problems}:
        raise RunStateError(f"iteration {iteration} of run {run_id} has not answered all its eval questions")
    prefixes = set(stored.prefix)
    if len(prefixes) != 1:
        raise RunStateError(f"iteration {iteration} of run {run_id} was evaluated with {len(prefixes)} prompts")
    by_id = stored.set_index("problem_id")
    ordered = decoding_order(problems)
    planned = plan_batches(ordered, max(1, config.gen_batch_size), lambda p: False)  # eval: one sample each
    batches = [DecodeBatch(index, batch_seed(config.seed, iteration, AttemptKind.EVAL.value, index),
                           tuple(by_id.question_prompt[p.id] for p in chunk)) for index, chunk in planned]
    chunks = dict(planned)
    decoder = LocalDecoder(load_model(model, device or config.device), PrefixGenerator)
    correct = same = 0
    for batch, completions in decoder.decode(prefixes.pop(), Decoding(config.max_new_tokens, 0.0, config.top_p),
                                             batches):
        for problem, completion in zip(chunks[batch.index], completions):
            correct += judge(task, problem, AttemptKind.EVAL, completion.text).correct
            same += completion.text == by_id.completion[problem.id]
    return Reevaluation(iteration, correct, len(problems), int(stored.correct.sum()), same)
