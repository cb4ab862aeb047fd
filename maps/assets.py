"""Offline assets: Leaflet and friends from locally installed packages, inlined as ``data:`` URIs.

Folium links Leaflet, jQuery and its plugins from CDNs. A dispatch room's network is often closed, so an
offline map swaps every link for the same file taken from a package installed from PyPI (the
``XStatic-*`` packages, and the heat plugin that ships inside folium) and inlines it as a ``data:`` URI.
The result is one HTML file that works when copied to another machine and loads nothing remote.

Assets that have no local copy and that the maps do not need (Bootstrap, Font Awesome, Awesome Markers)
are dropped; the maps use circle markers and HTML badges instead of icon fonts.
"""

from __future__ import annotations

import base64
import importlib
import mimetypes
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import folium
from branca.element import Element, Figure
from folium.elements import JSCSSMixin

__all__ = [
    "LOCAL_ASSETS",
    "DROPPED_OFFLINE",
    "asset_path",
    "asset_data_uri",
    "make_offline",
    "remote_references",
]

# folium's asset name -> (python package holding the file, file path inside its data directory).
# Names are the keys folium uses in ``default_js`` / ``default_css``, so a plugin keeps working when
# folium changes its CDN URLs.
LOCAL_ASSETS: dict[str, tuple[str, str]] = {
    "leaflet": ("xstatic.pkg.leaflet", "leaflet.js"),
    "leaflet_css": ("xstatic.pkg.leaflet", "leaflet.css"),
    "jquery": ("xstatic.pkg.jquery", "jquery.min.js"),
    "leaflet-heat.js": ("folium", "templates/leaflet_heat.min.js"),
    "markerclusterjs": ("xstatic.pkg.leaflet_markercluster", "leaflet.markercluster.js"),
    "markerclustercss": ("xstatic.pkg.leaflet_markercluster", "MarkerCluster.css"),
    "markerclusterdefaultcss": ("xstatic.pkg.leaflet_markercluster", "MarkerCluster.Default.css"),
}

# Assets folium adds to every map that the maps here never use; offline they are left out rather than
# fetched. Anything else without a local copy is an error (see ``make_offline``).
DROPPED_OFFLINE: frozenset[str] = frozenset(
    {
        "bootstrap",
        "bootstrap_css",
        "glyphicons_css",
        "awesome_markers",
        "awesome_markers_css",
        "awesome_markers_font_css",
        "awesome_rotate_css",
    }
)

_SOURCE_MAP = re.compile(r"^\s*//[#@] sourceMappingURL=.*$", re.MULTILINE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)([^'\")]+)\1\s*\)")


def _data_dir(package: str) -> Path:
    module = importlib.import_module(package)
    base = getattr(module, "BASE_DIR", None)  # XStatic packages name their data directory
    if base:
        return Path(base)
    if module.__file__ is None:  # a namespace package: no directory to read assets from
        raise ValueError(f"{package} has no data directory")
    return Path(module.__file__).resolve().parent


def asset_path(name: str) -> Path:
    """Local file of the folium asset ``name`` (e.g. ``"leaflet"``, ``"leaflet_css"``).

    Parameters
    ----------
    name
        A key of :data:`LOCAL_ASSETS`.

    Returns
    -------
    Path
        The installed file.

    Raises
    ------
    KeyError
        If the asset has no local copy.
    FileNotFoundError
        If the package providing it is installed without the file.
    """
    package, rel = LOCAL_ASSETS[name]
    path = _data_dir(package) / rel
    if not path.is_file():
        raise FileNotFoundError(f"offline asset {name!r} missing: {path} (reinstall the package {package})")
    return path


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _inline_css_urls(css: str, base: Path) -> str:
    """Replace relative ``url(...)`` references in a stylesheet by ``data:`` URIs of the files."""

    def replace(match: re.Match[str]) -> str:
        ref = match.group(2).strip()
        if ref.startswith(("data:", "#")):
            return match.group(0)
        if re.match(r"^[a-z]+://", ref, re.IGNORECASE) or ref.startswith("//"):
            raise ValueError(f"stylesheet {base} references a remote resource: {ref}")
        target = (base / ref.split("?")[0].split("#")[0]).resolve()
        mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return f'url("{_data_uri(target.read_bytes(), mime)}")'

    return _CSS_URL.sub(replace, css)


@cache
def asset_data_uri(name: str) -> str:
    """The asset ``name`` as a self-contained ``data:`` URI (stylesheet images inlined too).

    Parameters
    ----------
    name
        A key of :data:`LOCAL_ASSETS`.

    Returns
    -------
    str
        ``data:text/javascript;base64,...`` or ``data:text/css;base64,...``.
    """
    path = asset_path(name)
    text = path.read_text(encoding="utf-8")
    # A sourceMappingURL would make developer tools fetch a file that is not there.
    text = _SOURCE_MAP.sub("", text)
    if path.suffix == ".css":
        return _data_uri(_inline_css_urls(text, path.parent).encode("utf-8"), "text/css")
    return _data_uri(text.encode("utf-8"), "text/javascript")


def _local_links(links: list[tuple[str, str]], owner: str) -> list[tuple[str, str]]:
    out = []
    for name, url in links:
        if url.startswith("data:"):
            out.append((name, url))
        elif name in LOCAL_ASSETS:
            out.append((name, asset_data_uri(name)))
        elif name in DROPPED_OFFLINE:
            continue
        else:
            raise ValueError(
                f"{owner} needs {name!r} ({url}) which has no local copy; it cannot be used in an offline map"
            )
    return out


def _walk(element: Element) -> Iterator[Element]:
    yield element
    for child in list(element._children.values()):
        yield from _walk(child)


def make_offline(m: folium.Map) -> folium.Map:
    """Point every Leaflet/plugin asset of ``m`` at inlined local copies; drop the unused ones.

    Call it once the map is complete (plugins added later would bring their CDN links back).
    The instance lists are replaced, never mutated: folium's class-level defaults stay untouched,
    so an online map built afterwards still gets the CDN links.

    Parameters
    ----------
    m
        The finished map.

    Returns
    -------
    folium.Map
        The same map, for chaining.

    Raises
    ------
    ValueError
        If an element needs an asset with no local copy (a plugin this module does not know).
    """
    root = m.get_root()
    for element in _walk(root):
        if isinstance(element, JSCSSMixin):
            owner = type(element).__name__
            element.default_js = _local_links(list(element.default_js), owner)
            element.default_css = _local_links(list(element.default_css), owner)
    if isinstance(root, Figure):
        # A previous (online) render leaves CDN links in the header; they would be rendered again.
        for key, child in list(root.header._children.items()):
            url = getattr(child, "url", None)
            if isinstance(url, str) and not url.startswith("data:"):
                del root.header._children[key]
    return m


_ANCHOR_HREF = re.compile(r"""<a\s[^>]*?href=["']$""", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"""(?:https?:)?//[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,}[^\s"'<>)\\]*""")
_DATA_CSS = re.compile(r"data:text/css;base64,([A-Za-z0-9+/=]+)")


def remote_references(html: str) -> list[str]:
    """Remote URLs an HTML page would load: anything ``http(s)://`` or ``//host`` outside a link.

    Hyperlinks (``<a href=...>``, e.g. the attribution) are not loaded and are allowed; every other
    occurrence counts (``src=``, ``<link href=>``, CSS ``url()``, tile URL templates in scripts). Inlined
    stylesheets are decoded and searched too. Inlined scripts are not (library sources mention URLs in
    comments and namespaces); the browser check watches their requests instead.

    Parameters
    ----------
    html
        The rendered page.

    Returns
    -------
    list of str
        The offending URLs, empty for a self-contained page.
    """
    found: list[str] = []
    texts = [html] + [
        # Comments are never loaded (Leaflet's stylesheet cites a bug tracker in one).
        re.sub(r"/\*.*?\*/", "", base64.b64decode(b).decode("utf-8", "replace"), flags=re.DOTALL)
        for b in _DATA_CSS.findall(html)
    ]
    for text in texts:
        # Scripts carry HTML as JSON strings (``\u003ca href=\"...``): undo that escaping first.
        for escaped, plain in (("\\u003c", "<"), ("\\u003e", ">"), ("\\u0026", "&"), ('\\"', '"'), ("\\/", "/")):
            text = text.replace(escaped, plain)
        # Base64 payloads cannot contain "://", but strip them so the scan stays linear and readable.
        text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "data:", text)
        for match in _URL_IN_TEXT.finditer(text):
            if match.group(0).startswith("//") and text[max(0, match.start() - 1)] not in "\"'( =":
                continue  # "//" inside a comment or a path, not a scheme-relative URL
            before = text[max(0, match.start() - 300) : match.start()]
            if _ANCHOR_HREF.search(before):
                continue
            found.append(match.group(0))
    return found
