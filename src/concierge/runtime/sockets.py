"""ZeroMQ socket factories: the only place where socket options are set.

LINGER 0 everywhere (never hang at exit), ROUTER_MANDATORY (a gone peer is an error, not a
silent drop), ROUTER_HANDOVER (a restarted actor takes its identity back), explicit HWMs, and
IMMEDIATE on the input lane so clicks for an absent peer are refused rather than replayed later.
"""

from __future__ import annotations

import zmq

DEFAULT_HWM = 10_000
INPUT_HWM = 256


def router(ctx: zmq.Context[zmq.Socket[bytes]], url: str) -> zmq.Socket[bytes]:
    """A bound ROUTER (inbox, control, operator)."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.SNDHWM, DEFAULT_HWM)
    sock.setsockopt(zmq.RCVHWM, DEFAULT_HWM)
    sock.bind(url)
    return sock


def dealer(
    ctx: zmq.Context[zmq.Socket[bytes]], url: str, identity: str, *, immediate: bool = False
) -> zmq.Socket[bytes]:
    """A connected DEALER whose routing id is the sender's actor id."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, identity.encode())
    hwm = INPUT_HWM if immediate else DEFAULT_HWM
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, DEFAULT_HWM)
    if immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    # a restarted actor rebinds within milliseconds: retry every 10 ms without exponential
    # growth (ipc to an absent path is a cheap failed connect), so a peer serves again at once
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
    sock.connect(url)
    return sock


def publisher(ctx: zmq.Context[zmq.Socket[bytes]], url: str) -> zmq.Socket[bytes]:
    """A PUB connected to the event proxy's XSUB."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, DEFAULT_HWM)
    sock.connect(url)
    return sock


def subscriber(ctx: zmq.Context[zmq.Socket[bytes]], url: str) -> zmq.Socket[bytes]:
    """A SUB connected to the event proxy's XPUB (topics added later)."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, DEFAULT_HWM)
    sock.connect(url)
    return sock
