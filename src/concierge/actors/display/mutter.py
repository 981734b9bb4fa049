"""GNOME (Wayland or X11) layout backend: ``org.gnome.Mutter.DisplayConfig`` over jeepney.

Reads the layout with GetCurrentState and sets it with ApplyMonitorsConfig on the user's
session bus. Called from the display actor's thread only. Must not import Xlib or the node.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from jeepney import DBusAddress, HeaderFields, MatchRule, message_bus, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from concierge.actors.display.layout import Monitor
from concierge.errors import UnavailableError

log = logging.getLogger(__name__)

Rect = dict[str, int]
DISPLAY_CONFIG = DBusAddress(
    "/org/gnome/Mutter/DisplayConfig",
    bus_name="org.gnome.Mutter.DisplayConfig",
    interface="org.gnome.Mutter.DisplayConfig",
)
TIMEOUT_S = 5.0


class MutterBackend:
    """Applies layouts through Mutter's DisplayConfig D-Bus API."""

    name = "mutter"

    def __init__(self, *, method: int = 1) -> None:
        try:
            self.conn: Any = open_dbus_connection(bus="SESSION")
            self._state()
        except (OSError, KeyError, DBusErrorResponse) as err:
            raise UnavailableError(f"Mutter DisplayConfig not reachable: {err}") from err
        self.method = method
        self._watch: Any = None

    def close(self) -> None:
        """Close the bus connection(s)."""
        self.conn.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def watch_fd(self) -> int | None:
        """A second bus connection subscribed to MonitorsChanged (a KMS hotplug resize, the
        Settings panel, another client): readable when the layout may have changed."""
        rule = MatchRule(
            type="signal",
            interface="org.gnome.Mutter.DisplayConfig",
            member="MonitorsChanged",
            path="/org/gnome/Mutter/DisplayConfig",
        )
        try:
            watch: Any = open_dbus_connection(bus="SESSION")
            unwrap_msg(watch.send_and_get_reply(message_bus.AddMatch(rule), timeout=TIMEOUT_S))
        except (OSError, DBusErrorResponse) as err:
            log.warning("cannot watch MonitorsChanged: %s", err, extra={"event": "display.watch"})
            return None
        self._watch = watch
        return int(watch.sock.fileno())

    def drain_changes(self) -> bool:
        """Read what is buffered (never blocks); True if MonitorsChanged arrived."""
        changed = False
        while self._watch is not None:
            try:
                msg = self._watch.receive(timeout=0)
            except TimeoutError:
                break
            except OSError:  # the bus went away; the actor will see it on its next call
                self._watch.close()
                self._watch = None
                break
            if msg.header.fields.get(HeaderFields.member) == "MonitorsChanged":
                changed = True
        return changed

    def _call(self, member: str, signature: str | None = None, body: tuple[Any, ...] = ()) -> Any:
        msg = new_method_call(DISPLAY_CONFIG, member, signature, body)
        return unwrap_msg(self.conn.send_and_get_reply(msg, timeout=TIMEOUT_S))

    def _state(self) -> tuple[int, list[Any], list[Any]]:
        serial, monitors, logical, _props = self._call("GetCurrentState")
        return serial, monitors, logical

    def output_count(self) -> int:
        """Number of monitors (connectors) Mutter knows."""
        return len(self._state()[1])

    def current(self) -> dict[int, Rect]:
        """Active monitors by connector index: {index: {x, y, width, height}}."""
        _, monitors, logical = self._state()
        index_of = {mon[0][0]: i for i, mon in enumerate(monitors)}
        size_of: dict[str, tuple[int, int]] = {}
        for (connector, *_), modes, _props in monitors:
            for mode in modes:
                if mode[6].get("is-current", ("b", False))[1]:
                    size_of[connector] = (mode[1], mode[2])
        out: dict[int, Rect] = {}
        for x, y, scale, transform, _primary, specs, _lprops in logical:
            for connector, *_ in specs:
                w, h = size_of.get(connector, (0, 0))
                if transform in (1, 3, 5, 7):
                    w, h = h, w
                out[index_of[connector]] = {
                    "x": x,
                    "y": y,
                    "width": round(w / scale),
                    "height": round(h / scale),
                }
        return out

    def apply(self, placements: Sequence[tuple[int, Monitor]], before: dict[int, Rect] | None = None) -> None:
        """ApplyMonitorsConfig with one logical monitor per placement, the first primary
        (Mutter keeps the old layout itself when it refuses one, so ``before`` is unused)."""
        del before
        serial, monitors, _ = self._state()
        logical: list[tuple[Any, ...]] = []
        for n, (index, mon) in enumerate(sorted(placements, key=lambda p: p[1].display_id)):
            if index >= len(monitors):
                raise ValueError(f"only {len(monitors)} monitors, layout needs output {index}")
            (connector, *_), modes, _props = monitors[index]
            mode_id = _best_mode(modes, mon.width, mon.height)
            logical.append((mon.x, mon.y, 1.0, 0, n == 0, [(connector, mode_id, {})]))
        try:
            self._call(
                "ApplyMonitorsConfig",
                "uua(iiduba(ssa{sv}))a{sv}",
                (serial, self.method, logical, {}),
            )
        except DBusErrorResponse as err:
            raise ValueError(f"Mutter refused the layout: {err.name}: {err.data}") from err


def _best_mode(modes: Sequence[Any], width: int, height: int) -> str:
    """The mode of exactly width x height, else the closest one (Mutter cannot create modes)."""

    def distance(mode: Any) -> tuple[int, float]:
        return abs(mode[1] - width) + abs(mode[2] - height), -float(mode[3])

    best = min(modes, key=distance)
    if (best[1], best[2]) != (width, height):
        log.info(
            "no %dx%d mode, using %s",
            width,
            height,
            best[0],
            extra={"event": "display.mode_closest"},
        )
    return str(best[0])
