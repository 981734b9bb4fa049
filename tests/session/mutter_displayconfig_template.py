"""python-dbusmock template: a stand-in for org.gnome.Mutter.DisplayConfig (tests only).

Two virtual monitors Meta-0/Meta-1 with three modes each; ApplyMonitorsConfig validates the
connector and mode like mutter does and the next GetCurrentState reflects the new layout.
Runs under /usr/bin/python3 (Debian's python3-dbusmock).
"""

import dbus  # noqa: F401 - the method code strings below use it

BUS_NAME = "org.gnome.Mutter.DisplayConfig"
MAIN_OBJ = "/org/gnome/Mutter/DisplayConfig"
MAIN_IFACE = "org.gnome.Mutter.DisplayConfig"
SYSTEM_BUS = False

STATE_SIG = "ua((ssss)a(siiddada{sv})a{sv})a(iiduba(ssss)a{sv})a{sv}"

GET_STATE = """
modes = ["1280x800@60.000", "1024x768@60.000", "1920x1080@60.000"]
layout = getattr(self, "cc_layout", [(0, 0, 1.0, 0, True, [("Meta-0", "1280x800@60.000", {})])])
current = {spec[0]: spec[1] for lm in layout for spec in lm[5]}
monitors = []
for n in range(2):
    conn = "Meta-%d" % n
    mlist = []
    for m in modes:
        w, h = (int(v) for v in m.split("@")[0].split("x"))
        props = {"is-current": dbus.Boolean(current.get(conn) == m, variant_level=1)}
        mlist.append((m, w, h, 60.0, 1.0, [1.0], props))
    monitors.append(((conn, "MetaVendor", "MetaVirtualMonitor", "0x00"), mlist, {}))
logical = [
    (lm[0], lm[1], lm[2], lm[3], lm[4],
     [(s[0], "MetaVendor", "MetaVirtualMonitor", "0x00") for s in lm[5]], {})
    for lm in layout
]
ret = (2, monitors, logical, {"layout-mode": dbus.UInt32(2, variant_level=1)})
"""

APPLY = """
serial, method, logical, props = args
for lm in logical:
    for conn, mode, _ in lm[5]:
        if conn not in ("Meta-0", "Meta-1"):
            raise dbus.exceptions.DBusException("Invalid connector '%s' specified" % conn,
                                                name="org.freedesktop.DBus.Error.InvalidArgs")
        if mode not in ("1280x800@60.000", "1024x768@60.000", "1920x1080@60.000"):
            raise dbus.exceptions.DBusException(
                "Invalid mode", name="org.freedesktop.DBus.Error.InvalidArgs")
self.cc_layout = [(int(lm[0]), int(lm[1]), float(lm[2]), int(lm[3]), bool(lm[4]),
                   [(str(c), str(m), {}) for c, m, _ in lm[5]]) for lm in logical]
self.EmitSignal("org.gnome.Mutter.DisplayConfig", "MonitorsChanged", "", [])
"""


def load(mock, parameters):
    mock.AddMethods(
        MAIN_IFACE,
        [
            ("GetCurrentState", "", STATE_SIG, GET_STATE),
            ("ApplyMonitorsConfig", "uua(iiduba(ssa{sv}))a{sv}", "", APPLY),
        ],
    )
