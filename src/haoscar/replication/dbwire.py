"""The database channel between the heads: length-prefixed frames over TCP, each authenticated with HMAC-SHA256.

    json length (4) | blob length (4) | JSON body | blob | HMAC (32)

The hello and welcome frames are signed with a key derived from the HA key; both carry a random nonce, and every
later frame is signed with a session key derived from both nonces plus its direction and sequence number, so a
recorded frame can be replayed neither into another session nor twice into the same one. A peer with a wrong
key fails the handshake and is told nothing. The client's first session frame (``confirm``) proves it knows the
server's fresh nonce: only then does the standby give up its current session, so a replayed hello (which
authenticates, being a recording) cannot reset a live one.

Every frame is bounded (``MAX_JSON`` + ``MAX_BLOB``, a hello far less) and its HMAC is checked before anything in it
is used: a peer without the key makes the receiver buffer one bounded frame at most. Anything larger (a big
transaction, a full copy) travels in several frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import struct
from typing import Any

from haoscar.replication.config import derived_secret

HEADER = struct.Struct("!II")
MAC_LEN = 32
MAX_JSON = 8 * 1024 * 1024
MAX_BLOB = 8 * 1024 * 1024
MAX_HELLO = 4096  # before authentication: a hello is a few hundred bytes
PART_BYTES = 2 * 1024 * 1024  # what a sender puts in one frame of a large transaction or a full copy


class ChannelError(Exception):
    """The peer closed, timed out, or sent something that fails authentication (``auth`` is True then)."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


def _mac(key: bytes, prefix: bytes, data: bytes) -> bytes:
    return hmac.new(key, prefix + data, hashlib.sha256).digest()


def pack(key: bytes, prefix: bytes, body: dict[str, Any], blob: bytes = b"") -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = HEADER.pack(len(raw), len(blob))
    return head + raw + blob + _mac(key, prefix, head + raw + blob)


async def read_frame(
    reader: asyncio.StreamReader, key: bytes, prefix: bytes, max_json: int = MAX_JSON, max_blob: int = MAX_BLOB
) -> tuple[dict[str, Any], bytes]:
    try:
        head = await reader.readexactly(HEADER.size)
        json_len, blob_len = HEADER.unpack(head)
        if json_len > max_json or blob_len > max_blob:
            raise ChannelError("frame too large", auth=True)
        payload = await reader.readexactly(json_len + blob_len)
        mac = await reader.readexactly(MAC_LEN)
    except asyncio.IncompleteReadError as exc:
        raise ChannelError("the peer closed the connection") from exc
    except OSError as exc:
        raise ChannelError(f"connection error: {exc}") from exc
    if not hmac.compare_digest(mac, _mac(key, prefix, head + payload)):
        raise ChannelError("a frame failed HMAC authentication: the heads do not share the same HA key", auth=True)
    try:
        body = json.loads(payload[:json_len])
    except ValueError as exc:
        raise ChannelError(f"an authenticated frame is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ChannelError("an authenticated frame is not a JSON object")
    return body, payload[json_len:]


class Channel:
    """One authenticated session: ``send`` and ``recv`` check direction and sequence numbers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: bytes, client: bool):
        self.reader = reader
        self.writer = writer
        self._key = session
        self._out = b"c" if client else b"s"
        self._in = b"s" if client else b"c"
        self._sent = 0
        self._received = 0

    async def send(self, body: dict[str, Any], blob: bytes = b"") -> None:
        self._sent += 1
        self.writer.write(pack(self._key, self._out + self._sent.to_bytes(8, "big"), body, blob))
        try:
            await self.writer.drain()
        except OSError as exc:
            raise ChannelError(f"connection error: {exc}") from exc

    async def recv(self) -> tuple[dict[str, Any], bytes]:
        self._received += 1
        return await read_frame(self.reader, self._key, self._in + self._received.to_bytes(8, "big"))

    async def request(self, body: dict[str, Any], timeout: float, blob: bytes = b"") -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.send(body, blob), timeout)
            reply, _ = await asyncio.wait_for(self.recv(), timeout)
        except TimeoutError as exc:
            raise ChannelError(f"no answer within {timeout:g} s") from exc
        return reply

    def close(self) -> None:
        self.writer.close()


def _session_key(base: bytes, client_nonce: str, server_nonce: str) -> bytes:
    return hmac.new(base, f"session/{client_nonce}/{server_nonce}".encode(), hashlib.sha256).digest()


async def client_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes, node: str, timeout: float
) -> tuple[Channel, dict[str, Any]]:
    base = derived_secret(key, "db")
    nonce = secrets.token_hex(16)
    writer.write(pack(base, b"hello", {"op": "hello", "node": node, "nonce": nonce}))
    try:
        await writer.drain()
        welcome, _ = await asyncio.wait_for(read_frame(reader, base, b"welcome" + nonce.encode()), timeout)
    except TimeoutError as exc:
        raise ChannelError(f"no welcome within {timeout:g} s") from exc
    except ChannelError as exc:
        if not exc.auth:
            # The standby drops a hello it cannot authenticate without a word: say what that most likely means.
            raise ChannelError(
                "the standby closed the connection during the handshake: its HA key differs from ours "
                "or it does not accept this head as its peer",
                auth=True,
            ) from exc
        raise
    channel = Channel(reader, writer, _session_key(base, nonce, str(welcome["nonce"])), client=True)
    await channel.send({"op": "confirm"})  # proves this is no replay: only a holder of the key can sign it
    return channel, welcome


async def server_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes, timeout: float
) -> tuple[Channel, dict[str, Any], str]:
    """Read and check the hello; returns the channel factory's parts: call ``welcome`` to finish."""
    base = derived_secret(key, "db")
    try:
        hello, _ = await asyncio.wait_for(read_frame(reader, base, b"hello", MAX_HELLO, 0), timeout)
    except TimeoutError as exc:
        raise ChannelError(f"no hello within {timeout:g} s") from exc
    nonce = secrets.token_hex(16)
    client_nonce = str(hello.get("nonce", ""))
    session = _session_key(base, client_nonce, nonce)
    return Channel(reader, writer, session, client=False), hello, nonce


def welcome_frame(key: bytes, hello: dict[str, Any], nonce: str, body: dict[str, Any]) -> bytes:
    base = derived_secret(key, "db")
    return pack(base, b"welcome" + str(hello.get("nonce", "")).encode(), {**body, "op": "welcome", "nonce": nonce})


async def server_confirm(channel: Channel, timeout: float) -> None:
    """After the welcome: wait for the client's first session frame. A replayed hello cannot produce it (the
    session key needs the welcome's fresh nonce), so it ends here, before it can displace the live session."""
    try:
        body, _ = await asyncio.wait_for(channel.recv(), timeout)
    except TimeoutError as exc:
        raise ChannelError(f"no confirmation within {timeout:g} s (a replayed hello?)", auth=True) from exc
    if body.get("op") != "confirm":
        raise ChannelError("the first frame of a session is not its confirmation", auth=True)
