"""STaR Studio engine: tasks, models, the STaR loop and its DuckDB store.

This package never imports streamlit: the pages call into it, not the reverse.
"""

import warnings

__version__ = "0.1.0"

# peft (0.21, the newest) reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps
# a model: our get_peft_model (finetune.py) and PeftModel.from_pretrained (model.py). transformers 5
# warns on every read, so every `star run` printed a FutureWarning about code that is not ours and that
# we cannot change. Only that message from that property is silenced, here, where every process that
# fine-tunes (the CLI, a worker, a Ray actor, the training processes) imports the package first.
# Drop this once peft reads `is_activation_checkpointing`.
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning,
    module=r"transformers\.modeling_utils",
)
