"""Fine-tuning: completion-only loss, both methods, checkpoints that generation reloads."""

from __future__ import annotations

import pytest
import torch

from star_core.model.finetune import IGNORE, Example, TrainSettings, _encode, finetune, save_checkpoint
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.model.loading import load_model

PREFIX = "Question: 1 + 1 = ?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"
EXAMPLE = Example("Question: 3 + 4 = ?\nAnswer:", " 3 + 4 = 7. The answer is 7.\n\n")


@pytest.fixture(scope="module")
def learnable_model(tmp_path_factory) -> str:
    """A tiny model whose random embeddings are large enough for LoRA alone to move its logits.

    With the usual 0.02 init and 32 dimensions, no change to the linear layers can
    lift a token's logit by more than about 1 (the tied embeddings are tiny and not
    adapted), so only full fine-tuning could teach it.
    """
    from tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("learnable"), initializer_range=1.0))


def greedy(lm, prompt: str) -> str:
    return PrefixGenerator(lm, PREFIX, Decoding(max_new_tokens=16)).generate([prompt])[0].text


def test_labels_cover_the_completion_only(tiny_model):
    lm = load_model(tiny_model, "cpu")
    ids, labels = _encode(lm, EXAMPLE)
    prompt_len = len(lm.tokenizer(EXAMPLE.prompt, add_special_tokens=False).input_ids)
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:] and len(ids) > prompt_len


@pytest.mark.parametrize("method, rate", [("lora", 3e-2), ("full", 1e-2)])
def test_fine_tuning_teaches_the_completion_and_the_checkpoint_keeps_it(tmp_path, learnable_model, method, rate):
    lm = load_model(learnable_model, "cpu", for_training=True)
    assert greedy(lm, EXAMPLE.prompt) != EXAMPLE.completion  # a random model does not know it

    result = finetune(lm, PREFIX, [EXAMPLE, EXAMPLE], TrainSettings(steps=60, batch_size=2, learning_rate=rate, method=method))
    assert result.steps == 60 and result.final_loss < result.losses[0] / 10
    assert result.tokens > result.computed_tokens  # the prefix is computed once per step, not once per row
    assert greedy(lm, EXAMPLE.prompt) == EXAMPLE.completion

    folder = save_checkpoint(lm, tmp_path / "iteration-1")
    expected = {"lora": "adapter_model.safetensors", "full": "model.safetensors"}[method]
    assert (folder / expected).exists()
    reloaded = load_model(learnable_model, "cpu", checkpoint=folder)
    assert greedy(reloaded, EXAMPLE.prompt) == EXAMPLE.completion


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fine_tuning_goes_on_from_a_start_checkpoint(tmp_path, learnable_model, method):
    # the seed's model, then training that goes on from it: at learning rate 0 it must still answer as the seed does
    seed_lm = load_model(learnable_model, "cpu", for_training=True)
    finetune(seed_lm, PREFIX, [EXAMPLE, EXAMPLE], TrainSettings(steps=60, batch_size=2, learning_rate=3e-2 if
                                                                   method == "lora" else 1e-2, method=method))
    start = save_checkpoint(seed_lm, tmp_path / "iteration-0")

    lm = load_model(learnable_model, "cpu", for_training=True)
    settings = TrainSettings(steps=2, batch_size=2, learning_rate=0.0, method=method, start=str(start))
    finetune(lm, PREFIX, [EXAMPLE], settings)
    assert greedy(lm, EXAMPLE.prompt) == EXAMPLE.completion
    reloaded = load_model(learnable_model, "cpu", checkpoint=save_checkpoint(lm, tmp_path / "iteration-1"))
    assert greedy(reloaded, EXAMPLE.prompt) == EXAMPLE.completion

    other = "full" if method == "lora" else "lora"  # a start of the other method is named, not half-loaded
    with pytest.raises(ValueError, match="cannot go on from it"):
        finetune(load_model(learnable_model, "cpu", for_training=True), PREFIX, [EXAMPLE],
                 TrainSettings(steps=1, batch_size=1, learning_rate=0.0, method=other, start=str(start)))


def test_fine_tuning_can_stop_early(tiny_model):
    lm = load_model(tiny_model, "cpu", for_training=True)
    calls = []
    result = finetune(lm, PREFIX, [EXAMPLE], TrainSettings(steps=50, batch_size=1, learning_rate=1e-3),
                      on_step=lambda *args: calls.append(args), should_stop=lambda: len(calls) >= 3)
    assert result.steps == 3 and [c[0] for c in calls] == [1, 2, 3]


def test_training_weights_stay_float32(tiny_model):
    lm = load_model(tiny_model, "cpu", for_training=True)
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}


def test_short_rows_without_a_prefix_train_on_the_plain_loss_and_decode_without_one(tiny_model):
    # RunConfig.train_prefix off: the rows are whole sequences, so the loss is the model's own causal loss
    # over the completion tokens, and a generator with no prefix decodes what plain greedy decoding does.
    from star_core.model.finetune import _loss

    lm = load_model(tiny_model, "cpu")
    ids, labels = _encode(lm, EXAMPLE)
    short = Example("Input:\n1 + 2\nTarget:", "\n<scratch>\n</scratch>\n3\n\n")
    batch = [(ids, labels), _encode(lm, short)]
    loss, tokens = _loss(lm, [], batch)
    with torch.no_grad():
        plain = [lm.model(input_ids=torch.tensor([i]), labels=torch.tensor([lab])) for i, lab in batch]
    labelled = [sum(x != IGNORE for x in lab[1:]) for _, lab in batch]
    expected = sum(p.loss * n for p, n in zip(plain, labelled)) / sum(labelled)
    assert tokens == len(ids) + len(batch[1][0])
    assert torch.allclose(loss, expected, atol=1e-5)
    result = finetune(lm, "", [EXAMPLE, short], TrainSettings(steps=2, batch_size=2, learning_rate=1e-3))
    assert result.steps == 2 and result.computed_tokens == result.tokens  # no prefix: nothing is shared
    lm = load_model(tiny_model, "cpu")
    prompt = lm.tokenizer(EXAMPLE.prompt, add_special_tokens=False).input_ids
    got = PrefixGenerator(lm, "", Decoding(max_new_tokens=6)).generate([EXAMPLE.prompt])[0].token_ids
    with torch.no_grad():
        out = lm.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False)
    assert len(got) > 0 and list(got) == out[0, len(prompt):].tolist()[: len(got)]
