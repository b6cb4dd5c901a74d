"""Untrusted Python under operating-system isolation (see `runner`)."""

from .runner import Isolation, SandboxResult, SandboxUnavailable, isolation, run_python, unavailable_message

__all__ = ["Isolation", "SandboxResult", "SandboxUnavailable", "isolation", "run_python", "unavailable_message"]
