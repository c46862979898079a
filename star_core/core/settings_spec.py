"""What the `star` command and the Runs form say about each RunConfig field, read from its metadata.

A field's label, section (group), help, choices, bounds and flag aliases are written once, beside
the field in core/config.py; `star run`'s flags (and those of every command that takes run
settings) and the form's widgets are both built here from them, so the two cannot disagree.

Streamlit is not imported here: star_core loads without it (the CLI, the workers), so the page
hands its `streamlit` module, or a container, to `widget`.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, fields

from .config import TYPES, Group, RunConfig, field_value

# Shared by every command that starts runs and the Runs form's checkbox (the queue is not a RunConfig field:
# it decides when a run starts, not what it computes, so it is not stored with the run).
NO_QUEUE_HELP = ("Start at once instead of waiting for a free slot of this machine (one per GPU, one for the CPU); "
                 "the running runs then share the cores, each slower. By default a run waits its turn.")


@dataclass(frozen=True)
class Setting:
    """One RunConfig field as the CLI and the form present it."""

    name: str
    type: str  # the annotation: a key of config.TYPES
    default: object
    label: str
    group: Group
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return flag(self.name)


def _setting(f) -> Setting:
    meta = f.metadata
    assert f.default is not MISSING and {"label", "group", "help"} <= set(meta), f"{f.name} lacks label, group or help"
    return Setting(f.name, f.type, f.default, meta["label"], Group(meta["group"]), meta["help"], meta.get("choices"),
                   meta.get("min"), meta.get("max"), tuple(meta.get("aliases", ())))


# In RunConfig's field order, which is also each section's order in the form.
SETTINGS: dict[str, Setting] = {f.name: _setting(f) for f in fields(RunConfig)}


def flag(name: str) -> str:
    """The command-line spelling of a setting: --min-difficulty."""
    return "--" + name.replace("_", "-")


def label(name: str) -> str:
    """The words the form (and the app's tables) use for a RunConfig field."""
    return SETTINGS[name].label


def sections() -> dict[str, list[str]]:
    """The form's sections in their order (titles as text), each with its fields in field order; empty ones left out."""
    out = {group.value: [name for name, s in SETTINGS.items() if s.group is group] for group in Group}
    return {title: names for title, names in out.items() if names}


# --- the command line --------------------------------------------------------------


def add_flags(parser, names: list[str]) -> None:
    """A flag per named field on `parser` (a parser or an argument group); an absent flag is None (not given)."""
    for name in names:
        s = SETTINGS[name]
        help_text = (s.help + f" (default: {s.default!r})").replace("%", "%%")  # argparse formats help with %
        if s.type == "bool":
            parser.add_argument(s.flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(s.flag, *s.aliases, dest=name, type=TYPES[s.type], choices=s.choices, default=None,
                                help=help_text, metavar=name.upper())


def given_settings(args: argparse.Namespace) -> dict:
    """The RunConfig settings given on the command line."""
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


# --- the form ----------------------------------------------------------------------


def widget(ui, name: str, value, *, key: str, options: list | None = None, format_func=None):
    """Draw field `name`'s widget on `ui` (the streamlit module or a container) showing `value`; returns its value.

    `options` replaces the field's choices with a list the page knows (the exemplar sets of its database).
    """
    s = SETTINGS[name]
    common = {"help": s.help, "key": key}
    if options is not None or s.choices:
        choices = list(options if options is not None else s.choices)
        extra = {"format_func": format_func} if format_func else {}
        return ui.selectbox(s.label, choices, index=choices.index(value) if value in choices else 0, **extra, **common)
    if s.type == "bool":
        return ui.checkbox(s.label, value=value, **common)
    if s.type == "int":
        return ui.number_input(s.label, value=value, min_value=s.min, max_value=s.max, step=1, **common)
    if s.type == "float":
        step = 10 ** math.floor(math.log10(abs(value))) if value else 0.01
        return ui.number_input(s.label, value=float(value), min_value=_float(s.min), max_value=_float(s.max),
                               step=float(step), format="%g", **common)
    return ui.text_input(s.label, value=str(value), **common)


def form_values(values: dict) -> dict:
    """What the form's widgets hold as field values: text without surrounding spaces, numbers in their field's type."""
    return {name: field_value(name, v.strip() if isinstance(v, str) else v) for name, v in values.items()}


def _float(x):
    return None if x is None else float(x)
