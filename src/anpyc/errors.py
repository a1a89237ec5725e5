"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class AnpycError(Exception):
    """Base class for every error whose message tells the user what to do."""


class ConfigError(AnpycError):
    """A configuration value, key or file is wrong."""


class DataError(AnpycError):
    """A data file is missing, corrupt or of the wrong shape."""


class TrainingError(AnpycError):
    """Training cannot go on (e.g. a non-finite loss)."""


class OutputError(AnpycError):
    """The output directory cannot be used or written."""


class CheckpointError(AnpycError):
    """No usable checkpoint: corrupt, truncated, or written by a different run."""


class DistributedError(AnpycError):
    """A multi-process run cannot start or its processes disagree."""
