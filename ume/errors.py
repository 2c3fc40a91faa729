"""Errors that reach the user. Each says what is wrong, where (file, key, row) and what to do."""


class UmeError(Exception):
    """Base class: a problem the user can fix (bad config, bad input file, missing model)."""


class ConfigError(UmeError):
    """A config key or value is wrong; the message names the key and the allowed values."""


class DataError(UmeError):
    """An input file, row, image or frame folder is missing or malformed; names the file."""


class OfflineError(UmeError):
    """Something tried to reach a model hub; ume never downloads at run time."""


class StorageError(UmeError):
    """A folder cannot take a write (disk full, read-only, no permission); names the folder and
    the config key that moves it. Nothing half-written is left behind."""
