"""`include:` in hacontrol's YAML: a fleet shares service definitions across files.

A top-level `include:` names files (a string or a list; globs; relative to the including
file's folder), read in order, sorted within a glob, each of which may include further
files. What they hold is merged into one document:

- the lists (`vrrp_instances`, `vrrp_scripts`, `track_files`, `track_processes`,
  `vrrp_sync_groups`, `virtual_servers`, `virtual_server_groups`): each file's items are
  appended, in include order (the including file's own first);
- any other top-level key (`global`, `ipvs`) may be given by one file only: a second
  one is an error naming both places.

A glob that matches nothing is not an error (a conf.d folder may be empty, as with
keepalived's include); a named file that is missing or unreadable is, at the line of the
`include:` that names it, and so is an include loop. Every later error (validation,
cross-item checks) names the file and line the offending key came from: the merged
document keeps, per list item and per key, which file and which path there it is.
"""

from __future__ import annotations

import glob as globmod
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from hacontrol.yamlsrc import LineMap, LoadedYaml, Path, SourceIssue, read_yaml_file

LIST_KEYS = (
    "vrrp_instances",
    "vrrp_scripts",
    "track_files",
    "track_processes",
    "vrrp_sync_groups",
    "virtual_servers",
    "virtual_server_groups",
)
MAX_INCLUDED_FILES = 4096
MAX_INCLUDE_DEPTH = 16


@dataclass(slots=True)
class _Piece:
    """A run of list items, or one key, that came from one file."""

    source: LoadedYaml
    path_there: Path  # the key (and first index) in that file


@dataclass(slots=True)
class IncludedYaml:
    """The merged document, with LoadedYaml's interface (`data`, `issues`, `locate`)."""

    data: Any
    filename: str
    issues: list[SourceIssue] = field(default_factory=list)
    main: LoadedYaml | None = None
    # (key, first index in the merged list, count, piece) for list keys; key -> piece else.
    runs: list[tuple[str, int, int, _Piece]] = field(default_factory=list)
    keys: dict[str, _Piece] = field(default_factory=dict)

    def origin(self, path: Path) -> tuple[LoadedYaml | None, Path]:
        """The file a merged path came from, and the path in that file."""
        if not path or self.main is None:
            return self.main, path
        key = path[0]
        if isinstance(key, str) and key in self.keys:
            piece = self.keys[key]
            return piece.source, path
        if isinstance(key, str) and len(path) > 1 and isinstance(path[1], int):
            for name, start, count, piece in self.runs:
                if name == key and start <= path[1] < start + count:
                    local = piece.path_there[1]
                    assert isinstance(local, int)
                    return piece.source, (key, local + path[1] - start, *path[2:])
        return self.main, path

    def locate(
        self, paths: Iterable[Path], synonyms: Mapping[str, str] | None = None
    ) -> IncludedLines:
        wanted = list(paths)
        by_source: dict[int, tuple[LoadedYaml, list[Path]]] = {}
        for path in wanted:
            source, local = self.origin(tuple(path))
            if source is not None:
                by_source.setdefault(id(source), (source, []))[1].append(local)
        maps = {
            key: (src, src.locate(locals_, synonyms)) for key, (src, locals_) in by_source.items()
        }
        return IncludedLines(self, maps)

    def line_of(self, path: Path) -> int | None:
        return self.locate([path]).line_of(path)


@dataclass(slots=True)
class IncludedLines:
    """LineMap's interface over several files: `line_of`, and `file_of` for the file."""

    doc: IncludedYaml
    maps: dict[int, tuple[LoadedYaml, LineMap]]

    def line_of(self, path: Path) -> int | None:
        source, local = self.doc.origin(tuple(path))
        if source is None or id(source) not in self.maps:
            return None
        return self.maps[id(source)][1].line_of(local)

    def path_in_file(self, path: Path) -> Path:
        """The path as its own file has it (list indexes count in that file)."""
        return self.doc.origin(tuple(path))[1]

    def file_of(self, path: Path) -> str:
        source, _ = self.doc.origin(tuple(path))
        return source.filename if source is not None else self.doc.filename


def resolve_includes(loaded: LoadedYaml) -> LoadedYaml | IncludedYaml:
    """`loaded` itself when it includes nothing; else the merged document."""
    data = loaded.data
    if not isinstance(data, dict) or "include" not in data:
        return loaded
    merged = IncludedYaml(data={}, filename=loaded.filename, issues=list(loaded.issues))
    merged.main = loaded
    state = _State(merged)
    state.add(loaded, [os.path.realpath(loaded.filename)])
    for key, items in state.lists.items():
        merged.data[key] = tuple(items)
    return merged


@dataclass
class _State:
    doc: IncludedYaml
    files: int = 0
    lists: dict[str, list[Any]] = field(default_factory=dict)

    def issue(self, source: LoadedYaml, path: Path, message: str) -> None:
        line = source.line_of(path)
        self.doc.issues.append(SourceIssue(source.filename, line, path, message))

    def add(self, source: LoadedYaml, chain: list[str]) -> None:
        data = source.data
        if data is None:
            return
        if not isinstance(data, dict):
            self.issue(source, (), "an included file must hold a mapping (the top level)")
            return
        for key, value in data.items():
            if key == "include":
                continue
            if key in LIST_KEYS and isinstance(value, tuple):
                items = self.lists.setdefault(key, [])
                self.doc.runs.append((key, len(items), len(value), _Piece(source, (key, 0))))
                items.extend(value)
                continue
            if key in self.doc.keys or key in self.lists:
                first = self.doc.keys.get(key)
                where = (
                    f"{first.source.filename}:{first.source.line_of((key,))}"
                    if first is not None
                    else "another file"
                )
                self.issue(source, (key,), f"{key} is also given in {where}: give it once")
                continue
            self.doc.keys[key] = _Piece(source, (key,))
            self.doc.data[key] = value
        if "include" in data:
            self.include(source, data["include"], chain)

    def include(self, source: LoadedYaml, value: Any, chain: list[str]) -> None:
        patterns = (value,) if isinstance(value, str) else value
        if not isinstance(patterns, tuple) or not all(isinstance(p, str) for p in patterns):
            self.issue(source, ("include",), "include is a file name or a list of file names")
            return
        base = FsPath(source.filename).parent
        for index, pattern in enumerate(patterns):
            where: Path = ("include",) if isinstance(value, str) else ("include", index)
            full = str(base / pattern) if not os.path.isabs(pattern) else pattern
            if globmod.has_magic(full):
                matches = sorted(p for p in globmod.glob(full) if not os.path.isdir(p))
            else:
                matches = [full]
            for match in matches:
                real = os.path.realpath(match)
                if real in chain:
                    loop = " -> ".join([*chain[chain.index(real) :], real])
                    self.issue(source, where, f"include loop: {loop}")
                    continue
                if len(chain) >= MAX_INCLUDE_DEPTH:
                    self.issue(source, where, f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
                    continue
                self.files += 1
                if self.files > MAX_INCLUDED_FILES:
                    self.issue(source, where, f"more than {MAX_INCLUDED_FILES} included files")
                    return
                if os.path.isdir(match):
                    self.issue(source, where, f"include {match}: is a folder")
                    continue
                if not os.path.exists(match):
                    self.issue(source, where, f"include {match}: no such file")
                    continue
                loaded = read_yaml_file(match)
                if loaded.data is None and loaded.issues:
                    # The included file's own problem, at its own line; an unreadable
                    # file (no line) is reported where it is named.
                    if all(i.line is None for i in loaded.issues):
                        reason = "; ".join(i.message for i in loaded.issues)
                        self.issue(source, where, f"include {match}: {reason}")
                    else:
                        self.doc.issues.extend(loaded.issues)
                    continue
                self.doc.issues.extend(loaded.issues)
                self.add(loaded, [*chain, real])
