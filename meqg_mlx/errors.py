"""Errors meant for users: each message is one line that names the problem."""


class MeqgError(Exception):
    """Base class; the CLI prints `error: <message>` and exits non-zero."""


class ConfigError(MeqgError):
    """A config file or value that does not fit the dataclasses."""


class StoreError(MeqgError):
    """A concept store that is missing, corrupt, or asked to hold bad data."""


class InputError(MeqgError):
    """Text, files or vectors given by the user that cannot be used."""
