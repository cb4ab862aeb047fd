"""The ``crisis-dispatch`` command line: a thin layer over the engine.

Each area registers its subcommands from its own module (``cli_network``, ``cli_dispatch``, ...);
this module owns the shared options, the output conventions and the error contract: a user error
prints ``error: <one line>`` on stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from routing._json import to_jsonable  # the commands import it from here too
from routing.errors import CrisisDispatchError, InvalidInput, reason

# Modules that contribute subcommands, each with ``register(subparsers, common)``.
_COMMAND_MODULES = (
    "routing.cli.network",
    "routing.cli.dispatch",
    "routing.cli.calls",  # after dispatch: it adds ``fleet sync`` to dispatch's ``fleet``
    "routing.cli.planning",
    "routing.cli.maps",
    "routing.cli.simulate",
    "routing.cli.sweep",
    "routing.cli.serve",
    "routing.cli.data",
    "routing.cli.moveup",
)


class _ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A "LAT,LON" value may start with a minus sign (swapped coordinates, the southern or western
        # hemisphere): take it as a value, not as an unknown option, so the engine can say what is wrong.
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d*\.?\d+,\s*-?\d*\.?\d+$")

    # typeshed declares this method as overloads on the namespace type; one signature is all we need.
    def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # argparse reports a missing required option before an unknown one, so a typo such as `--form`
        # would read "required: --from". Name the unknown option first, with the nearest known one.
        if args is not None and not any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            known = [o for a in self._actions for o in a.option_strings]
            for token in args:
                if token == "--":
                    break
                name = token.split("=", 1)[0]
                if name.startswith("--") and name not in known and not any(k.startswith(name) for k in known):
                    import difflib

                    near = difflib.get_close_matches(name, known, n=1)
                    self.error(f"unrecognized option {name}" + (f" (did you mean {near[0]}?)" if near else ""))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other user error
        self.exit(2, f"error: {message}\n")


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand takes: ``--data``, ``--json``."""
    parent = _ArgumentParser(add_help=False)
    parent.add_argument("--data", metavar="DIR", help="real-data directory (default: $CRISIS_DISPATCH_DATA)")
    parent.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    return parent


#: Set to 1/true/yes/on for self-contained map pages (no CDN, no tiles), like ``--offline``.
OFFLINE_ENV = "CRISIS_DISPATCH_OFFLINE"


def offline_requested(args: argparse.Namespace) -> bool:
    """``--offline`` or ``$CRISIS_DISPATCH_OFFLINE`` set to 1/true/yes/on."""
    env = os.environ.get(OFFLINE_ENV, "").strip().lower()
    return bool(getattr(args, "offline", False)) or env in ("1", "true", "yes", "on")


def parse_latlon(text: str) -> tuple[float, float]:
    """Parse ``"LAT,LON"`` into floats; raises ``argparse.ArgumentTypeError`` with a clear message."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LAT,LON, got {text!r}")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAT,LON numbers, got {text!r}") from None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise argparse.ArgumentTypeError(f"coordinates must be finite numbers, got {text!r}")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"coordinates out of range (lat -90..90, lon -180..180): {text!r}")
    return lat, lon


#: Zone of a bare clock time given to ``--at`` / ``--received`` (``17:30`` is 17:30 today in Boston).
LOCAL_ZONE = "America/New_York"


def time_arg(text: str) -> Any:
    """Argparse type of every time option: ISO 8601 with a UTC offset, or a bare local ``HH:MM[:SS]``.

    A bare clock time is that time today in Boston (:data:`LOCAL_ZONE`); a date-time without an offset
    is refused, as everywhere (its zone would be a guess). Checked by :func:`routing.validate.timestamp`;
    a bad one is a one-line usage error (exit 2).
    """
    from routing.validate import timestamp

    try:
        return timestamp(text, "time", bare_time_zone=LOCAL_ZONE)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("time: ")) from None


def number_arg(kind: type = float, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, what: str = "a number") -> Callable[[str], Any]:
    """An argparse ``type``: a finite ``int`` or ``float`` within bounds, else a one-line usage error.

    ``low_open`` / ``high_open`` make a bound exclusive; ``what`` names the expectation in the message.
    """

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def write_json_file(path: str | Path, doc: Any, *, field: str = "output") -> None:
    """Write ``doc`` as JSON (NaN refused); a path that cannot be written is a one-line user error."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(to_jsonable(doc), fh, allow_nan=False)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {reason(exc)}", field=field) from None


#: Options that name where output goes or how it is shown, not what was computed: left out of
#: :func:`run_parameters`.
_NOT_PARAMETERS = {"func", "json", "geojson", "geojson_level", "records", "report", "out", "map", "no_map",
                   "no_progress", "offline", "db", "command"}


def run_parameters(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """What an exported file was computed with: the command, every option given or defaulted (team
    types, minutes, ``--at``, ``--hour``, ``--mode`` ...; times as ISO 8601), when it was written, and
    ``extra`` (e.g. the speed ``profile`` actually used). Exports carry it as ``parameters``: a member of
    a GeoJSON FeatureCollection or Feature, ``run_*`` columns of a CSV."""
    from datetime import UTC, datetime

    def plain(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    command = " ".join(str(v) for k, v in vars(args).items()
                       if k == "command" or k.endswith("_command") or k == "map_kind")
    out: dict[str, Any] = {"command": command}
    out.update({k: plain(v) for k, v in sorted(vars(args).items())
                if k not in _NOT_PARAMETERS and not k.endswith("_command") and k != "map_kind"})
    out.update({k: plain(v) for k, v in extra.items()})
    out["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result: dict[str, Any] = to_jsonable(out)
    return result


def emit(args: argparse.Namespace, result: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``result`` as JSON with ``--json``, else as readable text."""
    if getattr(args, "json", False) or text is None:
        json.dump(to_jsonable(result), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write((text if isinstance(text, str) else text(result)).rstrip("\n") + "\n")


class ProgressBar:
    """The engine's ``progress(fraction, label)`` callback drawn as tqdm bars on stderr, one bar per label.

    The engine only reports fractions; drawing is the front end's business, so tqdm is imported here,
    when the first step is reported, and never by ``--help``.
    """

    def __init__(self) -> None:
        self._bar: Any = None
        self._label: str | None = None

    def __call__(self, fraction: float, label: str) -> None:
        if label != self._label:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=100, desc=label, file=sys.stderr, leave=True, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
            self._label = label
        bar = self._bar
        done = min(100.0, max(0.0, fraction * 100.0))
        if done > bar.n:
            bar.update(done - bar.n)
        if fraction >= 1.0:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._label = None, None


def progress_for(args: argparse.Namespace) -> ProgressBar | None:
    """A progress bar for long work, or ``None`` (quiet) with ``--json``, ``--no-progress`` or when
    stderr is not a terminal: piped or logged output gets no carriage-return noise."""
    if getattr(args, "json", False) or getattr(args, "no_progress", False) or not sys.stderr.isatty():
        return None
    return ProgressBar()


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available subcommand."""
    parser = _ArgumentParser(
        prog="crisis-dispatch",
        description="Routing and placement engine for Boston's alternative 911 crisis response.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    subparsers.required = True
    common = common_parser()
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # an area not built yet
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crisis-dispatch``; returns the process exit code."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else list(argv)):
        parser.print_help()  # a bare `crisis-dispatch`: show what there is to do, then the one-line error
        print("error: a COMMAND is required (listed above)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except CrisisDispatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        return 0
    except OSError as exc:  # the environment (a path, a full disk, a port in use), not a bug: one line
        print(f"error: {reason(exc)}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
