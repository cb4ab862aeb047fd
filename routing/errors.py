"""Errors a user can cause, each with a message fit to show on one line."""

from __future__ import annotations


class CrisisDispatchError(Exception):
    """Base class of every error caused by input, data or state rather than by a bug."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidInput(CrisisDispatchError, ValueError):
    """Malformed input: not a number, out of range, a bad file."""

    status_code = 422


class OutsideServiceArea(InvalidInput):
    """A point beyond the city boundary tolerance or too far from the road network."""


class NotFound(CrisisDispatchError, KeyError):
    """An unknown team, call or site."""

    status_code = 404

    def __str__(self) -> str:  # KeyError would add quotes
        return self.message


class Conflict(CrisisDispatchError):
    """A request that contradicts the stored state (impossible transition, older report)."""

    status_code = 409


class DataMissing(CrisisDispatchError):
    """The data directory, or a file expected in it, cannot be found."""

    status_code = 500


def reason(exc: BaseException) -> str:
    """The reason of an error for a one-line message: an ``OSError``'s own text ("No such file or
    directory") without Python's ``[Errno 2] ... 'path'`` decoration, else ``str(exc)``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
