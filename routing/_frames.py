"""Tables and geo-tables of results, for notebooks: the shared part of every ``to_frame`` / ``to_gdf``.

pandas and geopandas are imported inside the functions, never at module level: the results live in
modules the CLI imports, and ``crisis-dispatch --help`` must not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from routing.units import format_eta

#: Coordinates in and out are WGS84 lon/lat (GeoJSON order), as in every ``to_geojson``.
CRS = "EPSG:4326"


def frame(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """A DataFrame with one row per mapping, in the given column order.

    Parameters
    ----------
    rows
        The items, usually the ``to_dict()`` rows of a result (so the table and the JSON agree).
    columns
        Column order; also the columns of an empty table (a result with no items still has a schema).

    Returns
    -------
    pandas.DataFrame
        Shape ``(len(rows), len(columns))`` when every row has exactly these keys; extra keys of a row
        become extra columns after them.
    """
    import pandas as pd

    rows = list(rows)
    extra = [k for r in rows for k in r if k not in columns]
    ordered = list(columns) + list(dict.fromkeys(extra))
    return pd.DataFrame.from_records(rows, columns=ordered)


def geo_frame(collection: Mapping[str, Any]) -> Any:
    """A GeoDataFrame from a GeoJSON FeatureCollection (or one Feature), CRS EPSG:4326.

    Parameters
    ----------
    collection
        What a result's ``to_geojson()`` returns: geometry in lon/lat, properties become columns.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per feature with a ``geometry`` column (points, lines or polygons in lon/lat).
    """
    import geopandas as gpd

    features = [collection] if collection.get("type") == "Feature" else list(collection.get("features", []))
    if not features:
        return gpd.GeoDataFrame({"geometry": gpd.GeoSeries([], crs=CRS)}, geometry="geometry", crs=CRS)
    return gpd.GeoDataFrame.from_features(features, crs=CRS)


def minutes(seconds: float | None) -> str:
    """``"4 min 12 s"`` for a ``__repr__`` (``"-"`` when unknown or unreachable): the one ETA format,
    :func:`routing.units.format_eta`."""
    return format_eta(seconds, missing="-")


def share(value: float | None) -> str:
    """``"83.4%"`` for a ``__repr__`` (``"-"`` when unknown)."""
    return "-" if value is None else f"{value:.1%}"
