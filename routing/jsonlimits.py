"""Limits on JSON documents read from outside: nesting depth, checked before parsing.

Python's ``json`` module recurses once per nesting level, so a document nested a few thousand levels deep
raises ``RecursionError`` (a traceback in the CLI, a 400 or 500 in a service) instead of a message. No
call, position or status needs more than a handful of levels; :data:`MAX_DEPTH` leaves ample room for
anything legitimate and refuses the rest with one line, before any parser sees the text.
"""

from __future__ import annotations

import re

from routing.errors import InvalidInput

__all__ = ["MAX_DEPTH", "depth_error", "check_depth"]

#: Deepest nesting of arrays and objects accepted in a JSON document (a joint assignment needs 3).
MAX_DEPTH = 64

# A JSON string, escapes included: brackets inside strings do not nest. Alternatives are disjoint, so the
# match is linear in the length of the text.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def depth_error(raw: bytes | str, limit: int = MAX_DEPTH) -> str | None:
    """A one-line message if ``raw`` nests arrays/objects deeper than ``limit``, else None.

    Malformed text is not judged here (the parser reports it); only depth is.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Fewer opening brackets than the limit cannot nest past it: the common case costs two C-level scans.
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if match.group(0) in b"[{":
            depth += 1
            if depth > limit:
                return f"nested deeper than {limit} levels"
        else:
            depth -= 1
    return None


def check_depth(raw: bytes | str, *, field: str, where: str = "", limit: int = MAX_DEPTH) -> None:
    """Raise :class:`InvalidInput` (``field``) if ``raw`` is nested deeper than ``limit``.

    ``where`` prefixes the message (a file name, ``line 3``).
    """
    problem = depth_error(raw, limit)
    if problem is not None:
        raise InvalidInput(f"{where}{': ' if where else ''}{problem}", field=field)
