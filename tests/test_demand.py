"""The demand surface: facts of the real incident data, mass conservation, user CSVs, time of day."""

from __future__ import annotations

import numpy as np
import pytest

from routing import demand as dm
from routing.errors import InvalidInput

# SOURCES.md, boston-context: MH-proxy incidents by neighbourhood in the citywide 2023-01-01..03-17 file,
# geocoded rows only, n = 3,004.
_TABLE = {"Dorchester": 619, "Roxbury": 386, "Jamaica Plain": 201, "Downtown": 180, "East Boston": 163}


@pytest.fixture(scope="module")
def raw(boston, places):
    return dm.load_demand(boston, places, bandwidth_m=0)


def test_default_surface_uses_the_citywide_file_and_sums_to_the_total(boston, places):
    d = dm.load_demand(boston, places)
    assert d.points_read == 3_004  # SOURCES.md: n = 3,004 geocoded MH-proxy rows, citywide 2023 Q1
    assert d.points_used + d.points_dropped == d.points_read and d.points_dropped <= 3
    assert d.weights.shape == (boston.n_nodes,) and (d.weights >= 0).all()
    assert d.weights.sum() == pytest.approx(dm.DEFAULT_ANNUAL_TOTAL)
    assert d.annual_total == pytest.approx(10_000)
    # Smoothing spreads the 3,004 points over most nodes; raw snapping leaves most nodes empty.
    assert (d.weights > 0).sum() > 10_000
    assert "citywide_2023Q1" in d.description


def test_neighborhood_shares_follow_the_published_table(raw):
    totals = raw.by_neighborhood()
    # Harbor Islands has no roads; every other neighborhood has nodes and incidents.
    assert len(totals) == 25 and "Harbor Islands" not in totals
    assert list(totals)[:2] == ["Dorchester", "Roxbury"]
    assert sum(totals.values()) == pytest.approx(10_000)
    for name, count in _TABLE.items():
        # Snapping to the nearest node can move a point across a border: a percentage point at most.
        assert totals[name] / 10_000 == pytest.approx(count / 3_004, abs=0.01), name


def test_kernel_conserves_mass_and_is_local(boston):
    node = 1234
    lat, lon = float(boston.lat[node]), float(boston.lon[node])
    for bw in (0.0, 100.0, 400.0):
        d = dm.demand_from_points(boston, [lat], [lon], [5.0], annual_total=None, bandwidth_m=bw)
        assert d.weights.sum() == pytest.approx(5.0)
        spread = np.hypot(boston.x - boston.x[node], boston.y - boston.y[node])
        assert (d.weights[spread > 3 * bw + 1e-6] == 0).all()
        assert d.weights.argmax() == node
    assert dm.demand_from_points(boston, [lat], [lon], bandwidth_m=0, annual_total=None).weights[node] == 1.0


def test_user_csv(tmp_path, boston, places):
    nodes = [10, 2000, 9000]
    f = tmp_path / "demand.csv"
    rows = "\n".join(f"{boston.lat[n]:.9f},{boston.lon[n]:.9f},{w}" for n, w in zip(nodes, (1, 2, 3), strict=True))
    f.write_text("Lat,Lon,Weight\n" + rows + "\n")
    d = dm.demand_from_csv(f, boston, places)
    assert d.weights[nodes].tolist() == [1.0, 2.0, 3.0] and d.weights.sum() == 6.0
    d = dm.demand_from_csv(f, boston, annual_total=60)
    assert d.weights[nodes].tolist() == pytest.approx([10.0, 20.0, 30.0])
    # A point far outside Boston is dropped and counted, not silently snapped.
    f2 = tmp_path / "outside.csv"
    f2.write_text("lat,lon\n" + f"{boston.lat[10]},{boston.lon[10]}\n" + "40.7128,-74.0060\n")
    d = dm.demand_from_csv(f2, boston)
    assert d.points_dropped == 1 and d.weights.sum() == 1.0


@pytest.mark.parametrize("text, message", [
    ("lat,lon,weight\n42.3,-71.06,-1\n", "line 2"),
    ("lat,lon,weight\n42.3,nan,1\n", "line 2"),
    ("lat,lon\n42.3,-71.06\n42.3,abc\n", "line 3"),
    ("latitude,x\n42.3,-71.06\n", "'lat' and 'lon'"),
    ("lat,lon\n", "no demand rows"),
    ("lat,lon\n40.7128,-74.0060\n", "none of the 1 demand points"),
])
def test_bad_csv_is_a_clear_error(tmp_path, boston, text, message):
    f = tmp_path / "d.csv"
    f.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        dm.demand_from_csv(f, boston)


def test_bad_arguments(boston):
    with pytest.raises(InvalidInput, match="unknown incident source"):
        dm.load_demand(boston, source="nowhere")
    with pytest.raises(InvalidInput, match="unknown class"):
        dm.load_demand(boston, classes=["burglary"])
    with pytest.raises(InvalidInput, match="annual_total"):
        dm.demand_from_points(boston, [42.33], [-71.08], annual_total=0)
    with pytest.raises(InvalidInput, match="empty demand"):
        dm.demand_from_points(boston, [], [])
    with pytest.raises(InvalidInput, match="bandwidth"):
        dm.demand_from_points(boston, [42.33], [-71.08], bandwidth_m=-1)


def test_hourly_profile_and_arrival_rates(boston, places):
    prof = dm.hourly_profile()
    # 153 of the 3,004 rows are stamped exactly 00:00:00 (date-only entries) and are left out.
    assert prof.excluded_midnight == 153
    assert prof.citywide.sum() == pytest.approx(1.0)
    assert int(prof.citywide.argmax()) == 16  # most incidents 16:00-17:00 local; fewest before dawn
    assert prof.citywide[3:6].max() < prof.citywide[12:18].min()
    assert sum(prof.counts.values()) == 3_004 - 153 - 1  # one row lies in no neighborhood polygon
    for arr in prof.by_neighborhood.values():
        assert arr.sum() == pytest.approx(1.0) and (arr > 0).all()
    rates = dm.arrival_rates(dm.load_demand(boston, places), prof)
    assert rates.per_hour.shape == (24, 25)
    assert rates.per_hour.sum() * 365 == pytest.approx(10_000)
    assert rates.rate(16, "Dorchester") > rates.rate(4, "Dorchester") > 0
    with pytest.raises(InvalidInput):
        rates.rate(24, "Dorchester")


def test_cli_demand(tmp_path, data_dir, capsys):
    import json

    from routing.cli import main

    out = tmp_path / "demand.geojson"
    assert main(["demand", "--json", "--hourly", "--geojson", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["annual_total"] == pytest.approx(10_000) and len(doc["neighborhoods"]) == 25
    assert doc["neighborhoods"][0]["name"] == "Dorchester"
    assert len(doc["arrival_rates"]["per_hour"]) == 24
    assert len(json.loads(out.read_text())["features"]) == doc["nodes_with_demand"]
    # In text, --hourly adds the hour-of-day table: 24 rows whose calls add up to the year's.
    assert main(["demand", "--hourly"]) == 0
    text = capsys.readouterr().out.splitlines()
    rows = text[text.index(next(t for t in text if t.startswith("hour"))) + 1:]
    assert [r[:5] for r in rows] == [f"{h:02d}:00" for h in range(24)]
    assert sum(float(r.split()[1].replace(",", "")) for r in rows) == pytest.approx(10_000, abs=24)
    with pytest.raises(SystemExit) as exc:  # argparse rejects it: one line on stderr, exit 2
        main(["demand", "--annual-total", "-5"])
    assert exc.value.code == 2 and "positive" in capsys.readouterr().err
