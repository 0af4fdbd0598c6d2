"""YAML loading that no file can crash, and that remembers where every key came from.

pydantic reports an error at a path like ("vrrp_instances", 0, "priority");
operators want "hacontrol.yaml:14". Duplicate keys, which PyYAML silently
resolves to the last one, are reported: in a failover config a second
`priority:` overriding the first is a mistake nobody wants hidden.

How: libyaml's C parser (PyYAML's pure-Python one where the C extension is
missing) produces events, and `_Composer` builds plain Python data from them
in one loop, without recursion and without PyYAML's node tree (which costs
about 70 bytes of memory per byte of YAML and recurses once per nesting level:
in C for libyaml, so a deep enough file crashes the process). Every limit is
checked as the events arrive, before anything grows:

- the file: at most MAX_BYTES (read no further);
- nesting: at most MAX_DEPTH collections deep;
- the expanded size: at most MAX_NODES values (scalars, keys and collections),
  counting what each alias stands for as often as it is used. pydantic
  validates the expanded data, so this is what bounds the work after the
  parse; an alias bomb (a few hundred bytes that expand to billions of values)
  stops at the first alias past the limit. An alias to a collection that is
  still open (`&a [*a]`) is an error, not an endless structure.

Sequences become tuples (the models hold tuples), mappings dicts. An alias is
the anchored object itself, shared, never copied; merge keys (`<<: *base`) work
as in PyYAML.

Lines are looked up only when something is reported: `LoadedYaml.locate`
reads the events a second time and records the lines of just the paths asked
for, so a valid file pays for no line map, and aliases are never walked (the
line of a path through an alias is the alias's line). Every YAML problem is a
`SourceIssue` at the line of the mistake, not at the line where the parser
noticed it (see `_syntax_issue`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

import yaml

Path = tuple[str | int, ...]

MAX_BYTES = 32 * 1024 * 1024
"""A 10,000-service config with checks is 3-7 MB, 250,000 real servers about 11 MB."""
MAX_DEPTH = 64
"""The deepest path in the models is 8: virtual_servers[].real_servers[].checks[].status_codes[]."""
MAX_NODES = 4_000_000
"""Values in the expanded document; 250,000 real servers in flow style are about 1.3 million."""

# YAML 1.1 §5.1 (and PyYAML's reader): what a YAML stream may contain.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_CHAR_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:timestamp",
}
_CACHE_LIMIT = 65536


def libyaml_loader() -> bool:
    """Whether PyYAML was built with libyaml (about 5x faster on large files)."""
    return bool(getattr(yaml, "__with_libyaml__", False)) and hasattr(yaml, "CSafeLoader")


@dataclass(frozen=True, slots=True)
class SourceIssue:
    """One problem found in a config file: where, which key, what."""

    file: str
    line: int | None
    path: Path
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = format_path(self.path)
        message = f"warning: {self.message}" if self.severity == "warning" else self.message
        return f"{where}: {key}: {message}" if key else f"{where}: {message}"


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(slots=True)
class LineMap:
    """Lines of the paths `LoadedYaml.locate` was asked for (and of their prefixes)."""

    lines: dict[Path, int] = field(default_factory=dict)
    # A mapping with a merge key (`<<`): keys it got from the merge are at that line.
    merges: dict[Path, int] = field(default_factory=dict)
    synonyms: Mapping[str, str] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest known prefix of `path`.

        pydantic inserts union tags into error paths (e.g. the discriminator
        value); dropping unknown elements one at a time keeps us pointing at
        the nearest line the operator wrote.
        """
        probe = _canonical(tuple(path), self.synonyms)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            if probe[:-1] in self.merges and probe[:-1] in self.lines:
                return self.merges[probe[:-1]]
            probe = probe[:-1]
        return self.lines.get((), None)


@dataclass(slots=True)
class LoadedYaml:
    data: Any
    filename: str
    issues: list[SourceIssue] = field(default_factory=list)
    text: str = ""
    pure: bool = False

    def locate(self, paths: Iterable[Path], synonyms: Mapping[str, str] | None = None) -> LineMap:
        """Lines of `paths`, from a second read of the events (only those paths are kept).

        `synonyms` maps a key to the spelling it is reported under (a field's
        alias to its name), so a path finds the line whichever the file used.
        """
        syn = dict(synonyms or {})
        wanted: set[Path] = set()
        for path in paths:
            canon = _canonical(tuple(path), syn)
            for end in range(len(canon) + 1):
                wanted.add(canon[:end])
        out = LineMap(synonyms=syn)
        if not self.text:  # nothing was parsed (or the file is empty)
            out.lines[()] = 1
            return out
        # A second read of text that read cleanly the first time cannot fail; if it
        # did, the lines found so far still stand.
        with contextlib.suppress(yaml.YAMLError, _Abort):
            _locate(_parser(self.text, self.pure), wanted, syn, out)
        out.lines.setdefault((), 1)
        return out

    def line_of(self, path: Path) -> int | None:
        return self.locate([path]).line_of(path)


def _canonical(path: Path, synonyms: Mapping[str, str]) -> Path:
    if not synonyms:
        return path
    return tuple(synonyms.get(p, p) if isinstance(p, str) else p for p in path)


def read_yaml_file(path: str | FsPath, *, pure: bool = False) -> LoadedYaml:
    """Read and parse a file; reads at most MAX_BYTES + 1 bytes of it."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        return _failed(name, None, f"cannot read: {exc.strerror or exc}")
    if len(raw) > MAX_BYTES:
        return _failed(
            name,
            None,
            f"larger than {MAX_BYTES // (1024 * 1024)} MiB: hacontrol reads config files up to "
            f"{MAX_BYTES:,} bytes",
        )
    return load_yaml(raw, name, pure=pure)


def load_yaml(source: str | bytes, filename: str, *, pure: bool = False) -> LoadedYaml:
    """Parse `source`; every problem becomes a SourceIssue, never an exception.

    `pure` uses PyYAML's pure-Python parser even where libyaml is present (tests).
    """
    pure = pure or not libyaml_loader()
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = source.count(b"\n", 0, exc.start) + 1
            column = exc.start - (source.rfind(b"\n", 0, exc.start) + 1) + 1
            byte = source[exc.start]
            return _failed(
                filename, line, f"not UTF-8: byte 0x{byte:02x} at column {column} ({exc.reason})"
            )
    else:
        text = source
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        code = ord(bad.group())
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        name = _CHAR_NAMES.get(code, "control character")
        return _failed(
            filename,
            line,
            f"YAML: {name} (U+{code:04X}) at column {column}: a YAML file holds no control "
            "characters but tab and line breaks",
        )
    composer = _Composer(filename)
    try:
        data = composer.run(_parser(text, pure))
    except _Abort as exc:
        return _failed(filename, exc.line, f"YAML: {exc.message}")
    except yaml.MarkedYAMLError as exc:
        issue = _syntax_issue(exc, composer.last_event, filename)
        return LoadedYaml(data=None, filename=filename, issues=[issue])
    except yaml.YAMLError as exc:
        return _failed(filename, None, f"YAML: {exc}")
    loaded = LoadedYaml(data=data, filename=filename, text=text, pure=pure)
    if composer.duplicates:
        first = loaded.locate(path for path, _ in composer.duplicates)
        loaded.issues.extend(
            SourceIssue(
                filename, line, path, f"duplicate key (first given at line {first.line_of(path)})"
            )
            for path, line in composer.duplicates
        )
    return loaded


def _failed(filename: str, line: int | None, message: str) -> LoadedYaml:
    return LoadedYaml(
        data=None, filename=filename, issues=[SourceIssue(filename, line, (), message)]
    )


def _parser(text: str, pure: bool) -> Any:
    return yaml.SafeLoader(text) if pure else yaml.CSafeLoader(text)


# ---- syntax errors at the line of the mistake ------------------------------------------------


def _syntax_issue(exc: yaml.MarkedYAMLError, last: Any, filename: str) -> SourceIssue:
    """The line of the mistake, which is often not where the parser noticed it.

    - The scanner reports an unclosed quote at the end of the file, and a key
      without its ':' on the next line: its context mark (the start of the
      token it was scanning) is the mistake.
    - The parser reports the token it could not place. When the value read just
      before it ran over several lines, that value swallowed what followed (an
      unclosed quote that found its end in a later `"`, an unclosed `[` or `{`
      whose items ran on): the mistake is where that value started.
    - In a flow collection (`[...]`, `{...}`) a missing ',' or closing bracket
      belongs right after the last item read, not at the next token.
    - Otherwise the parser's own mark (the unexpected token) is right.
    """
    context = exc.context or ""
    problem = exc.problem or str(exc)
    noticed = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
    if "maximum nesting depth" in problem:
        # libyaml's own limit (1000 levels), which its scanner reaches before our parser-level
        # check when it reads ahead through a flow collection: the same mistake, one message.
        return SourceIssue(filename, noticed, (), f"YAML: {_too_deep()}")
    line = noticed
    hint = ""
    if isinstance(exc, yaml.scanner.ScannerError) and exc.context_mark is not None:
        if context.startswith(("while scanning a quoted scalar", "while scanning a simple key")):
            line = exc.context_mark.line + 1
            if context.startswith("while scanning a quoted"):
                hint = "is a closing quote missing?"
    elif isinstance(exc, yaml.parser.ParserError) and last is not None and noticed is not None:
        start, end = last.start_mark.line + 1, last.end_mark.line + 1
        style = getattr(last, "style", None)
        if (
            isinstance(last, yaml.ScalarEvent)
            and style not in ("|", ">")
            and start < end
            and end >= noticed
        ):
            line = start
            hint = (
                "a quoted value starts here and runs on: is a closing quote missing?"
                if style in ('"', "'")
                else "a value starts here and runs on: is a ',', ':' or closing bracket missing?"
            )
        elif context.startswith("while parsing a flow") and end < noticed:
            line = end
    message = f"{context}, {problem}" if context else problem
    if line != noticed and noticed is not None:
        message += f" (noticed at line {noticed})"
    if hint:
        message += f"; {hint}"
    return SourceIssue(filename, line, (), f"YAML: {message}")


# ---- the composer ----------------------------------------------------------------------------


class _Abort(Exception):
    """A fatal problem found while composing (a limit, an alias, a tag, a key)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Scalars:
    """Scalar values exactly as PyYAML's SafeLoader makes them (YAML 1.1 resolution)."""

    def __init__(self) -> None:
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolvers = yaml.resolver.Resolver.yaml_implicit_resolvers
        self.wildcard = self.resolvers.get(None, [])
        # Config files repeat keys and values ("address", "8080", "tcp") thousands of
        # times: one object for each, and one resolution.
        self.cache: dict[str, tuple[Any, str]] = {}

    def resolve(self, event: Any) -> tuple[Any, str]:
        """(value, tag) of a scalar event."""
        value: str = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value, _STR
            hit = self.cache.get(value)
            if hit is not None:
                return hit
            tag = _STR
            for candidate, regexp in self.resolvers.get(value[:1], []) + self.wildcard:
                if regexp.match(value):
                    tag = candidate
                    break
            result = (value, tag) if tag in (_STR, _MERGE) else (self._construct(event, tag), tag)
            if len(self.cache) < _CACHE_LIMIT:
                self.cache[value] = result
            return result
        if tag == _STR:
            return value, tag
        if tag not in _SCALAR_TAGS:
            raise _Abort(event.start_mark.line + 1, f"tag {tag!r} is not supported here")
        return self._construct(event, tag), tag

    def _construct(self, event: Any, tag: str) -> Any:
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.yaml_constructors[tag](self.constructor, node)
        except (ValueError, TypeError, AttributeError, yaml.YAMLError):
            # e.g. `!!int abc`, `!!timestamp soon`: PyYAML raises plain Python errors.
            short = tag.rsplit(":", 1)[-1]
            raise _Abort(
                event.start_mark.line + 1, f"{event.value!r} is not a valid !!{short}"
            ) from None


class _Frame:
    """A mapping or sequence being composed."""

    __slots__ = ("anchor", "is_map", "items", "key", "key_mark", "key_merge", "merges", "start")

    def __init__(self, is_map: bool, anchor: str | None, start: int) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.items: Any = {} if is_map else []
        self.start = start  # values counted before it: its size is the count at its end less this
        self.key: Any = _NO_KEY  # a key is read and its value not yet, unless _NO_KEY
        self.key_mark: Any = None
        self.key_merge = False
        self.merges: list[tuple[Any, ...]] = []


_NO_KEY = object()


class _Composer:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.duplicates: list[tuple[Path, int]] = []  # (path, line) of keys given twice
        self.last_event: Any = None
        self.scalars = _Scalars()

    def run(self, parser: Any) -> Any:
        """The document's data (None for an empty stream or document)."""
        get = parser.get_event
        get()  # StreamStartEvent
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        data = self._document(get)
        event = get()
        if not isinstance(event, yaml.StreamEndEvent):
            raise _Abort(
                event.start_mark.line + 1,
                "expected a single document in the stream, but found another document",
            )
        return data

    def _document(self, get: Any) -> Any:
        # One pass over about a million events for a large file: what is done per event is
        # kept small (no per-key line, sizes from the running count, aliases checked apart).
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        seq_start, seq_end = yaml.SequenceStartEvent, yaml.SequenceEndEvent
        map_start, map_end = yaml.MappingStartEvent, yaml.MappingEndEvent
        resolve = self.scalars.resolve
        cached = self.scalars.cache.get
        no_key = _NO_KEY
        limit = MAX_NODES
        stack: list[_Frame] = []
        anchors: dict[str, tuple[Any, int]] = {}
        anchor_lines: dict[str, int] = {}
        total = 0  # values so far, each alias counting what it stands for
        root: Any = None
        event = None
        try:
            while True:
                event = get()
                kind = type(event)
                if kind is scalar_event:
                    # Inline: most scalars are plain, untagged and seen before.
                    hit = cached(event.value) if event.tag is None and event.implicit[0] else None
                    value, tag = hit if hit is not None else resolve(event)
                    total += 1
                    if total > limit:
                        raise _Abort(event.start_mark.line + 1, _too_big())
                    if event.anchor is not None:
                        self._new_anchor(event.anchor, event.start_mark.line + 1, anchor_lines)
                        anchors[event.anchor] = (value, 1)
                elif kind is map_start or kind is seq_start:
                    is_map = kind is map_start
                    if len(stack) >= MAX_DEPTH:
                        raise _Abort(event.start_mark.line + 1, _too_deep())
                    if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                        raise _Abort(
                            event.start_mark.line + 1, f"tag {event.tag!r} is not supported here"
                        )
                    if stack and stack[-1].is_map and stack[-1].key is no_key:
                        raise _Abort(event.start_mark.line + 1, _SCALAR_KEYS)
                    if event.anchor is not None:
                        self._new_anchor(event.anchor, event.start_mark.line + 1, anchor_lines)
                    stack.append(_Frame(is_map, event.anchor, total))
                    total += 1
                    if total > limit:
                        raise _Abort(event.start_mark.line + 1, _too_big())
                    continue
                elif kind is map_end or kind is seq_end:
                    frame = stack.pop()
                    value = frame.items
                    if not frame.is_map:
                        value = tuple(value)
                    elif frame.merges:
                        merged: dict[Any, Any] = {}
                        for group in frame.merges:
                            # The first mapping of a `<<: [*a, *b]` list wins, as in PyYAML.
                            for source in reversed(group):
                                merged.update(source)
                        merged.update(value)
                        value = merged
                    if frame.anchor is not None:
                        anchors[frame.anchor] = (value, total - frame.start)
                    tag = None
                elif kind is alias_event:
                    line = event.start_mark.line + 1
                    name = event.anchor
                    if name not in anchors:
                        if name in anchor_lines:
                            raise _Abort(
                                line,
                                f"alias *{name} is inside the collection it names "
                                f"(anchored at line {anchor_lines[name]}): a recursive structure",
                            )
                        raise _Abort(line, f"found undefined alias *{name}")
                    value, size = anchors[name]
                    total += size
                    if total > limit:
                        raise _Abort(
                            line,
                            f"alias *{name} expands the document past {MAX_NODES:,} values "
                            "(the limit): aliases that multiply (an alias bomb?)",
                        )
                    tag = None
                    key_position = stack and stack[-1].is_map and stack[-1].key is no_key
                    if key_position and isinstance(value, (dict, tuple)):
                        raise _Abort(line, _SCALAR_KEYS)
                elif kind is yaml.DocumentEndEvent:
                    return root
                else:  # pragma: no cover - a parser yields no other event inside a document
                    raise _Abort(event.start_mark.line + 1, f"unexpected {kind.__name__}")
                if not stack:
                    root = value
                    continue
                top = stack[-1]
                if not top.is_map:
                    top.items.append(value)
                elif top.key is no_key:
                    top.key = value
                    top.key_mark = event.start_mark
                    top.key_merge = tag == _MERGE
                else:
                    key = top.key
                    top.key = no_key
                    if top.key_merge:
                        top.merges.append(self._merge_sources(value, event))
                        continue
                    items = top.items
                    count = len(items)
                    items[key] = value
                    if len(items) == count:
                        path = (*_path_of(stack), key)
                        self.duplicates.append((path, top.key_mark.line + 1))
        finally:
            self.last_event = event

    @staticmethod
    def _new_anchor(name: str, line: int, anchor_lines: dict[str, int]) -> None:
        if name in anchor_lines:
            raise _Abort(
                line, f"found duplicate anchor &{name} (first given at line {anchor_lines[name]})"
            )
        anchor_lines[name] = line

    @staticmethod
    def _merge_sources(value: Any, event: Any) -> tuple[Any, ...]:
        if isinstance(value, dict):
            return (value,)
        if isinstance(value, tuple) and all(isinstance(v, dict) for v in value):
            return value
        raise _Abort(
            event.start_mark.line + 1,
            "a merge key (<<) takes a mapping or a list of mappings",
        )


_SCALAR_KEYS = "a key must be a scalar, not a mapping or a sequence"


def _path_of(stack: list[_Frame]) -> Path:
    """The path of the innermost open collection (for an issue inside it)."""
    path: list[str | int] = []
    for frame in stack[:-1]:
        path.append(frame.key if frame.is_map else len(frame.items))
    return tuple(path)


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels (the limit)"


def _too_big() -> str:
    return f"the document has more than {MAX_NODES:,} values (the limit)"


# ---- lines, on demand ------------------------------------------------------------------------


class _Open:
    """A collection open in `_locate`."""

    __slots__ = ("has_key", "index", "is_map", "key", "merge", "path")

    def __init__(self, path: Path, is_map: bool) -> None:
        self.path = path
        self.is_map = is_map
        self.has_key = False
        self.key: Any = None
        self.index = 0
        self.merge = False

    def advance(self) -> None:
        """A value was read."""
        if self.is_map:
            self.has_key = False
            self.merge = False
        else:
            self.index += 1


def _locate(parser: Any, wanted: set[Path], synonyms: Mapping[str, str], out: LineMap) -> None:
    """Record in `out` the line of every path in `wanted` (a prefix-closed set).

    A subtree no wanted path goes into is read past without a look; an alias
    is a leaf (its line is the line of whatever goes through it).
    """
    get = parser.get_event
    resolve = _Scalars().resolve
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    stack: list[_Open] = []
    skip = 0
    event = get()
    while not isinstance(event, yaml.DocumentStartEvent):
        if isinstance(event, yaml.StreamEndEvent):
            return
        event = get()
    while True:
        event = get()
        kind = type(event)
        if skip:
            if kind in starts:
                skip += 1
            elif kind in ends:
                skip -= 1
                if skip == 0 and stack:
                    stack[-1].advance()
            continue
        if kind is yaml.DocumentEndEvent:
            return
        if kind in ends:
            stack.pop()
            if stack:
                stack[-1].advance()
            continue
        line = event.start_mark.line + 1
        if not stack:
            out.lines[()] = line
            if kind in starts:
                stack.append(_Open((), kind is yaml.MappingStartEvent))
            continue
        top = stack[-1]
        if top.is_map and not top.has_key:
            key: Any = None
            if kind is yaml.ScalarEvent:
                key, tag = resolve(event)
                top.merge = tag == _MERGE
                if isinstance(key, str):
                    key = synonyms.get(key, key)
            if top.merge:
                if top.path in wanted:
                    out.merges[top.path] = line
            elif (*top.path, key) in wanted:
                out.lines.setdefault((*top.path, key), line)  # a key given twice: the first
            top.has_key = True
            top.key = key
            continue
        child = (*top.path, top.key if top.is_map else top.index)
        if not top.is_map and child in wanted:
            out.lines[child] = line
        if kind in starts:
            if child in wanted and not top.merge:
                stack.append(_Open(child, kind is yaml.MappingStartEvent))
            else:
                skip = 1
            continue
        top.advance()  # a scalar or an alias: a leaf
