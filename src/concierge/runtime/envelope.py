"""Envelopes between actor processes: ``[b"CC/1", header, body, *blobs]`` (msgpack).

The header is a small array-encoded struct (cheap on the mouse path); the body is any msgpack
value. Never pickle: a hostile or buggy peer can at worst send undecodable bytes, which raise
:class:`concierge.errors.ProtocolError`. Imports msgspec only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from concierge.errors import ProtocolError

PROTO = b"CC/1"


class Header(msgspec.Struct, array_like=True, frozen=True):
    """Routing data of one message.

    ``kind``: req, rep, err, cast or evt; ``corr`` is the request id on rep/err;
    ``deadline_ns`` is CLOCK_MONOTONIC ns (shared by every process of a boot), 0 = none.
    """

    kind: str
    type: str
    id: int
    corr: int
    src: str
    dst: str
    deadline_ns: int = 0


class ErrorBody(msgspec.Struct, frozen=True):
    """Body of an ``err`` reply: a stable code and a human message, never a traceback."""

    code: str
    message: str
    retryable: bool = False


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(Header)
_body_encoder = msgspec.msgpack.Encoder()
_body_decoder = msgspec.msgpack.Decoder()
_datagram_decoder = msgspec.msgpack.Decoder(tuple[Header, Any])


def encode(header: Header, body: Any, blobs: tuple[bytes, ...] = ()) -> list[bytes]:
    """Frames for ``header`` and ``body`` (plus raw blob frames)."""
    return [PROTO, _header_encoder.encode(header), _body_encoder.encode(body), *blobs]


def decode(frames: list[bytes]) -> tuple[Header, Any, tuple[bytes, ...]]:
    """Header, body and blobs of a message; ProtocolError for anything malformed."""
    if len(frames) < 3 or frames[0] != PROTO:
        raise ProtocolError("not a CC/1 envelope")
    try:
        header = _header_decoder.decode(frames[1])
        body = _body_decoder.decode(frames[2])
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise ProtocolError(f"bad envelope: {err}") from None
    return header, body, tuple(frames[3:])


def encode_datagram(header: Header, body: Any) -> bytes:
    """One lane datagram: the msgpack array ``[header, body]`` (one encoder call)."""
    return _body_encoder.encode((header, body))


def decode_datagram(data: bytes) -> tuple[Header, Any]:
    """Header and body of a lane datagram; ProtocolError for anything malformed."""
    try:
        return _datagram_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise ProtocolError(f"bad datagram: {err}") from None


def encode_value(value: Any) -> bytes:
    """msgpack bytes of a plain value (control plane payloads)."""
    return _body_encoder.encode(value)


def decode_value(data: bytes) -> Any:
    """Plain value from msgpack bytes; ProtocolError if malformed."""
    try:
        return _body_decoder.decode(data)
    except msgspec.DecodeError as err:
        raise ProtocolError(f"bad payload: {err}") from None
