"""Importing other frameworks' generations (TRL GRPO, verl, Inspect AI) as runs: docs/import.md."""

from .formats import ROW_COLUMNS, inspect_rows, trl_rows, verl_rows
from .importer import ImportOutcome, import_run, problem_id, upload_folder
from .rules import CorrectRule, parse_correct_rule

__all__ = ["ROW_COLUMNS", "CorrectRule", "ImportOutcome", "import_run", "inspect_rows", "parse_correct_rule",
           "problem_id", "trl_rows", "upload_folder", "verl_rows"]
