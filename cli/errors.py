"""Errors the CLI finds itself, before (or without) loading the library: `meqg monitor` must start fast."""


class CommandError(Exception):
    """Printed as `error: <message>`, exit 2, like the library's MeqgError."""
