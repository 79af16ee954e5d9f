"""The engine's one error hierarchy. The server and the CLI turn these into messages."""

from __future__ import annotations


class CascodeError(Exception):
    """Base of every error the engine raises on purpose; its message is user-facing."""


class PlanError(CascodeError):
    """A plan file that cannot be loaded: names the file, the tier and the field."""


class ModelError(CascodeError):
    """A model file that is missing, unverified or cannot be loaded."""


class BackendError(CascodeError):
    """A backend failed to generate (remote endpoint down, bad response, ...)."""


class SandboxUnavailable(CascodeError):
    """No isolation layer is available: generated code will not be executed."""


class ContextError(CascodeError):
    """No function to complete at the given position."""


class DatasetError(CascodeError):
    """A malformed dataset file or record: names the file and the line."""


class Cancelled(CascodeError):
    """The request was cancelled (by the client or by a newer request)."""
