"""Words instead of field names, legend labels that say what differs between runs, and Wilson error bars."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest

from star_core.core.config import RunConfig
from star_core.analysis.present import PALETTE, colors_for, distinguishing_labels, label, with_wilson
from star_core.analysis.stats import wilson_interval
from star_core.core.settings_spec import label as field_label


def cfg(**kw) -> dict:
    return asdict(RunConfig(**kw))


def test_legend_names_the_setting_that_differs():
    assert distinguishing_labels([cfg(rationalize=True), cfg(rationalize=False)]) == ["rationalize on", "rationalize off"]
    assert distinguishing_labels([cfg(seed=0), cfg(seed=1)]) == ["seed 0", "seed 1"]
    assert distinguishing_labels([cfg(lora_rank=8), cfg(lora_rank=16)]) == ["LoRA rank 8", "LoRA rank 16"]
    assert distinguishing_labels([cfg(learning_rate=2e-4), cfg(learning_rate=5e-5)]) == ["lr 0.0002", "lr 5e-05"]
    assert distinguishing_labels([cfg(model="/models/a/"), cfg(model="smollm2-135m")]) == ["a", "smollm2-135m"]


def test_legend_with_exemplar_sets_and_several_differences():
    a = {**cfg(seed=1, rationalize=False), "exemplars": "curated@1"}
    b = {**cfg(seed=0), "exemplars": "arithmetic-default@1"}
    # The settings experiments vary come first: rationalization, then the exemplar set, then the seed.
    assert distinguishing_labels([a, b]) == ["rationalize off, exemplars curated@1, seed 1",
                                            "rationalize on, exemplars arithmetic-default@1, seed 0"]
    many = [cfg(seed=0, train_size=10, eval_size=5, filter="answer"), cfg(seed=1, train_size=20, eval_size=6)]
    assert distinguishing_labels(many) == ["filter answer, seed 0, train 10 +1 more", "filter verified, seed 1, train 20 +1 more"]
    assert distinguishing_labels([{**cfg(), "exemplars": ""}, {**cfg(), "exemplars": "curated@2"}]) == [
        "exemplars default", "exemplars curated@2"]


def test_legend_ignores_names_and_identical_runs():
    assert distinguishing_labels([cfg(name="first"), cfg(name="second")]) == ["", ""]  # the caller shows the name
    assert distinguishing_labels([cfg()]) == [""]
    assert distinguishing_labels([]) == []
    three = distinguishing_labels([cfg(seed=0), cfg(seed=0), cfg(seed=2)])
    assert three == ["seed 0", "seed 0", "seed 2"]


def test_words_for_fields():
    assert label("predicted_answer") == "Answer given" and label("gold_answer") == "Gold answer"
    assert label("hint_leak") == "Hint leak" and label("train_loss") == "Final training loss"
    assert label("min_difficulty") == "Min. difficulty" and label("used_for_training") == "Trained on"
    assert label("some_new_column") == "Some new column"
    assert field_label("lora_rank") == "LoRA rank" and field_label("min_difficulty") == "Min. digits/difficulty"
    assert field_label("top_p") == "Top-p"
    for f in RunConfig.__dataclass_fields__:  # every setting has words, none shows its field name
        assert "_" not in field_label(f), f


def test_colours_are_distinct_and_stable():
    colours = colors_for(["#1 a", "#2 b", "#1 a", "#3 c"])
    assert list(colours) == ["#1 a", "#2 b", "#3 c"] and len(set(colours.values())) == 3
    assert colours["#1 a"] == PALETTE[0]
    assert len(set(colors_for([str(i) for i in range(len(PALETTE))]).values())) == len(PALETTE)


def test_wilson_error_bars():
    acc = pd.DataFrame({"n": [10, 4, 96], "correct": [8, 0, 71]})
    acc["accuracy"] = acc.correct / acc.n
    out = with_wilson(acc)
    for row in out.itertuples():
        lo, hi = wilson_interval(row.correct, row.n)
        assert (row.ci_low, row.ci_high) == pytest.approx((lo, hi))
        assert row.err_minus == pytest.approx(row.accuracy - lo) and row.err_plus == pytest.approx(hi - row.accuracy)
        assert row.err_minus >= 0 and row.err_plus >= 0
    assert out.ci_low[1] == 0.0 and out.err_minus[1] == 0.0  # 0 of 4: the bar starts at 0
