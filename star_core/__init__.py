"""STaR Studio engine: tasks, models, the STaR loop and its DuckDB store.

This package never imports streamlit: the pages call into it, not the reverse.
"""

import warnings

__version__ = "0.1.0"

# peft 0.15-0.21 read transformers' deprecated `is_gradient_checkpointing` on every LoRA wrap, and
# transformers 5 warns on each read: silenced here, where every process that fine-tunes imports first.
# peft 0.22 no longer reads it; drop this once pyproject requires peft>=0.22.
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning,
    module=r"transformers\.modeling_utils",
)
