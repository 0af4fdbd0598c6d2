"""The control socket: how `hacontrol status`, `reload` and the maintenance commands talk
to the running daemon.

A Unix stream socket (default /run/hacontrol/control, mode 0600). Only root, or the
daemon's own user, may connect: every connection's peer credentials (SO_PEERCRED) are
checked, so the file mode is a second guard, not the only one. One request per
connection: the client sends one JSON object on one line, the daemon answers one JSON
object on one line and closes:

    -> {"command": "status"}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": "unknown command 'stauts' (known: ...)"}

Bad input never stalls or crashes the daemon: a request is read with a size limit
(MAX_REQUEST bytes) and a deadline (REQUEST_TIMEOUT), at most MAX_CLIENTS connections
are served at once (others are answered "busy"), and anything malformed gets a clear
JSON error and changes nothing. `parse_request` is pure and holds the whole grammar.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("hacontrol.control")

CONTROL_SOCKET = "control"
MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request
MAX_CLIENTS = 16
MAX_RESPONSE = 64 * 1024 * 1024  # what a client accepts (a status of a very large table)
DISCARD_LIMIT = 16 * 1024 * 1024  # bytes read and dropped after answering

# command -> (required arguments, optional arguments), each name -> JSON type
_ARGS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "status": ({}, {"counters": bool}),
    "reload": ({}, {}),
    "drain": ({"virtual_server": str, "real_server": str}, {}),
    "undrain": ({"virtual_server": str, "real_server": str}, {}),
    "step-down": ({}, {"instances": list}),
    "release": ({}, {"instances": list}),
    "restart": ({}, {}),
}
COMMANDS = tuple(_ARGS)


class RequestError(ValueError):
    """The request is malformed; the message goes back to the client as it is."""


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_request(data: bytes) -> Request:
    """One request line -> Request, or RequestError saying exactly what is wrong."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("the request is not UTF-8") from None
    except ValueError as exc:
        raise RequestError(f"the request is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError("the request must be a JSON object")
    command = doc.get("command")
    if not isinstance(command, str):
        raise RequestError('the request needs "command": a string')
    if command not in _ARGS:
        raise RequestError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    required, optional = _ARGS[command]
    args = {k: v for k, v in doc.items() if k != "command"}
    for name in args:
        if name not in required and name not in optional:
            raise RequestError(f"{command}: unknown argument {name!r}")
    for name, kind in {**required, **optional}.items():
        if name not in args:
            if name in required:
                raise RequestError(f"{command}: missing argument {name!r}")
            continue
        value = args[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise RequestError(f"{command}: {name!r} must be a {_json_type(kind)}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise RequestError(f"{command}: {name!r} must be a list of strings")
    return Request(command, args)


def _json_type(kind: type) -> str:
    return {str: "string", bool: "boolean", list: "list", int: "number"}.get(kind, kind.__name__)


def error_response(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def ok_response(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


Handler = Callable[[Request], Awaitable[dict[str, Any]]]


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid (SO_PEERCRED), None if the kernel would not say."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Serves `handler` on a Unix socket at `path` (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        max_request: int = MAX_REQUEST,
        timeout: float = REQUEST_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.path = path
        self._handler = handler
        self._max_request = max_request
        self._timeout = timeout
        self._max_clients = max_clients
        self._clients = 0
        self._server: asyncio.AbstractServer | None = None
        self._allowed_uids = {0, os.geteuid()}
        self.requests = 0
        self.rejected = 0  # malformed, oversized, too slow, not allowed, busy

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Bound under a temporary name, made 0600, then renamed into place: the socket
        # never exists at its path with a wider mode, not even for a moment. (We hold the
        # pid lock: a socket file at the path is a leftover of a daemon that died.)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=self._max_request + 1
            )
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        log.info("control.listening path=%s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await self._answer(reader, writer)
            writer.write(json.dumps(response, separators=(",", ":")).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), self._timeout)
            if writer.can_write_eof():
                writer.write_eof()
            # Read (and drop) what a client is still sending, briefly and boundedly, so that
            # closing does not reset the connection before it has read our answer.
            await asyncio.wait_for(_discard(reader, DISCARD_LIMIT), 1.0)
        except (OSError, TimeoutError, ConnectionError):
            pass  # the client went away: nothing to tell it
        except Exception:
            log.exception("control.error")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid not in self._allowed_uids:
            self.rejected += 1
            log.warning("control.denied uid=%s", uid)
            return error_response("permission denied: only root may use the control socket")
        if self._clients >= self._max_clients:
            self.rejected += 1
            return error_response("busy: too many control connections, try again")
        self._clients += 1
        try:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), self._timeout)
            except asyncio.LimitOverrunError:
                self.rejected += 1
                return error_response(f"request too large (limit {self._max_request} bytes)")
            except asyncio.IncompleteReadError as exc:
                if len(exc.partial) > self._max_request:
                    self.rejected += 1
                    return error_response(f"request too large (limit {self._max_request} bytes)")
                line = exc.partial  # a client that wrote without a newline and shut down
            except TimeoutError:
                self.rejected += 1
                return error_response(f"no complete request within {self._timeout:g} s")
            try:
                request = parse_request(line)
            except RequestError as exc:
                self.rejected += 1
                return error_response(str(exc))
            self.requests += 1
            try:
                return await self._handler(request)
            except RequestError as exc:
                return error_response(str(exc))
            except Exception as exc:
                log.exception("control.handler_error command=%s", request.command)
                return error_response(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._clients -= 1


async def _discard(reader: asyncio.StreamReader, limit: int) -> None:
    left = limit
    while left > 0:
        chunk = await reader.read(min(65536, left))
        if not chunk:
            return
        left -= len(chunk)


class ControlError(Exception):
    """The client could not talk to the daemon, or the daemon answered with an error."""


def call(path: Path, request: dict[str, Any], *, timeout: float = 30.0) -> Any:
    """Send one request to the daemon at `path` and return its result (blocking, for the
    CLI). Raises ControlError with a message for the operator."""
    data = json.dumps(request).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(data)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_RESPONSE:
                    raise ControlError(f"{path}: the answer is larger than {MAX_RESPONSE} bytes")
    except FileNotFoundError:
        raise ControlError(f"{path}: no such socket: is hacontrol running?") from None
    except ConnectionRefusedError:
        raise ControlError(f"{path}: connection refused: is hacontrol running?") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (run as root)") from None
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        response = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        raise ControlError(f"{path}: the daemon's answer is not JSON") from None
    if not isinstance(response, dict) or "ok" not in response:
        raise ControlError(f"{path}: unexpected answer {response!r:.200}")
    if not response["ok"]:
        raise ControlError(str(response.get("error", "unknown error")))
    return response.get("result")
