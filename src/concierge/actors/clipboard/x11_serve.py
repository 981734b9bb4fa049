"""The client-owned half of the X11 clipboard backend: owning CLIPBOARD/PRIMARY for the SPICE
client and answering guest apps' SelectionRequests (TARGETS, data, INCR for large payloads).

Runs on the X11 worker thread only (it shares that thread's Xlib connection).
Must not import the node, Wayland or D-Bus code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from Xlib import X, Xatom
from Xlib.protocol import event, request

from concierge.actors.clipboard.backend import BackendEvents
from concierge.actors.clipboard.formats import advertised_targets
from concierge.actors.clipboard.images import ImageError, convert

log = logging.getLogger(__name__)

INCR_CHUNK = 256 * 1024 - 1024  # one ChangeProperty must fit a (non BIG-REQUESTS) request
STALL_S = 10.0  # an INCR requestor that reads nothing for this long is forgotten


class XConnection(Protocol):
    """What the server needs from the worker that owns the X connection."""

    dpy: Any
    window: Any
    events: BackendEvents | None
    sel_atom: dict[int, int]
    sel_of_atom: dict[int, int]

    def atom(self, name: str) -> int: ...
    def atom_name(self, atom: int) -> str: ...


@dataclass(slots=True)
class Outgoing:
    """An INCR transfer to a requestor, advanced on each PropertyDelete."""

    window: Any
    prop: int
    ptype: int
    data: bytes
    offset: int = 0
    deadline: float = 0.0


class SelectionServer:
    """Owns selections on behalf of the client; every paste asks the client by demand."""

    def __init__(self, x: XConnection) -> None:
        self.x = x
        self.chunk = min(INCR_CHUNK, x.dpy.display.info.max_request_length * 4 - 1024)
        # client-owned selections: {sel: {target: (type to ask the client, type wanted)}}
        self.owned: dict[int, dict[str, tuple[int, int]]] = {}
        self.app_requests: dict[int, tuple[Any, int, int]] = {}  # token -> (request, have, want)
        self.outgoing: dict[tuple[int, int], Outgoing] = {}
        self._next_token = 1 << 30

    def expire(self) -> None:
        """Forget INCR transfers whose requestor stopped reading (exited, hung)."""
        now = time.monotonic()
        for key, out in list(self.outgoing.items()):
            if out.deadline < now:
                del self.outgoing[key]
                log.info("INCR requestor stalled", extra={"event": "clipboard.incr_stalled"})

    def drop(self, selection: int) -> None:
        """Another X client owns ``selection`` now: forget ours and refuse waiting pastes."""
        if self.owned.pop(selection, None) is not None:
            self.refuse_pending(selection)

    def grab(self, selection: int, types: list[int]) -> None:
        atom = self.x.sel_atom.get(selection)
        if atom is None:
            return
        self.refuse_pending(selection)
        self.owned[selection] = advertised_targets(types)
        self.x.window.set_selection_owner(atom, X.CurrentTime)
        if wid(self.x.dpy.get_selection_owner(atom)) != self.x.window.id:
            log.warning("could not own the selection", extra={"event": "clipboard.grab_failed"})
            self.owned.pop(selection, None)

    def release(self, selection: int) -> None:
        if self.owned.pop(selection, None) is None:
            return
        self.refuse_pending(selection)
        atom = self.x.sel_atom[selection]
        if wid(self.x.dpy.get_selection_owner(atom)) == self.x.window.id:
            request.SetSelectionOwner(display=self.x.dpy.display, window=X.NONE, selection=atom, time=X.CurrentTime)

    def refuse_pending(self, selection: int) -> None:
        for token, (req, _, _) in list(self.app_requests.items()):
            if self.x.sel_of_atom.get(req.selection) == selection:
                del self.app_requests[token]
                self.notify(req, X.NONE)

    def on_selection_request(self, req: Any) -> None:
        selection = self.x.sel_of_atom.get(req.selection)
        targets = self.owned.get(selection) if selection is not None else None
        prop = req.property or req.target
        target = self.x.atom_name(req.target)
        if targets is None or selection is None:
            self.notify(req, X.NONE)
        elif target == "TARGETS":
            atoms = [self.x.atom("TARGETS"), self.x.atom("TIMESTAMP")] + [self.x.atom(t) for t in targets]
            req.requestor.change_property(prop, Xatom.ATOM, 32, atoms)
            self.notify(req, prop)
        elif target == "TIMESTAMP":
            req.requestor.change_property(prop, Xatom.INTEGER, 32, [X.CurrentTime])
            self.notify(req, prop)
        elif target in targets:
            have, want = targets[target]
            self._next_token += 1
            self.app_requests[self._next_token] = (req, have, want)
            if self.x.events is not None:
                self.x.events.app_request(selection, have, self._next_token)
        else:
            self.notify(req, X.NONE)

    def provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        entry = self.app_requests.pop(token, None)
        if entry is None:
            return
        req, have, want = entry
        if data is None or clip_type != have:
            self.notify(req, X.NONE)
            return
        try:
            data = convert(data, have, want)
        except ImageError as err:
            log.warning("image conversion failed: %s", err, extra={"event": "clipboard.convert"})
            self.notify(req, X.NONE)
            return
        prop = req.property or req.target
        target = self.x.atom_name(req.target)
        ptype = self.x.atom("UTF8_STRING") if target == "TEXT" else req.target
        if target == "STRING":
            data = data.decode("utf-8", errors="replace").encode("latin-1", errors="replace")
        if len(data) <= self.chunk:
            req.requestor.change_property(prop, ptype, 8, data)
        else:
            req.requestor.change_attributes(event_mask=X.PropertyChangeMask)
            req.requestor.change_property(prop, self.x.atom("INCR"), 32, [len(data)])
            self.outgoing[(req.requestor.id, prop)] = Outgoing(
                req.requestor, prop, ptype, data, deadline=time.monotonic() + STALL_S
            )
        self.notify(req, prop)

    def notify(self, req: Any, prop: int) -> None:
        reply = event.SelectionNotify(
            time=req.time,
            requestor=req.requestor,
            selection=req.selection,
            target=req.target,
            property=prop,
        )
        req.requestor.send_event(reply, event_mask=0)

    def advance_outgoing(self, ev: Any) -> None:
        out = self.outgoing.get((wid(ev.window), ev.atom))
        if out is None or ev.state != X.PropertyDelete:
            return
        out.deadline = time.monotonic() + STALL_S
        chunk = out.data[out.offset : out.offset + self.chunk]
        out.offset += len(chunk)
        out.window.change_property(out.prop, out.ptype, 8, chunk)
        if not chunk:  # the zero-length property ends the transfer
            del self.outgoing[(out.window.id, out.prop)]
            out.window.change_attributes(event_mask=X.NoEventMask)


def wid(window: Any) -> int:
    """The X id of a window object (or of a bare id / X.NONE)."""
    return int(getattr(window, "id", window) or 0)
