"""Open a map in headless Chromium and report what a person would see.

The check drives Chromium through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so it needs nothing beyond the standard
library and the browser itself: no driver, no port, no extra package. It records console errors,
uncaught exceptions, failed loads and every network request, inspects the live Leaflet map (markers,
paths, layers, controls) and takes a screenshot.

Command line (for a quick look)::

    python -m maps.browser map.html --screenshot map.png
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserMissing", "Chromium", "LivePage", "PageReport", "ScreenshotStats", "find_chromium", "check_map",
           "screenshot_stats", "color_share"]

CHROMIUM_ENV = "CRISIS_DISPATCH_CHROMIUM"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


class BrowserMissing(RuntimeError):
    """No Chromium executable was found."""


def find_chromium() -> str:
    """Path of the Chromium executable: ``$CRISIS_DISPATCH_CHROMIUM``, else the usual names on PATH.

    Raises
    ------
    BrowserMissing
        If none is found (on Debian: ``apt-get install chromium``).
    """
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise BrowserMissing(f"${CHROMIUM_ENV}={explicit} is not an executable file")
        return explicit
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserMissing(f"no Chromium found (apt-get install chromium, or set ${CHROMIUM_ENV})")


# Run in the page once it has loaded: finds the Leaflet map(s) folium created and describes them.
_INSPECT_JS = r"""
(() => {
  const out = {leaflet: typeof L !== 'undefined' ? L.version : null, maps: []};
  if (!out.leaflet) return JSON.stringify(out);
  const text = (c) => {
    if (c == null) return '';
    if (typeof c === 'function') { try { c = c(); } catch (e) { return ''; } }
    let el;
    if (typeof c === 'string') { el = document.createElement('div'); el.innerHTML = c; }
    else if (c.cloneNode) el = c.cloneNode(true); else return String(c);
    // Cells and blocks end with a space, so "ETA" and "4 min" do not run together.
    el.querySelectorAll('td,th,div,p,li,br,h1,h2,h3,tr,b,table').forEach(e => e.append(' '));
    return el.textContent.replace(/\s+/g, ' ').trim();
  };
  const zero = () => ({markers: 0, circle_markers: 0, div_icons: 0, polylines: 0, polygons: 0, tiles: 0,
                       heat: 0, features: 0});
  const tally = (l, c, seen) => {
    if (seen.has(l)) return; seen.add(l);
    if (l instanceof L.CircleMarker) c.circle_markers++;
    else if (l instanceof L.Marker) { c.markers++; if (l.options.icon instanceof L.DivIcon) c.div_icons++; }
    else if (l instanceof L.Polygon) c.polygons++;
    else if (l instanceof L.Polyline) c.polylines++;
    else if (l instanceof L.TileLayer) c.tiles++;
    else if (L.HeatLayer && l instanceof L.HeatLayer) c.heat++;
    if (l.feature) c.features++;
    if (l.eachLayer) l.eachLayer(x => tally(x, c, seen));
  };
  const details = (l, acc, seen) => {
    if (seen.has(l)) return; seen.add(l);
    if ((l instanceof L.Marker || l instanceof L.CircleMarker || l instanceof L.Path) && !l.eachLayer) {
      const p = l.getPopup && l.getPopup(), t = l.getTooltip && l.getTooltip();
      const props = (l.feature && l.feature.properties) || null;
      if (p || t || props) acc.push({popup: p ? text(p.getContent()) : null, tooltip: t ? text(t.getContent()) : null,
                                     name: props && props.name !== undefined ? props.name : null,
                                     fill: l.options.fillColor || null});
    }
    if (l.eachLayer) l.eachLayer(x => details(x, acc, seen));
  };
  const controls = [];
  for (const key of Object.keys(window)) {
    let v; try { v = window[key]; } catch (e) { continue; }
    if (v && typeof v === 'object' && v.base_layers && v.overlays) controls.push(v);  // folium's LayerControl
  }
  for (const key of Object.keys(window)) {
    let m;
    try { m = window[key]; } catch (e) { continue; }
    if (!(m instanceof L.Map)) continue;
    const total = zero(); let inView = 0; const view = m.getBounds();
    m.eachLayer(l => {
      tally(l, total, new Set());
      if ((l instanceof L.Marker || l instanceof L.CircleMarker) && view.contains(l.getLatLng())) inView++;
    });
    // eachLayer on the map already lists the members of groups: count only leaves once.
    const leaves = zero(); const seen = new Set();
    m.eachLayer(l => { if (!l.eachLayer) tally(l, leaves, seen); });
    const layers = [];
    for (const ctl of controls) {
      for (const [kind, group] of [['base', ctl.base_layers], ['overlay', ctl.overlays]]) {
        for (const [name, layer] of Object.entries(group)) {
          const c = zero(); tally(layer, c, new Set());
          const items = []; details(layer, items, new Set());
          layers.push({name: text(name), kind: kind, shown: m.hasLayer(layer), counts: c, items: items});
        }
      }
    }
    const cont = m.getContainer();
    out.maps.push({
      id: cont.id, zoom: m.getZoom(), size: [cont.clientWidth, cont.clientHeight],
      counts: leaves, in_view: inView, layers: layers,
      layer_control: Array.from(cont.querySelectorAll('.leaflet-control-layers label')).map(x => x.textContent.trim()),
      attribution: text(cont.querySelector('.leaflet-control-attribution')),
      title: Array.from(cont.querySelectorAll('.cd-title')).map(x => x.innerText),
      legend: Array.from(cont.querySelectorAll('.cd-legend')).map(x => x.innerText),
      panels: Array.from(cont.querySelectorAll('.cd-panel')).map(x => x.innerText),
      canvases: cont.querySelectorAll('canvas').length,
    });
  }
  return JSON.stringify(out);
})()
"""

# Resolves after Leaflet had two animation frames to lay out and draw (canvas layers draw on a frame).
_SETTLE_JS = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 300))))"


@dataclass
class PageReport:
    """What the browser saw on one page."""

    url: str
    leaflet_version: str | None
    maps: list[dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes | None = None

    @property
    def remote_requests(self) -> list[str]:
        """Requests that left the machine (anything but ``file:``, ``data:``, ``blob:``, ``about:``)."""
        local = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")
        return [u for u in self.requests if not u.startswith(local)]

    @property
    def map(self) -> dict[str, Any]:
        """The single map of the page (folium pages have one)."""
        if len(self.maps) != 1:
            raise AssertionError(f"expected one Leaflet map on the page, found {len(self.maps)}")
        return self.maps[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the screenshot bytes)."""
        d = asdict(self)
        d.pop("screenshot")
        d["remote_requests"] = self.remote_requests
        return d


class Chromium:
    """A headless Chromium driven over the DevTools pipe. Use as a context manager.

    Parameters
    ----------
    executable
        Browser binary; default :func:`find_chromium`.
    width, height
        Viewport in CSS pixels (a dispatcher's screen, not a phone).
    timeout
        Seconds to wait for any single browser answer or page load.
    """

    def __init__(
        self, executable: str | None = None, *, width: int = 1280, height: int = 800, timeout: float = 30.0
    ) -> None:
        self.executable = executable or find_chromium()
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.TemporaryDirectory(prefix="cd-chromium-")
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._events: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    # -- process and transport -------------------------------------------------------------------
    def start(self) -> Chromium:
        """Launch the browser."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4; move the pipe ends there in the
        # child. Fresh duplicates first: dup() returns the lowest free numbers, so a < b and moving a to
        # 3 can never clobber b before it is moved to 4.
        def remap() -> None:  # runs in the child between fork and exec
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [self.executable, *_FLAGS, f"--user-data-dir={self._profile.name}",
                f"--window-size={self.width},{self.height}", "about:blank"]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4), preexec_fn=remap,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        self._stderr_tail: list[bytes] = []
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self.call("Browser.getVersion")  # fails fast if the pipe does not work
        except BaseException:
            self.close()  # never leave a half-started browser behind
            raise
        return self

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr_tail = (self._stderr_tail + [line])[-20:]

    def _read_loop(self) -> None:
        buf = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(raw))

    def _receive(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("browser did not answer in time")
        try:
            msg = self._inbox.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("browser did not answer in time") from None
        if msg is None:
            tail = b"".join(self._stderr_tail).decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"Chromium exited unexpectedly:\n{tail}")
        return msg

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Send one DevTools command and wait for its result; events seen meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode("utf-8") + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for ev in self._events:
                if ev["method"] == method and ev.get("sessionId") == session:
                    return
            msg = self._receive(deadline)
            if "method" in msg:
                self._events.append(msg)

    def close(self) -> None:
        """Shut the browser down and remove its profile."""
        if self._proc is not None and self._proc.poll() is None:
            self.timeout = min(self.timeout, 5.0)
            with contextlib.suppress(Exception):  # the browser may already be gone; it is killed below
                self.call("Browser.close")
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        for pipe in (getattr(self, "_out", None), getattr(self, "_in", None)):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pages --------------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike[str], *, screenshot: bool = True, script: str | None = None
             ) -> PageReport:
        """Load a local HTML file, let it render, and report what happened.

        Parameters
        ----------
        path
            The HTML file.
        screenshot
            Also capture a PNG of the viewport.
        script
            JavaScript run once the page has settled, before it is inspected (e.g. open a popup the way
            a click would); the page settles again afterwards.

        Returns
        -------
        PageReport
        """
        url = Path(path).resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=session)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            self.call("Page.navigate", {"url": url}, session=session)
            self._wait_event("Page.loadEventFired", session)
            self.call("Runtime.evaluate", {"expression": _SETTLE_JS, "awaitPromise": True}, session=session)
            if script:
                self.call("Runtime.evaluate", {"expression": script}, session=session)
                self.call("Runtime.evaluate", {"expression": _SETTLE_JS, "awaitPromise": True}, session=session)
            result = self.call(
                "Runtime.evaluate", {"expression": _INSPECT_JS, "returnByValue": True}, session=session
            )
            info = json.loads(result["result"]["value"])
            shot = None
            if screenshot:
                data = self.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
                shot = base64.b64decode(data)
            # One more round trip so late console messages are in the event list.
            self.call("Runtime.evaluate", {"expression": "1"}, session=session)
            return PageReport(
                url=url,
                leaflet_version=info.get("leaflet"),
                maps=info.get("maps", []),
                console_errors=self._errors(session),
                requests=[
                    _short_url(e["params"]["request"]["url"])
                    for e in self._events
                    if e.get("sessionId") == session and e["method"] == "Network.requestWillBeSent"
                ],
                screenshot=shot,
            )
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    @contextlib.contextmanager
    def live(self, url: str, *, before_load: str | None = None) -> Iterator[LivePage]:
        """Open ``url`` (e.g. a page of a running server) in a new tab and keep it open for interaction.

        Parameters
        ----------
        url
            Any URL the browser can load (``http://127.0.0.1:PORT/board``).
        before_load
            JavaScript run in the page before its own scripts (``Page.addScriptToEvaluateOnNewDocument``),
            e.g. to put a token in ``sessionStorage`` as a person typing it once would.

        Yields
        ------
        LivePage
            Evaluate expressions in the page, read its requests and console errors; closed on exit.
        """
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=session)
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                      session=session)
            if before_load:
                self.call("Page.addScriptToEvaluateOnNewDocument", {"source": before_load}, session=session)
            self.call("Page.navigate", {"url": url}, session=session)
            self._wait_event("Page.loadEventFired", session)
            yield LivePage(self, session, url)
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def _errors(self, session: str) -> list[str]:
        errors = []
        for e in self._events:
            if e.get("sessionId") != session:
                continue
            p = e["params"]
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"{p['entry'].get('text', '')} {p['entry'].get('url', '')}".strip())
        return errors


class LivePage:
    """A page kept open in :meth:`Chromium.live`."""

    def __init__(self, browser: Chromium, session: str, url: str) -> None:
        self.browser, self.session, self.url = browser, session, url

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The JSON value of ``expression`` in the page; a thrown exception is raised here."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": await_promise}, session=self.session)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description") or d.get("text", "exception"))
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 20.0, interval: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; its value. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout:.0f} s")
            time.sleep(interval)

    def requests(self) -> list[str]:
        """Every URL the page requested so far (``data:`` URIs shortened)."""
        self.evaluate("1")  # one round trip so the events sent meanwhile are in the list
        return [_short_url(e["params"]["request"]["url"]) for e in self.browser._events
                if e.get("sessionId") == self.session and e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads so far."""
        self.evaluate("1")
        return self.browser._errors(self.session)

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.browser.call("Page.captureScreenshot", {"format": "png"},
                                                  session=self.session)["data"])


@dataclass
class ScreenshotStats:
    """What a screenshot shows, in numbers: enough to tell a drawn map from an empty page."""

    width: int
    height: int
    distinct_colors: int
    dominant_share: float  # fraction of pixels in the single most common colour

    @property
    def blank(self) -> bool:
        """Nearly one colour: an empty or failed page."""
        return self.distinct_colors < 32 or self.dominant_share > 0.9


def _rgb(png: bytes) -> Any:
    import io

    import numpy as np
    from PIL import Image  # Pillow: listed with the test dependencies

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def screenshot_stats(png: bytes) -> ScreenshotStats:
    """Size, number of colours and share of the dominant colour of a PNG screenshot."""
    import numpy as np

    rgb = _rgb(png)
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    _, counts = np.unique(flat, return_counts=True)
    return ScreenshotStats(int(rgb.shape[1]), int(rgb.shape[0]), int(len(counts)),
                           float(counts.max() / flat.size))


def color_share(png: bytes, color: str, *, tolerance: int = 10,
                box: tuple[int, int, int, int] | None = None) -> float:
    """Fraction of pixels (in ``box`` = left, top, right, bottom) within ``tolerance`` of ``#rrggbb``."""
    import numpy as np

    rgb = _rgb(png).astype(int)
    if box is not None:
        left, top, right, bottom = box
        rgb = rgb[top:bottom, left:right]
    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    close = np.abs(rgb - target).max(axis=-1) <= tolerance
    return float(close.mean()) if close.size else 0.0


def _short_url(url: str) -> str:
    # Inlined assets are whole files; their media type is all a report needs.
    return url.split(",", 1)[0] + ",..." if url.startswith("data:") else url


def check_map(path: str | os.PathLike[str], screenshot_path: str | os.PathLike[str] | None = None) -> PageReport:
    """Open one map in a fresh headless Chromium; optionally write the screenshot.

    Parameters
    ----------
    path
        The HTML file.
    screenshot_path
        Where to write the PNG, if wanted.

    Returns
    -------
    PageReport
    """
    with Chromium() as browser:
        report = browser.open(path)
    if screenshot_path and report.screenshot:
        Path(screenshot_path).write_bytes(report.screenshot)
    return report


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maps.browser", description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the viewport here")
    args = parser.parse_args(argv)
    report = check_map(args.html, args.screenshot)
    json.dump(report.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    bad = report.console_errors or report.remote_requests or not report.leaflet_version
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main())
