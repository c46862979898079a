"""Exceptions the engine raises; the CLI and the pages turn them into messages.

Each carries a message a user can act on: what was wrong and how to fix it.
"""


class StarError(Exception):
    """Base class for every error the engine reports to a user."""


class ConfigError(StarError):
    """A RunConfig field has an invalid value."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def field_messages(self) -> dict[str, str]:
        """Each invalid field's message, for the CLI and the Runs form to name the field at fault.

        A subclass that checks every field at once (prepare.InvalidSettings) sets `errors`.
        """
        return dict(getattr(self, "errors", {self.field: self.message}))


class DatasetError(StarError):
    """A dataset file is missing or has a malformed line."""


class ModelLoadError(StarError):
    """A model could not be found or loaded."""


class StoreError(StarError):
    """The database file cannot be opened or is not a STaR Studio database."""


class RunStateError(StarError):
    """A run cannot be started or resumed in its current state."""


class ExportError(StarError):
    """An export file cannot be written where it was asked for (a folder, no permission, a full disk)."""


class ExperimentError(StarError):
    """An experiment does not exist, or cannot be run or resumed in its current state."""


class ImportInputError(StarError):
    """A file to import is not what its format writes: a missing column, a bad line, another framework's file."""
