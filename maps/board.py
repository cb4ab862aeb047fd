"""The live dispatch board: a Folium page that polls the service's GeoJSON endpoints.

The page itself holds only the city (neighborhoods and streets, the offline base) and Leaflet, inlined:
it loads nothing from the internet and holds no fleet or call data, so it is served without a token.
Everything live comes from ``fetch()`` calls to the service, every few seconds:

- the fleet by status (``/board/fleet.geojson``), each team a marker moved in place when it reports;
- the open calls (``/board/calls.geojson``); clicking one (on the map or in the list) selects it;
- for the selected call, its ranked suggestions (``/calls/{id}/suggestions.geojson``) as numbered badges and
  a table of ETAs;
- redispatch advice (``/redispatch``): calls whose en-route team a free team would now beat by more than
  the rules' threshold.

The token is asked for once, kept in ``sessionStorage`` (this tab only, gone when it closes) and sent as an
``Authorization: Bearer`` header; it never appears in a URL, where it would land in logs and history. A
refused token (401) is forgotten and asked for again. ``window.cdBoard`` exposes the markers' positions for
the browser test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import folium
from branca.element import MacroElement
from folium.template import Template

from maps import base
from maps.style import CALL_COLOR, RANK_COLORS, STALE_COLOR, STATUS_COLORS, STATUS_LABELS, TYPE_LABELS

if TYPE_CHECKING:
    from routing.network import RoadNetwork
    from routing.places import Places

__all__ = ["board_map", "TOKEN_KEY", "FLEET_URL", "CALLS_URL", "SUGGESTIONS_URL"]

TOKEN_KEY = "crisis-dispatch-token"  # the sessionStorage key
FLEET_URL = "/board/fleet.geojson"
CALLS_URL = "/board/calls.geojson"
SUGGESTIONS_URL = "/calls/{call_id}/suggestions.geojson"
#: Redispatch advice for every call whose en-route team a free team would beat (not recorded on read).
REDISPATCH_URL = "/redispatch"

_CSS = """
<style>
.cd-board-token input { width: 220px; font: 13px monospace; margin: 4px 0; }
.cd-board-token button { font: 13px sans-serif; }
.cd-board-token .err { color: #b2182b; }
.cd-board-state { font-size: 12px; color: #4a545e; }
.cd-board-state.err { color: #b2182b; font-weight: 600; }
.cd-board-calls li { cursor: pointer; margin: 1px 0; }
.cd-board-calls li.sel { font-weight: 700; }
.cd-board-calls ul { margin: 2px 0 6px 0; padding-left: 16px; }
</style>
"""


class _Board(MacroElement):
    _template = Template(
        """
        {% macro header(this, kwargs) %}{{ this.css }}{% endmacro %}
        {% macro script(this, kwargs) %}
        (function () {
          var map = {{ this._parent.get_name() }};
          var cfg = {{ this.config|tojson }};
          var teams = {}, calls = {}, selected = null, suggestions = [];
          var fleetLayer = L.layerGroup().addTo(map), callLayer = L.layerGroup().addTo(map),
              suggLayer = L.layerGroup().addTo(map);
          var esc = function (s) {
            return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
              return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]; });
          };
          var fmtEta = function (s) {
            if (s == null) return 'unreachable';
            s = Math.round(s); return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
          };
          var box = function (position, cls) {
            var ctl = L.control({position: position}), div = L.DomUtil.create('div', 'cd-box ' + cls);
            ctl.onAdd = function () { L.DomEvent.disableClickPropagation(div);
                                      L.DomEvent.disableScrollPropagation(div); return div; };
            ctl.addTo(map); return div;
          };
          var tokenBox = box('topright', 'cd-board-token');
          var panel = box('bottomleft', 'cd-panel cd-board-panel');
          var getToken = function () { try { return sessionStorage.getItem(cfg.key); } catch (e) { return null; } };
          var askToken = function (why) {
            tokenBox.style.display = '';
            tokenBox.innerHTML = '<h2>Token</h2><form><div>A dispatcher or analyst token, kept for this tab only' +
              '</div><input type="password" autocomplete="off" id="cd-token-input">' +
              '<button type="submit">Use</button>' + (why ? '<div class="err">' + esc(why) + '</div>' : '') +
              '</form>';
            tokenBox.querySelector('form').onsubmit = function (ev) {
              ev.preventDefault();
              var t = tokenBox.querySelector('input').value.trim();
              if (t) { sessionStorage.setItem(cfg.key, t); tokenBox.style.display = 'none'; refresh(); }
            };
          };
          var Unauthorized = function (msg) { this.message = msg; };
          var get = async function (url) {
            var t = getToken();
            if (!t) { throw new Unauthorized('no token'); }
            var r = await fetch(url, {headers: {'Authorization': 'Bearer ' + t}, cache: 'no-store',
                                      credentials: 'omit'});
            if (r.status === 401 || r.status === 403) {
              var why = 'token refused (' + r.status + ')';
              try { why = (await r.json()).detail; } catch (e) {}
              sessionStorage.removeItem(cfg.key); throw new Unauthorized(why);
            }
            if (!r.ok) {
              var detail = r.status + '';
              try { detail += ': ' + (await r.json()).detail; } catch (e) {}
              throw new Error(url + ' ' + detail);
            }
            return r.json();
          };
          var state = '', stateErr = false, advice = [];
          var drawPanel = function () {
            var ids = Object.keys(calls).sort();
            var html = '<h2>Open calls (' + ids.length + ')</h2><div class="cd-board-calls"><ul>' +
              ids.map(function (id) {
                var p = calls[id].props;
                return '<li data-call="' + esc(id) + '"' + (id === selected ? ' class="sel"' : '') + '>' + esc(id) +
                  ' &middot; P' + esc(p.priority) + ' &middot; ' + esc(p.status) + '</li>';
              }).join('') + '</ul></div>';
            if (selected) {
              html += '<h2>Suggestions for ' + esc(selected) + '</h2>';
              html += suggestions.length ? '<table><tr><th>#</th><th>team</th><th>type</th>' +
                '<th class="num">ETA</th><th>tier</th></tr>' + suggestions.map(function (p) {
                  return '<tr><td>' + p.rank + '</td><td>' + esc(p.team_id) + (p.stale ? ' (stale)' : '') +
                    '</td><td>' + esc(cfg.types[p.team_type] || p.team_type) + '</td><td class="num">' +
                    esc(fmtEta(p.eta_s)) + '</td><td>' + esc(p.tier) + '</td></tr>';
                }).join('') + '</table>' : '<div>no eligible team now</div>';
            }
            if (advice.length) {
              html += '<h2>Redispatch advice</h2><ul>' + advice.map(function (a) {
                return '<li data-call="' + esc(a.call_id) + '">' + esc(a.advice) + '</li>';
              }).join('') + '</ul>';
            }
            html += '<div class="cd-board-state' + (stateErr ? ' err' : '') + '">' + esc(state) + '</div>';
            panel.innerHTML = html;
            panel.querySelectorAll('li[data-call]').forEach(function (li) {
              li.onclick = function () { select(li.getAttribute('data-call')); };
            });
          };
          var teamTip = function (p) {
            return '<b>' + esc(p.team_id) + '</b> ' + esc(cfg.types[p.team_type] || p.team_type) + '<br>' +
              esc(cfg.statuses[p.status] || p.status) + (p.stale ? ' &middot; position stale' : '');
          };
          var updateTeams = function (fc) {
            var seen = {};
            fc.features.forEach(function (f) {
              var p = f.properties, ll = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
              var style = {radius: 8, color: p.stale ? cfg.stale : '#ffffff', weight: 2,
                           fillColor: cfg.colors[p.status] || '#666666', fillOpacity: 1};
              seen[p.team_id] = true;
              var t = teams[p.team_id];
              if (t) { t.marker.setLatLng(ll); t.marker.setStyle(style); t.marker.setTooltipContent(teamTip(p)); }
              else {
                t = teams[p.team_id] = {marker: L.circleMarker(ll, style).bindTooltip(teamTip(p)).addTo(fleetLayer)};
              }
              t.props = p;
            });
            Object.keys(teams).forEach(function (id) {
              if (!seen[id]) { fleetLayer.removeLayer(teams[id].marker); delete teams[id]; }
            });
          };
          var updateCalls = function (fc) {
            var seen = {};
            fc.features.forEach(function (f) {
              var p = f.properties, ll = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
              seen[p.call_id] = true;
              var c = calls[p.call_id];
              var tip = '<b>Call ' + esc(p.call_id) + '</b><br>priority ' + esc(p.priority) + ' &middot; ' +
                esc(p.status) + (p.mental_health ? ' &middot; mental health' : '');
              if (c) { c.marker.setLatLng(ll); c.marker.setTooltipContent(tip); }
              else {
                c = calls[p.call_id] = {marker: L.circleMarker(ll, {radius: 10, color: '#ffffff', weight: 3,
                  fillColor: cfg.call, fillOpacity: 1}).bindTooltip(tip).addTo(callLayer)};
                c.marker.on('click', function () { select(p.call_id); });
              }
              c.props = p;
            });
            Object.keys(calls).forEach(function (id) {
              if (!seen[id]) { callLayer.removeLayer(calls[id].marker); delete calls[id]; }
            });
            if (selected && !calls[selected]) { selected = null; suggestions = []; suggLayer.clearLayers(); }
          };
          var loadSuggestions = async function () {
            if (!selected) return;
            var fc = await get(cfg.suggestions.replace('{call_id}', encodeURIComponent(selected)));
            suggLayer.clearLayers();
            suggestions = [];
            fc.features.forEach(function (f) {
              var p = f.properties;
              if (p.kind !== 'suggestion') return;
              suggestions.push(p);
              var color = cfg.ranks[Math.min(p.rank, cfg.ranks.length) - 1];
              L.marker([f.geometry.coordinates[1], f.geometry.coordinates[0]], {
                zIndexOffset: 1000, icon: L.divIcon({className: 'cd-icon', iconSize: [22, 22], iconAnchor: [11, 30],
                  html: "<div class='cd-badge' style='width:22px;height:22px;background:" + color +
                        ";border:2px solid #fff;color:#fff;font-size:10px'>" + p.rank + '</div>'})
              }).bindTooltip('#' + p.rank + ' ' + esc(p.team_id) + ': ETA ' + esc(fmtEta(p.eta_s))).addTo(suggLayer);
            });
          };
          var busy = false;
          var refresh = async function () {
            if (busy) return;
            busy = true;
            try {
              var both = await Promise.all([get(cfg.fleet), get(cfg.calls), get(cfg.redispatch)]);
              updateTeams(both[0]); updateCalls(both[1]); advice = both[2].advice || [];
              await loadSuggestions();
              state = 'updated ' + new Date().toLocaleTimeString() + ', every ' + cfg.refresh_ms / 1000 + ' s';
              stateErr = false;
              window.cdBoard.refreshes++;
            } catch (e) {
              state = e.message || String(e); stateErr = true;
              if (e instanceof Unauthorized) askToken(e.message === 'no token' ? '' : e.message);
            } finally { busy = false; drawPanel(); }
          };
          var select = function (id) { selected = id; suggestions = []; suggLayer.clearLayers(); refresh(); };
          window.cdBoard = {
            refreshes: 0, refresh: refresh, select: select,
            positions: function () {
              var out = {};
              Object.keys(teams).forEach(function (id) {
                var ll = teams[id].marker.getLatLng(); out[id] = [ll.lat, ll.lng];
              });
              return out;
            },
            statuses: function () {
              var o = {}; Object.keys(teams).forEach(function (id) { o[id] = teams[id].props.status; }); return o;
            },
            calls: function () { return Object.keys(calls).sort(); },
            suggestions: function () { return suggestions.map(function (p) { return [p.rank, p.team_id, p.eta_s]; }); },
            advice: function () { return advice.map(function (a) { return a.advice; }); }
          };
          if (getToken()) tokenBox.style.display = 'none'; else askToken('');
          drawPanel();
          refresh();
          setInterval(refresh, cfg.refresh_ms);
        })();
        {% endmacro %}
        """
    )

    def __init__(self, refresh_s: float) -> None:
        super().__init__()
        self._name = "Board"
        self.css = _CSS
        self.config: dict[str, Any] = {
            "refresh_ms": int(round(refresh_s * 1000)), "key": TOKEN_KEY, "fleet": FLEET_URL, "calls": CALLS_URL,
            "suggestions": SUGGESTIONS_URL, "redispatch": REDISPATCH_URL, "colors": dict(STATUS_COLORS),
            "statuses": dict(STATUS_LABELS),
            "types": dict(TYPE_LABELS), "ranks": list(RANK_COLORS), "call": CALL_COLOR, "stale": STALE_COLOR,
        }


def board_map(network: RoadNetwork, places: Places | None, *, refresh_s: float = 5.0) -> folium.Map:
    """The board page (a finished, self-contained map): city base, live layers, token box, panel.

    Parameters
    ----------
    network
        The road network (streets of the base, extent of the view).
    places
        Neighborhoods and districts for the base, or None.
    refresh_s
        Seconds between two polls of the GeoJSON endpoints.
    """
    m = base.new_map(network.bbox, offline=True, title="Live dispatch board",
                     subtitle=f"Teams by status, open calls; click a call for its ranked teams. "
                              f"Updated every {refresh_s:g} s.")
    base.add_city_base(m, places, network, offline=True)
    base.add_legend(m, "Teams", [base.LegendSection("Status", [
        base.LegendItem(STATUS_LABELS.get(s, s), c, border="#ffffff") for s, c in STATUS_COLORS.items()]
        + [base.LegendItem("position stale", "#ffffff", border=STALE_COLOR)]),
        base.LegendSection("Calls", [base.LegendItem("open call (click for suggestions)", CALL_COLOR,
                                                     border="#ffffff"),
                                     base.LegendItem("suggested team, by rank", RANK_COLORS[0], kind="badge",
                                                     text="1")])])
    _Board(refresh_s).add_to(m)
    return base.finish_map(m, offline=True)
