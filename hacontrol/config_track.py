"""The config of tracking and sync groups: keepalived's vrrp_script, track_file,
vrrp_track_process, vrrp_sync_group, and the track_* references of instances and groups.

Values only (pydantic models); what they mean at run time is vrrp/track.py (weights),
vrrp/syncgroup.py (groups), hacontrol/tracking.py (running scripts, reading files,
following processes) and hacontrol/desired.py (which weights apply where).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hacontrol.config_lvs import Frozen

# keepalived has no timeout for notify scripts (it forks them and forgets them, except
# notify_stop: 1 s); hacontrol runs them one at a time, so a hung one must end. The same
# default as the real-server hooks (hacontrol/lvs.py).
DEFAULT_NOTIFY_TIMEOUT = 10.0

# A notify script: the program and its arguments, exec'd without a shell.
ScriptArgv = Annotated[
    tuple[Annotated[str, Field(min_length=1)], ...], Field(strict=False, min_length=1)
]

# keepalived's ranges: interfaces and scripts -253..253, files and processes -254..254 (a
# file's value may be negative, so 254 can still make a change of 253).
ScriptWeight = Annotated[int, Field(ge=-253, le=253)]
FileWeight = Annotated[int, Field(ge=-254, le=254)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


def _argv(value: Any) -> Any:
    """keepalived writes `script "/path arg1 'arg 2'"`: a string is split as a shell would
    split words (no shell runs it); a list is taken as the argv itself."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r} into words: {exc}") from None
    return value


def script_argv(value: Any) -> Any:
    """keepalived writes `notify_master /path/to_master.sh`: a bare path is taken as the
    program alone; a command line with arguments must be a list (no shell splits it)."""
    if not isinstance(value, str):
        return value
    if value.strip() and not any(c.isspace() for c in value.strip()):
        return (value.strip(),)
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    hint = "[" + ", ".join(words) + "]" if words else "[/path/to/program, arg, ...]"
    raise ValueError(
        f"a script is a list: the program and its arguments, run without a shell (write {hint})"
    )


def one_word_name(what: str, value: str) -> str:
    """keepalived's names are single words; hacontrol's go into notify FIFO lines
    (`INSTANCE "VI_1" MASTER 150`, `GROUP "G" MASTER 0`) and script arguments, which a
    space, a quote or a line break would garble for every consumer."""
    if any(c.isspace() or not c.isprintable() or c == '"' for c in value):
        raise ValueError(
            f"{what} name is one word without quotes (got {value!r}): it is "
            "written into notify FIFO lines and notify script arguments"
        )
    return value


def _check_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    if not argv or not argv[0]:
        raise ValueError("the program (first word) is empty")
    for arg in argv:
        if "\0" in arg:
            raise ValueError(f"argument {arg!r} contains a NUL byte")
    return argv


class VrrpScriptConfig(Frozen):
    """keepalived's vrrp_script: a program run every `interval` seconds, without a shell.

    Exit status 0 is success, anything else (a signal, a timeout) failure. `rise`
    successes make it up, `fall` failures down; its first result decides at once (keepalived
    starts it one success short of up), unless `init_fail` (start down: `rise` successes
    needed). `timeout` defaults to `interval`; on expiry its whole process group is killed.
    """

    name: Name
    script: tuple[str, ...] = Field(min_length=1, strict=False)
    interval: float = Field(default=1.0, gt=0, le=86400)
    timeout: float | None = Field(default=None, gt=0, le=86400)
    weight: ScriptWeight = 0
    reverse: bool = False
    rise: int = Field(default=1, ge=1, le=1000)
    fall: int = Field(default=1, ge=1, le=1000)
    user: str | None = Field(default=None, min_length=1)
    group: str | None = Field(default=None, min_length=1)
    init_fail: bool = False

    @field_validator("script", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _argv(value)

    @field_validator("script")
    @classmethod
    def _program(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_argv(value)

    @model_validator(mode="after")
    def _group_needs_user(self) -> VrrpScriptConfig:
        if self.group is not None and self.user is None:
            raise ValueError(f"group {self.group!r} is set without user")
        return self

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.interval


class TrackFileConfig(Frozen):
    """keepalived's track_file: an integer in a file, re-read whenever the file changes.

    A value that is not a number reads as 0 (keepalived uses strtol), and so does a
    missing file; both are logged and counted. `init_file`: write this value at start if
    the file does not exist (with `init_file_overwrite`, even if it does).
    """

    name: Name
    file: Annotated[Path, Field(strict=False)]
    weight: FileWeight = 1
    reverse: bool = False
    init_file: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    init_file_overwrite: bool = False

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"{value} is not an absolute path")
        if value.name in ("", ".", ".."):
            raise ValueError(f"{value} does not name a file")
        return value

    @model_validator(mode="after")
    def _overwrite_needs_value(self) -> TrackFileConfig:
        if self.init_file_overwrite and self.init_file is None:
            raise ValueError("init_file_overwrite is set without init_file")
        return self


class TrackProcessConfig(Frozen):
    """keepalived's vrrp_track_process: how many processes of a name are running.

    `process` is the name (/proc/PID/comm, exact match), or with parameters (or
    `full_command`) the command line. `quorum` <= count <= `quorum_max` is up.
    `fork_delay` / `terminate_delay` (`delay` sets both) wait that long after quorum is
    gained / lost before saying so, so a restart does not bounce the instance.
    """

    name: Name
    process: tuple[str, ...] = Field(min_length=1, strict=False)
    param_match: Literal["exact", "initial", "partial"] = "exact"
    full_command: bool = False
    weight: FileWeight = 1
    reverse: bool = False
    quorum: int = Field(default=1, ge=0, le=65535)
    quorum_max: int | None = Field(default=None, ge=0, le=65535)
    delay: float | None = Field(default=None, ge=0, le=3600)
    fork_delay: float | None = Field(default=None, ge=0, le=3600)
    terminate_delay: float | None = Field(default=None, ge=0, le=3600)

    @field_validator("process", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _argv(value)

    @field_validator("process")
    @classmethod
    def _program(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_argv(value)

    @model_validator(mode="after")
    def _quorum(self) -> TrackProcessConfig:
        if self.quorum_max is not None and self.quorum_max < self.quorum:
            raise ValueError(f"quorum_max {self.quorum_max} is below quorum {self.quorum}")
        if not self.full_command and len(self.process) == 1 and len(self.process[0]) > 15:
            raise ValueError(
                f"process name {self.process[0]!r} is longer than the kernel's 15-character "
                "process name (/proc/PID/comm): it can never match; use full_command"
            )
        return self

    @property
    def max_count(self) -> int:
        return self.quorum_max if self.quorum_max is not None else 2**31

    @property
    def up_delay(self) -> float:
        return self.fork_delay if self.fork_delay is not None else (self.delay or 0.0)

    @property
    def down_delay(self) -> float:
        return self.terminate_delay if self.terminate_delay is not None else (self.delay or 0.0)


class _TrackRef(Frozen):
    """One tracked thing: a bare name, or `{name, weight, reverse}`."""

    name: Name
    reverse: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


class TrackInterfaceRef(_TrackRef):
    name: str = Field(min_length=1, max_length=15)
    weight: ScriptWeight = 0  # keepalived: 0 (FAULT while down) unless given


class TrackScriptRef(_TrackRef):
    weight: ScriptWeight | None = None  # None: the vrrp_script's own weight


class TrackFileRef(_TrackRef):
    weight: FileWeight | None = None  # None: the track_file's own weight


class TrackProcessRef(_TrackRef):
    weight: FileWeight | None = None  # None: the vrrp_track_process's own weight


class Tracking(Frozen):
    """The track_* blocks an instance or a sync group has."""

    track_interface: tuple[TrackInterfaceRef, ...] = Field(default=(), strict=False)
    track_script: tuple[TrackScriptRef, ...] = Field(default=(), strict=False)
    track_file: tuple[TrackFileRef, ...] = Field(default=(), strict=False)
    track_process: tuple[TrackProcessRef, ...] = Field(default=(), strict=False)

    @property
    def tracks_anything(self) -> bool:
        return bool(
            self.track_interface or self.track_script or self.track_file or self.track_process
        )


class SyncGroupConfig(Tracking):
    """keepalived's vrrp_sync_group: instances that are MASTER together or not at all.

    Its track_* items apply to every member. Items of the members themselves get weight 0
    (FAULT while down), as keepalived does, unless `sync_group_tracking_weight`.
    """

    name: Name
    group: tuple[Name, ...] = Field(min_length=1, strict=False)
    sync_group_tracking_weight: bool = False
    # keepalived's global_tracking (deprecated there): the same as sync_group_tracking_weight.
    global_tracking: bool = False
    # keepalived's group notify scripts (hacontrol/notify_plan.py says which run when),
    # exec'd without a shell in the same queue as the instances' scripts. The generic
    # `notify` gets GROUP NAME STATE 0 appended (a group has no priority).
    notify_master: ScriptArgv | None = None
    notify_backup: ScriptArgv | None = None
    notify_fault: ScriptArgv | None = None
    notify_stop: ScriptArgv | None = None
    notify: ScriptArgv | None = None
    notify_timeout: float = Field(default=DEFAULT_NOTIFY_TIMEOUT, gt=0, le=3600)

    _script_argv = field_validator(
        "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify", mode="before"
    )(script_argv)

    @field_validator("name")
    @classmethod
    def _one_word(cls, value: str) -> str:
        return one_word_name("a sync group", value)

    @field_validator("group")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({n for n in value if value.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice")
        return value

    @property
    def keeps_member_weights(self) -> bool:
        return self.sync_group_tracking_weight or self.global_tracking


__all__ = [
    "DEFAULT_NOTIFY_TIMEOUT",
    "ScriptArgv",
    "SyncGroupConfig",
    "TrackFileConfig",
    "TrackFileRef",
    "TrackInterfaceRef",
    "TrackProcessConfig",
    "TrackProcessRef",
    "TrackScriptRef",
    "Tracking",
    "VrrpScriptConfig",
    "one_word_name",
    "script_argv",
]
