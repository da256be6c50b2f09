"""User-facing errors: the CLI prints these as one paragraph, without a traceback."""


class ContrastkitError(Exception):
    """Base class for errors caused by the user's input (config, data, run directory)."""


class ConfigError(ContrastkitError):
    """A config file or override is invalid; the message names the key path."""


class DataError(ContrastkitError):
    """A manifest or media file is unusable; the message names the file, row and column."""


class RunDirError(ContrastkitError):
    """A run directory is missing, incomplete or holds no usable checkpoint."""
