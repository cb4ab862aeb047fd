"""Bearer-token authentication and roles for the HTTP service.

The tokens live in a JSON file named by ``$CRISIS_DISPATCH_TOKENS_FILE`` (or ``serve --tokens``). It maps
each token to its role, or to an object with the role and optional details::

    {
      "0b7c...long random string...": "dispatcher",
      "9f1e...": {"role": "locator", "name": "AVL gateway", "teams": ["CR-A1", "CR-B2"]},
      "44aa...": {"role": "analyst", "name": "planning office"}
    }

Roles and what they may do:

``dispatcher``
    read teams, calls and assignments; create calls, assign teams, run the joint assignment, set
    statuses.
``locator``
    report positions only (optionally only for the teams listed under ``teams``).
``analyst``
    read-only: teams, position histories, calls, assignments, coverage, maps.
``admin``
    everything.

Tokens are never stored or compared in clear text after loading: the table keeps their SHA-256
digests and compares the presented token's digest against every entry with
:func:`hmac.compare_digest`, without stopping at the first match, so response time says nothing about
how much of a token was right. Nothing here logs a token; errors name the file and the entry number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from routing.errors import DataMissing, InvalidInput

TOKENS_ENV = "CRISIS_DISPATCH_TOKENS_FILE"
#: Shorter tokens are refused at load: they could be guessed.
MIN_TOKEN_LENGTH = 16

_log = logging.getLogger("crisis_dispatch.auth")


class Role(StrEnum):
    """What a token may do."""

    dispatcher = "dispatcher"
    locator = "locator"
    analyst = "analyst"
    admin = "admin"


class Permission(StrEnum):
    """Capabilities checked by the endpoints."""

    read = "read"  # teams, histories, calls, assignments, coverage, maps
    position = "position"  # PUT /teams/{id}/position
    dispatch = "dispatch"  # calls, assignments, statuses


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.dispatcher: frozenset({Permission.read, Permission.dispatch}),
    Role.locator: frozenset({Permission.position}),
    Role.analyst: frozenset({Permission.read}),
    Role.admin: frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, a display name (never the token) and an optional team restriction."""

    role: Role
    name: str
    teams: frozenset[str] | None = None

    def can(self, permission: Permission) -> bool:
        """Whether the role grants ``permission``."""
        return permission in ROLE_PERMISSIONS[self.role]

    def may_report_for(self, team_id: str) -> bool:
        """Whether a position report for ``team_id`` is allowed (locators may be limited to teams)."""
        return self.teams is None or team_id in self.teams


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable:
    """Token digests and their principals; :meth:`lookup` is constant-time in the token's content.

    Parameters
    ----------
    entries
        Mapping of token to role name, or to ``{"role": ..., "name": ..., "teams": [...]}``.
    source
        Where the entries came from (for error messages).

    Raises
    ------
    InvalidInput
        An unknown role, a token shorter than :data:`MIN_TOKEN_LENGTH`, a malformed entry.
    """

    def __init__(self, entries: Mapping[str, Any], *, source: str = "<tokens>") -> None:
        if not isinstance(entries, Mapping):
            raise InvalidInput(f"{source}: the tokens file must hold a JSON object mapping token to role",
                               field="tokens")
        self._entries: list[tuple[bytes, Principal]] = []
        for k, (token, value) in enumerate(entries.items(), start=1):
            where = f"{source}: entry #{k}"  # never the token itself
            if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH or token != token.strip():
                raise InvalidInput(f"{where}: a token must be a string of at least {MIN_TOKEN_LENGTH} "
                                   "characters without surrounding spaces", field="tokens")
            self._entries.append((_digest(token), _principal(value, where, k)))
        if not self._entries:
            raise InvalidInput(f"{source}: no tokens", field="tokens")

    def __len__(self) -> int:
        return len(self._entries)

    def roles(self) -> dict[str, int]:
        """Number of tokens per role (for the startup log)."""
        out: dict[str, int] = {}
        for _, p in self._entries:
            out[p.role.value] = out.get(p.role.value, 0) + 1
        return out

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None. Every entry is compared, whatever matches."""
        presented = _digest(token)
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = principal
        return found

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TokenTable:
        """Load a tokens file; warns (log) when other users may read it.

        Raises
        ------
        DataMissing
            The file does not exist.
        InvalidInput
            It is not a valid tokens file.
        """
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataMissing(f"tokens file not found: {p} (set {TOKENS_ENV} or --tokens)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read tokens file {p}: {exc.__class__.__name__}", field="tokens") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            # The message of a JSON error quotes no content, only the position.
            raise InvalidInput(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno})",
                               field="tokens") from None
        with suppress(OSError):
            mode = p.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                _log.warning("tokens file %s is readable by other users; run: chmod 600 %s", p, p)
        return cls(doc, source=str(p))

    @classmethod
    def from_env(cls) -> TokenTable:
        """Load the file named by ``$CRISIS_DISPATCH_TOKENS_FILE``.

        Raises
        ------
        DataMissing
            The variable is unset or the file is missing.
        """
        path = os.environ.get(TOKENS_ENV)
        if not path:
            raise DataMissing(f"no tokens file: set {TOKENS_ENV} to a JSON file mapping token to role "
                              "(see docs/SERVICE.md)")
        return cls.from_file(path)


def _principal(value: Any, where: str, k: int) -> Principal:
    if isinstance(value, str):
        value = {"role": value}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}: the value must be a role name or an object with 'role'", field="tokens")
    extra = set(value) - {"role", "name", "teams"}
    if extra:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}", field="tokens")
    try:
        role = Role(str(value.get("role", "")).strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"{where}: unknown role {value.get('role')!r} (one of: {allowed})",
                           field="tokens") from None
    name = value.get("name", f"{role.value}#{k}")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{where}: 'name' must be a non-empty string", field="tokens")
    teams = value.get("teams")
    if teams is not None:
        if not isinstance(teams, list) or not all(isinstance(t, str) and t for t in teams):
            raise InvalidInput(f"{where}: 'teams' must be a list of team ids", field="tokens")
        teams = frozenset(teams)
    return Principal(role, name.strip(), teams)


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
