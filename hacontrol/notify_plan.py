"""What a VRRP transition tells the outside world: keepalived's notify rules, as pure values.

For every state an instance or a sync group enters, keepalived runs the state's own
script, then the generic `notify` script with four more arguments, and writes one line to
its notify FIFOs. The rules below were checked against Debian's keepalived 2.2.7 (its
keepalived.conf(5) and the daemon itself, tests/interop/test_keepalived_notify.py and
test_notify_sync_group.py):

| the instance enters                  | script                 | generic `notify` / FIFO word |
|--------------------------------------|------------------------|------------------------------|
| BACKUP (also at start-up, from INIT) | notify_backup          | BACKUP                       |
| MASTER                               | notify_master          | MASTER                       |
| FAULT (link down, no address, ...)   | notify_fault           | FAULT                        |
| stopped (the daemon shuts down)      | notify_stop            | STOP                         |
| removed from the config by a reload  | notify_deleted's, if a | DELETED with notify_deleted, |
|                                      | script                 | else FAULT                   |

Leaving FAULT is entering BACKUP (or MASTER for an address owner): nothing is said about
the FAULT ending as such. The generic script gets `INSTANCE NAME STATE PRIORITY` after its
own arguments, the FIFO gets `INSTANCE "NAME" STATE PRIORITY\\n`; PRIORITY is the effective
priority (what adverts carry; at STOP the priority before the resigning advert's 0).

A sync group (vrrp_sync_group) has the same scripts but notify_deleted, and says
`GROUP NAME STATE 0` to its generic script and `GROUP "NAME" STATE 0\\n` to the FIFOs (a
group has no priority: keepalived writes 0). Its state is the engine's
(`SyncGroupStateChanged`, vrrp/syncgroup.py `group_state`). Checked against 2.2.7:

| the group enters                                 | script         | `notify` / FIFO word |
|--------------------------------------------------|----------------|----------------------|
| BACKUP (at start-up, once a member is BACKUP)    | notify_backup  | BACKUP               |
| MASTER (every member is MASTER)                  | notify_master  | MASTER               |
| FAULT (a member is in FAULT)                     | notify_fault   | FAULT                |
| stopped (the daemon shuts down), after the       | notify_stop    | STOP                 |
| members' own STOPs                               |                |                      |
| removed from the config by a reload              | nothing is said, and no STOP at exit  |

Where hacontrol differs from keepalived, deliberately:

- keepalived forks every script at once, so a quick MASTER script can overtake a slow
  BACKUP one; here they run one at a time in the order the transitions happened, the
  specific script before the generic one, each bounded by `notify_timeout`.
- A state the outside world has already been told is not told again: a VRRP process that
  restarts and resumes as MASTER (its VIPs never moved) runs no second notify_master.
- An instance restarted by a reload (its interface, family or VRID changed) is not
  reported as deleted: its new life reports its states as usual.
- A sync group added by a reload says its state at once; keepalived 2.2.7 says nothing
  until the group's next transition (and yet its STOP at exit).

No asyncio, no I/O: the subscriber in hacontrol/vrrp_notify.py runs the commands and
writes the lines; the buffer policy of a FIFO writer is here too (`FifoBuffer`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from vrrp.types import State

Kind = Literal["INSTANCE", "GROUP"]

# The words keepalived writes (vrrp_notify.c); DELETED only for instances.
MASTER, BACKUP, FAULT, STOP, DELETED = "MASTER", "BACKUP", "FAULT", "STOP", "DELETED"
_WORDS = {State.MASTER: MASTER, State.BACKUP: BACKUP, State.FAULT: FAULT}

# POSIX: a write of at most PIPE_BUF bytes to a pipe is atomic, so whole lines never
# interleave with another writer's or get split by a non-blocking partial write.
PIPE_BUF = 4096


@dataclass(frozen=True, slots=True)
class NotifyScripts:
    """One instance's (or group's) scripts, from the config."""

    master: tuple[str, ...] | None = None
    backup: tuple[str, ...] | None = None
    fault: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None
    deleted: tuple[str, ...] | None = None
    # notify_deleted was given (with or without a script): DELETED instead of FAULT
    say_deleted: bool = False
    notify: tuple[str, ...] | None = None  # the generic script
    timeout: float = 10.0

    def specific(self, word: str) -> tuple[tuple[str, ...] | None, str]:
        """The script for entering `word`, and its keepalived keyword (for logs)."""
        return {
            MASTER: (self.master, "notify_master"),
            BACKUP: (self.backup, "notify_backup"),
            FAULT: (self.fault, "notify_fault"),
            STOP: (self.stop, "notify_stop"),
            DELETED: (self.deleted, "notify_deleted"),
        }[word]


@dataclass(frozen=True, slots=True)
class Command:
    argv: tuple[str, ...]
    timeout: float
    event: str  # for logs: "notify_master VI_1"


@dataclass(frozen=True, slots=True)
class Notification:
    """Everything one "entering STATE" produces, in the order it must happen."""

    kind: Kind
    name: str
    state: str
    priority: int
    commands: tuple[Command, ...]
    fifo_line: str


def fifo_line(kind: Kind, name: str, state: str, priority: int) -> str:
    """keepalived's line, byte for byte: `INSTANCE "VI_1" MASTER 150` and a newline."""
    return f'{kind} "{name}" {state} {priority}\n'


def notification(
    kind: Kind,
    name: str,
    state: str,
    priority: int,
    scripts: NotifyScripts,
    *,
    specific: tuple[str, ...] | None = None,
    keyword: str | None = None,
) -> Notification:
    """The scripts and the line for entering `state`: the state's own script first, then
    the generic one (keepalived.conf(5): "notify script is called AFTER the notify_*
    script(s)"). `specific` overrides the state's own script (notify_deleted's runs for a
    removed instance even when the word said is FAULT)."""
    if specific is None and keyword is None:
        specific, keyword = scripts.specific(state)
    commands: list[Command] = []
    if specific:
        commands.append(Command(specific, scripts.timeout, f"{keyword} {name}"))
    if scripts.notify:
        commands.append(
            Command(
                (*scripts.notify, kind, name, state, str(priority)),
                scripts.timeout,
                f"notify {name} {state}",
            )
        )
    return Notification(
        kind, name, state, priority, tuple(commands), fifo_line(kind, name, state, priority)
    )


class VrrpNotifyPlanner:
    """Turns the engine's state changes into notifications, remembering what was said.

    `configure()` takes each instance's scripts (at start and on every reload: the new
    scripts apply from the next transition). An instance the config no longer names keeps
    its old scripts until the engine reports it stopped, which is then its deletion.
    """

    def __init__(self, instances: Mapping[str, NotifyScripts] | None = None) -> None:
        self._scripts: dict[str, NotifyScripts] = {}
        self._retiring: dict[str, NotifyScripts] = {}
        self._groups: dict[str, NotifyScripts] = {}
        self._said: dict[str, str] = {}  # instance -> the last state word notified
        self._priority: dict[str, int] = {}
        self._group_said: dict[str, str] = {}
        self.stopping = False
        self.configure(instances or {})

    def configure(
        self,
        instances: Mapping[str, NotifyScripts],
        groups: Mapping[str, NotifyScripts] | None = None,
    ) -> None:
        for name, scripts in self._scripts.items():
            if name not in instances:
                self._retiring[name] = scripts
        for name in instances:
            self._retiring.pop(name, None)
        self._scripts = dict(instances)
        self._groups = dict(groups or {})
        # keepalived 2.2.7 says nothing about a sync group a reload removes, and forgets
        # it (no STOP at exit); one that comes back later starts afresh.
        for name in list(self._group_said):
            if name not in self._groups:
                del self._group_said[name]

    def begin_shutdown(self) -> None:
        """From now on an instance that stops is STOP (the daemon is exiting)."""
        self.stopping = True

    def state_changed(self, instance: str, new: State, priority: int) -> Notification | None:
        """What the instance entering `new` says, or None when there is nothing to say."""
        if new is State.INITIALIZE:
            return self._stopped(instance, priority)
        scripts = self._scripts.get(instance)
        if scripts is None:
            return None  # a removed instance's last gasp, or one we never configured
        word = _WORDS[new]
        self._priority[instance] = priority
        if self._said.get(instance) == word:
            return None
        self._said[instance] = word
        return notification("INSTANCE", instance, word, priority, scripts)

    def _stopped(self, instance: str, priority: int) -> Notification | None:
        if self.stopping:
            scripts = self._scripts.get(instance) or self._retiring.pop(instance, None)
            if scripts is None or self._said.get(instance) == STOP:
                return None
            self._said[instance] = STOP
            return notification("INSTANCE", instance, STOP, priority, scripts)
        if instance in self._scripts:
            # Restarted by a reload (new identity): its new life reports BACKUP/MASTER,
            # possibly before this stop of the old one arrives.
            return None
        scripts = self._retiring.pop(instance, None)
        if scripts is None:
            return None
        self._said.pop(instance, None)
        self._priority.pop(instance, None)
        word = DELETED if scripts.say_deleted else FAULT
        # keepalived runs notify_deleted's script if any, never notify_fault, for a
        # removed instance (checked with 2.2.7).
        return notification(
            "INSTANCE",
            instance,
            word,
            priority,
            scripts,
            specific=scripts.deleted,
            keyword="notify_deleted",
        )

    def shutdown_remaining(self) -> list[Notification]:
        """STOP for every instance that was told a state but not yet STOP (the VRRP process
        died or did not answer while stopping), then for every sync group: keepalived says
        STOP for every instance, then for every group (notify_shutdown), and the engine
        reports no group stopping (its groups stop with it)."""
        out: list[Notification] = []
        for instance, scripts in self._scripts.items():
            said = self._said.get(instance)
            if said is None or said == STOP:
                continue
            self._said[instance] = STOP
            priority = self._priority.get(instance, 0)
            out.append(notification("INSTANCE", instance, STOP, priority, scripts))
        for group, scripts in self._groups.items():
            note = self._group_stopped(group, scripts)
            if note is not None:
                out.append(note)
        return out

    def group_state_changed(self, group: str, new: State) -> Notification | None:
        """A sync group entering `new`: its own script, the generic one with
        `GROUP NAME STATE 0`, and `GROUP "NAME" STATE 0` on the FIFO.

        INIT (every member stopped or not started yet) is STOP while the daemon stops and
        nothing otherwise: members restarted by a reload report their group's new states
        as they come, and keepalived has no word for a group between lives."""
        scripts = self._groups.get(group)
        if scripts is None:
            return None
        if new is State.INITIALIZE:
            return self._group_stopped(group, scripts) if self.stopping else None
        word = _WORDS[new]
        if self._group_said.get(group) == word:
            return None
        self._group_said[group] = word
        return notification("GROUP", group, word, 0, scripts)

    def _group_stopped(self, group: str, scripts: NotifyScripts) -> Notification | None:
        # A group never told a state (the daemon stopped before its members started) has
        # nothing to take back.
        said = self._group_said.get(group)
        if said is None or said == STOP:
            return None
        self._group_said[group] = STOP
        return notification("GROUP", group, STOP, 0, scripts)


# ---- the FIFO writer's buffer ----------------------------------------------------------------


@dataclass(slots=True)
class FifoStats:
    """One FIFO's figures, exported as metrics (hacontrol_notify_fifo_*)."""

    path: str
    written: int = 0  # lines handed to the kernel
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> lines
    errors: dict[str, int] = field(default_factory=dict)  # reason -> episodes
    buffered: int = 0
    reader: bool = False  # open for writing with a reader present, as far as we know


class FifoBuffer:
    """Lines waiting for a FIFO's reader: bounded, whole lines, the oldest dropped first.

    The oldest go first because a consumer that falls behind (or comes late) must end up
    with the current state: the newest line for each instance is the one that matters.
    keepalived does the opposite by accident (a full pipe refuses the newest line). A line
    partly written (possible only for chunks over PIPE_BUF) is never dropped: the reader
    would get half a line.
    """

    def __init__(self, max_lines: int) -> None:
        if max_lines < 1:
            raise ValueError("a FIFO buffer holds at least one line")
        self.max_lines = max_lines
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self.dropped = 0
        self.written = 0  # whole lines fully written
        self.dropping = False  # a drop episode is under way (logged once, when it starts)

    def __len__(self) -> int:
        return len(self._lines) + (1 if self._partial else 0)

    def push(self, line: bytes) -> bool:
        """Queue a line; True if that dropped the oldest one and began a drop episode."""
        self._lines.append(line)
        began = False
        while len(self._lines) > self.max_lines:
            self._lines.popleft()
            self.dropped += 1
            if not self.dropping:
                self.dropping = began = True
        return began

    def resize(self, max_lines: int) -> int:
        """Change the bound; returns how many lines that dropped."""
        if max_lines < 1:
            raise ValueError("a FIFO buffer holds at least one line")
        self.max_lines = max_lines
        before = self.dropped
        while len(self._lines) > max_lines:
            self._lines.popleft()
            self.dropped += 1
        return self.dropped - before

    def clear(self) -> int:
        """Forget every pending line (the FIFO is closed for good); returns how many."""
        count = len(self)
        self._lines.clear()
        self._partial = b""
        self.dropped += count
        return count

    def chunk(self, limit: int = PIPE_BUF) -> bytes:
        """Whole lines from the head, at most `limit` bytes (at least one line)."""
        parts: list[bytes] = []
        size = 0
        if self._partial:
            parts.append(self._partial)
            size = len(self._partial)
        for line in self._lines:
            if parts and size + len(line) > limit:
                break
            parts.append(line)
            size += len(line)
        return b"".join(parts)

    def consumed(self, count: int) -> None:
        """`count` bytes of the last chunk() reached the kernel."""
        if self._partial:
            taken = min(count, len(self._partial))
            self._partial = self._partial[taken:]
            count -= taken
            if not self._partial and taken:
                self.written += 1
        while count > 0 and self._lines:
            line = self._lines[0]
            if count >= len(line):
                self._lines.popleft()
                count -= len(line)
                self.written += 1
            else:
                self._lines.popleft()
                self._partial = line[count:]
                count = 0
        if not self:
            self.dropping = False


class Conditions:
    """A FIFO writer's trouble, as episodes: each begins once (logged and counted once),
    however many attempts fail while it lasts, and ends when writing works again."""

    def __init__(self) -> None:
        self.current: str | None = None  # None: writing works (or nothing to write yet)
        self.counts: dict[str, int] = {}

    def enter(self, reason: str) -> bool:
        """Now failing for `reason`; True if that is news (log it)."""
        if self.current == reason:
            return False
        self.current = reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        return True

    def clear(self) -> str | None:
        """Writing works; returns the reason that just ended, if any (log it)."""
        ended, self.current = self.current, None
        return ended


def scripts_of(
    master: tuple[str, ...] | None,
    backup: tuple[str, ...] | None,
    fault: tuple[str, ...] | None,
    stop: tuple[str, ...] | None,
    deleted: bool | tuple[str, ...],
    notify: tuple[str, ...] | None,
    timeout: float,
) -> NotifyScripts:
    """NotifyScripts from the config's keys (notify_deleted is a flag or a script)."""
    return NotifyScripts(
        master=master,
        backup=backup,
        fault=fault,
        stop=stop,
        deleted=deleted if isinstance(deleted, tuple) else None,
        say_deleted=deleted is True or isinstance(deleted, tuple),
        notify=notify,
        timeout=timeout,
    )


def group_scripts_of(
    master: tuple[str, ...] | None,
    backup: tuple[str, ...] | None,
    fault: tuple[str, ...] | None,
    stop: tuple[str, ...] | None,
    notify: tuple[str, ...] | None,
    timeout: float,
) -> NotifyScripts:
    """NotifyScripts from a sync group's keys (a group has no notify_deleted)."""
    return NotifyScripts(
        master=master, backup=backup, fault=fault, stop=stop, notify=notify, timeout=timeout
    )


def fifo_paths(notify_fifo: str | None, vrrp_notify_fifo: str | None) -> tuple[str, ...]:
    """The FIFOs that get VRRP lines; one path named twice is written once (keepalived
    ignores vrrp_notify_fifo when it is notify_fifo)."""
    paths: list[str] = []
    for path in (notify_fifo, vrrp_notify_fifo):
        if path is not None and path not in paths:
            paths.append(path)
    return tuple(paths)


__all__ = [
    "Command",
    "Conditions",
    "FifoBuffer",
    "FifoStats",
    "Notification",
    "NotifyScripts",
    "VrrpNotifyPlanner",
    "fifo_line",
    "fifo_paths",
    "group_scripts_of",
    "notification",
    "scripts_of",
]
