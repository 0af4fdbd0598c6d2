"""What the daemon must remember across a restart, in one small JSON file.

- The operator's maintenance overrides: real servers taken out of service
  (`hacontrol drain`) and VRRP instances stepped down (`hacontrol step-down`). A
  change window must not end because the daemon was restarted in the middle of it.
- The virtual services the daemon owns in the kernel, so that a service removed from
  the config while the daemon was down is drained and deleted at the next start instead
  of being left forwarding with no health checks (or, worse, deleted although it belongs
  to another tool).

Default location /var/lib/hacontrol/state.json (systemd's StateDirectory). Writes are
atomic (temporary file, fsync, rename), so a crash leaves the old file or the new one.
A file that cannot be read is reported, kept aside as `state.json.bad`, and the daemon
starts with no overrides: refusing to start would be worse for a failover pair.

encode/decode are pure; `StateFile` is the thin file adapter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from hacontrol.ipvs.model import ServiceKey

log = logging.getLogger("hacontrol.state")

DEFAULT_STATE_DIR = Path("/var/lib/hacontrol")
STATE_FILE = "state.json"
FORMAT_VERSION = 1
MAX_STATE_BYTES = 16 * 1024 * 1024


class StateError(ValueError):
    """The state file's content is not what this version writes."""


@dataclass(frozen=True, slots=True, order=True)
class RealServerRef:
    """A real server as the operator names it: its virtual server and address:port."""

    virtual_server: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.virtual_server} {host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PersistentState:
    drained: frozenset[RealServerRef] = frozenset()
    stepped_down: frozenset[str] = frozenset()
    owned_services: frozenset[ServiceKey] = frozenset()
    # seconds a service removed from the config may drain (its last drain_timeout)
    drain_timeouts: dict[ServiceKey, float] = field(default_factory=dict)


def _key_to_json(key: ServiceKey) -> dict[str, Any]:
    return {
        "family": key.family,
        "fwmark": key.fwmark,
        "protocol": key.protocol,
        "address": None if key.address is None else str(key.address),
        "port": key.port,
    }


def _key_from_json(data: Any) -> ServiceKey:
    if not isinstance(data, dict):
        raise StateError(f"a service key must be an object, not {type(data).__name__}")
    try:
        address = data["address"]
        return ServiceKey(
            family=int(data["family"]),
            fwmark=int(data["fwmark"]),
            protocol=int(data["protocol"]),
            address=None if address is None else ip_address(str(address)),
            port=int(data["port"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"bad service key {data!r}: {exc}") from None


def encode_state(state: PersistentState) -> str:
    owned = sorted(state.owned_services)
    doc = {
        "version": FORMAT_VERSION,
        "drained": [
            {"virtual_server": r.virtual_server, "address": r.address, "port": r.port}
            for r in sorted(state.drained)
        ],
        "stepped_down": sorted(state.stepped_down),
        "owned_services": [
            {**_key_to_json(k), "drain_timeout": state.drain_timeouts.get(k)} for k in owned
        ],
    }
    return json.dumps(doc, indent=1) + "\n"


def decode_state(text: str) -> PersistentState:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StateError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StateError("the top level must be an object")
    if doc.get("version") != FORMAT_VERSION:
        raise StateError(f"unknown format version {doc.get('version')!r}")
    drained: set[RealServerRef] = set()
    for item in _list(doc, "drained"):
        try:
            drained.add(
                RealServerRef(str(item["virtual_server"]), str(item["address"]), int(item["port"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"bad drained entry {item!r}: {exc}") from None
    stepped = _list(doc, "stepped_down")
    if not all(isinstance(name, str) for name in stepped):
        raise StateError("stepped_down must list instance names")
    owned: set[ServiceKey] = set()
    timeouts: dict[ServiceKey, float] = {}
    for item in _list(doc, "owned_services"):
        key = _key_from_json(item)
        owned.add(key)
        timeout = item.get("drain_timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0:
            timeouts[key] = float(timeout)
    return PersistentState(frozenset(drained), frozenset(stepped), frozenset(owned), timeouts)


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise StateError(f"{key} must be a list")
    return value


class StateFile:
    """The state file under `directory`; every method logs and survives I/O trouble."""

    def __init__(self, directory: Path = DEFAULT_STATE_DIR) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def load(self) -> PersistentState:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return PersistentState()
        except OSError as exc:
            log.error("state.read_failed path=%s error=%s", self.path, exc)
            return PersistentState()
        try:
            if len(data) > MAX_STATE_BYTES:
                raise StateError(f"larger than {MAX_STATE_BYTES} bytes")
            return decode_state(data.decode("utf-8"))
        except (StateError, UnicodeDecodeError) as exc:
            bad = self.path.with_name(STATE_FILE + ".bad")
            log.error("state.unreadable path=%s error=%s kept_as=%s", self.path, exc, bad)
            with contextlib.suppress(OSError):
                os.replace(self.path, bad)
            return PersistentState()

    def save(self, state: PersistentState) -> bool:
        """Write atomically; False (logged) when it could not be written."""
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            with os.fdopen(fd, "wb") as f:
                f.write(encode_state(state).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("state.write_failed path=%s error=%s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True
