"""Mouse state -> Linux input events, exactly as spice-vdagentd 0.22.1 emits them.

Pure computation (no I/O), so the exact sequences are unit-testable. Standard library only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EV_SYN, EV_KEY, EV_REL, EV_ABS = 0, 1, 2, 3
SYN_REPORT = 0
ABS_X, ABS_Y = 0, 1
REL_WHEEL = 8
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA = 0x110, 0x111, 0x112, 0x113, 0x114
L_MASK, M_MASK, R_MASK, U_MASK, D_MASK, S_MASK, E_MASK = (1 << i for i in range(1, 8))
#: the seven button bits of VDAgentMouseState; anything else a host sets is ignored
BUTTON_BITS = L_MASK | M_MASK | R_MASK | U_MASK | D_MASK | S_MASK | E_MASK
#: order of EV_KEY events within one report (the stock daemon's table order)
BUTTONS = (
    (L_MASK, BTN_LEFT),
    (M_MASK, BTN_MIDDLE),
    (R_MASK, BTN_RIGHT),
    (S_MASK, BTN_SIDE),
    (E_MASK, BTN_EXTRA),
)
#: struct input_event on 64-bit Linux: struct timeval (2 x long), u16 type, u16 code, s32 value.
#: Timestamps are zero: the kernel stamps uinput events, and the stock -f sink writes zeros too.
INPUT_EVENT = struct.Struct("=qqHHi")
_SYN = INPUT_EVENT.pack(0, 0, EV_SYN, SYN_REPORT, 0)


@dataclass(frozen=True, slots=True)
class Area:
    """One display's rectangle in the desktop bounding box."""

    x: int
    y: int
    width: int
    height: int

    def place(self, x: int, y: int) -> tuple[int, int]:
        """A display-relative position in desktop coordinates, clamped to this display (so a
        hostile 32-bit coordinate never leaves the tablet's range or the s32 event value)."""
        return (
            self.x + min(max(x, 0), max(self.width - 1, 0)),
            self.y + min(max(y, 0), max(self.height - 1, 0)),
        )


class TabletState:
    """The last emitted absolute state; turns each new mouse state into one report."""

    __slots__ = ("buttons", "x", "y")

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.buttons = 0

    def report(self, x: int, y: int, buttons: int) -> bytes:
        """Encode the changes since the last report, always ending with SYN_REPORT.

        ABS_X/ABS_Y only when changed, then EV_KEY per changed L/M/R/SIDE/EXTRA button, then
        REL_WHEEL +1 / -1 on the rising edge of U / D, then SYN (a lone SYN if nothing changed).
        """
        pack = INPUT_EVENT.pack
        out = []
        if x != self.x:
            out.append(pack(0, 0, EV_ABS, ABS_X, x))
        if y != self.y:
            out.append(pack(0, 0, EV_ABS, ABS_Y, y))
        old = self.buttons
        changed = old ^ buttons
        if changed:
            for mask, code in BUTTONS:
                if changed & mask:
                    out.append(pack(0, 0, EV_KEY, code, 1 if buttons & mask else 0))
            if buttons & U_MASK and not old & U_MASK:
                out.append(pack(0, 0, EV_REL, REL_WHEEL, 1))
            if buttons & D_MASK and not old & D_MASK:
                out.append(pack(0, 0, EV_REL, REL_WHEEL, -1))
        out.append(_SYN)
        self.x, self.y, self.buttons = x, y, buttons
        return b"".join(out)


def decode_events(data: bytes) -> list[tuple[int, int, int]]:
    """(type, code, value) of each record in ``data`` (for tests, tools and benchmarks)."""
    size = INPUT_EVENT.size
    return [INPUT_EVENT.unpack_from(data, off)[2:] for off in range(0, len(data) - size + 1, size)]
