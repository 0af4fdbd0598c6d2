"""keepalived.conf's grammar: files -> a tree of statements, each with its FILE:LINE.

The reader knows no keyword (the translator does); it does what keepalived's parser
(lib/parser.c, 2.2) does to the text before a keyword handler sees it, in its order:

1. a physical line loses `!` / `#` comments outside double quotes (`\\#`, `\\!` escape
   them) and surrounding blanks;
2. `@ID rest` is kept (as `rest`) only when ID is the config id, `@^ID rest` only when
   it is not; `@ID` with nothing after it is dropped;
3. `$NAME=value` defines NAME (a value ending in `\\` goes on over the next lines, up to
   one that does not, or a blank one: a multi-line definition);
4. `~SEQ(var, start, step, end) text` (`~SEQx` in hex, or `(var, end)` / `(var, start,
   end)`) repeats `text` with `$var` set to each value;
5. `$NAME` and `${NAME}` are replaced (again, while the result still has one); a
   multi-line definition at the end of a line adds its further lines after it;
6. `include PATTERN` (alone on its line) reads the files the glob matches, relative to
   the including file's folder, sorted, as if their lines stood there;
7. `{` and `}` outside quotes end a statement; a `{` opens a block for the statement
   before it (on the same line or the one before), `}` closes it;
8. words are split at blanks, a double-quoted string being one word without its quotes.

Where keepalived only logs and goes on, this reader stops with a `GrammarError` naming
the file and line, so that an import never silently differs from what keepalived runs:
an undefined `$NAME` (keepalived keeps the text), an include that matches no file or
cannot be read (keepalived skips it), an include loop (keepalived recurses until it runs
out of file descriptors), unbalanced braces (keepalived guesses), an unterminated quote.
An include glob that matches nothing is not an error, as in keepalived (a conf.d folder
may be empty). `$_RANDOM` is refused: an import must be reproducible.

Reading goes through a `Source` (the filesystem by default), so the reader itself does
no I/O and tests feed it in-memory files.
"""

from __future__ import annotations

import fnmatch
import glob as globmod
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

# Bounds, so that no file can make the reader run away (keepalived has none, but reads
# its own trusted file; an importer reads whatever it is given).
MAX_FILE_BYTES = 16 << 20
MAX_LINE = 64 << 10  # characters in one logical line after substitution
MAX_LINES = 2_000_000  # logical lines in all, after ~SEQ and multi-line expansion
MAX_INCLUDE_DEPTH = 64
MAX_SUBSTITUTIONS = 10_000  # replacements in one line (a definition that refers to itself)
MAX_DEPTH = 100  # nested blocks


class GrammarError(Exception):
    """keepalived.conf cannot be read; `file`, `line` say where."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Statement:
    """One keyword line: `words[0]` is the keyword; `block` the `{ ... }` after it, if any.

    `text` is the line after comments, conditionals and substitution, before splitting
    into words: keepalived parses scripts (`script`, `notify*`, `misc_path`) from it,
    with shell-like single quotes and escapes.
    """

    words: tuple[str, ...]
    file: str
    line: int
    text: str = ""
    block: tuple[Statement, ...] | None = None

    @property
    def keyword(self) -> str:
        return self.words[0]

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[1:]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Source(Protocol):
    """Where included files come from: the filesystem, or a dict in tests."""

    def read(self, path: str) -> bytes: ...  # raises OSError

    def glob(self, pattern: str) -> list[str]: ...  # matching files, not folders


class FileSystem:
    """The real filesystem, as keepalived reads it (glob with braces, sorted)."""

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise OSError(f"larger than {MAX_FILE_BYTES} bytes")
        return data

    def glob(self, pattern: str) -> list[str]:
        found: set[str] = set()
        for one in expand_braces(pattern):
            found.update(p for p in globmod.glob(one) if not os.path.isdir(p))
        return sorted(found)


@dataclass
class MemorySource:
    """Files held in a dict (path -> text); for tests."""

    files: dict[str, str | bytes]
    unreadable: frozenset[str] = frozenset()

    def read(self, path: str) -> bytes:
        path = posixpath.normpath(path)
        if path in self.unreadable:
            raise PermissionError(13, "Permission denied")
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory")
        data = self.files[path]
        return data.encode() if isinstance(data, str) else data

    def glob(self, pattern: str) -> list[str]:
        out: set[str] = set()
        for one in expand_braces(pattern):
            one = posixpath.normpath(one)
            out.update(p for p in self.files if fnmatch.fnmatchcase(p, one) and _same_depth(p, one))
        return sorted(out)


def _same_depth(path: str, pattern: str) -> bool:
    # glob's `*` never crosses a `/`; fnmatch's does.
    return path.count("/") == pattern.count("/")


def expand_braces(pattern: str) -> list[str]:
    """GLOB_BRACE, which keepalived passes to glob(3): `a{b,c}d` -> `abd`, `acd`."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for alt in match.group(1).split(","):
        out.extend(expand_braces(head + alt + tail))
    return out


def has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[") or expand_braces(pattern) != [pattern]


# ---- physical lines -> logical lines ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    file: str
    line: int


@dataclass
class _Definition:
    lines: list[str]  # more than one: a multi-line definition

    @property
    def multiline(self) -> bool:
        return len(self.lines) > 1


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DEFINITION = re.compile(rf"^\$({_NAME})[ \t]*=[ \t]*(.*)$", re.S)
# A reference ends where keepalived's find_definition() lets it end.
_REFERENCE = re.compile(rf"\$(?:\{{({_NAME})((?: *[0-9]+)*)\}}|({_NAME})(?=[ \t,)]|$))")
_CONDITIONAL = re.compile(r"^@(\^?)([^ \t]+)[ \t]+(.+)$", re.S)
_SEQ = re.compile(r"^~SEQ(x?)[ \t]*\(([^)]*)\)[ \t]*(.*)$", re.S)


def decomment(text: str) -> tuple[str, bool]:
    """keepalived's decomment(): (the line without comment and blanks, ends with `\\`)."""
    out: list[str] = []
    quote = False
    i = 0
    text = text.lstrip(" \t")
    cont = False
    while i < len(text):
        c = text[i]
        if c == '"':
            quote = not quote
        elif c == "\\":
            if i + 1 == len(text):
                cont = True
                break
            nxt = text[i + 1]
            if not quote and nxt in "#!":
                out.append(nxt)
            else:
                out.append(c + nxt)
            i += 2
            continue
        elif not quote and c in "!#":
            break
        out.append(c)
        i += 1
    return "".join(out).rstrip(" \t"), cont


class _Reader:
    def __init__(self, source: Source, config_id: str, cwd: str) -> None:
        self.source = source
        self.config_id = config_id
        self.cwd = cwd
        self.defs: dict[str, _Definition] = {}
        self.stack: list[str] = []  # files being read, outermost first
        self.count = 0

    # -- files

    def read_file(self, path: str, where: _Line | None) -> Iterator[_Line]:
        real = posixpath.normpath(path)
        if real in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(real) :], real])
            raise self._error(where, path, f"include loop: {chain}")
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            raise self._error(where, path, f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
        try:
            data = self.source.read(real)
        except OSError as exc:
            what = exc.strerror or str(exc)
            if where is None:
                raise GrammarError(path, None, f"cannot read: {what}") from None
            raise GrammarError(where.file, where.line, f"include {path}: {what}") from None
        if b"\0" in data:
            line = data[: data.index(b"\0")].count(b"\n") + 1
            raise GrammarError(path, line, "a NUL byte: this is not a text file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise GrammarError(path, line, "not UTF-8 text") from None
        self.stack.append(real)
        try:
            yield from self._lines(text.split("\n"), real)
        finally:
            self.stack.pop()

    def _error(self, where: _Line | None, path: str, message: str) -> GrammarError:
        if where is None:
            return GrammarError(path, None, message)
        return GrammarError(where.file, where.line, message)

    def _lines(self, physical: list[str], path: str) -> Iterator[_Line]:
        if physical and physical[-1] == "":
            physical.pop()
        index = 0
        while index < len(physical):
            number = index + 1
            raw = physical[index].rstrip("\r\n")
            index += 1
            if not raw.strip():
                continue
            text, cont = decomment(raw)
            if not text and not cont:
                continue
            here = _Line(text + ("\\" if cont else ""), path, number)
            # A multi-line definition takes the physical lines that follow it, before
            # any conditional or substitution (as keepalived's read_line does).
            if text.startswith("$") and cont and _DEFINITION.match(text):
                name, first = _DEFINITION.match(text).groups()  # type: ignore[union-attr]
                lines = [first.rstrip(" \t")] if first.strip() else []
                while index < len(physical):
                    more = physical[index].rstrip("\r\n")
                    if not more.strip():
                        break
                    index += 1
                    body, more_cont = decomment(more)
                    if body:
                        lines.append(body)
                    if not more_cont:
                        break
                self.defs[name] = _Definition(lines or [""])
                continue
            yield from self._logical(here, seq_vars=())

    def _logical(self, here: _Line, seq_vars: tuple[str, ...]) -> Iterator[_Line]:
        text = here.text
        for _ in range(MAX_SUBSTITUTIONS):
            if text.startswith("@"):
                cond = _CONDITIONAL.match(text)
                if cond is None:
                    return  # `@ID` and nothing after it: keepalived drops the line
                negate, ident, kept = cond.groups()
                if (ident == self.config_id) == bool(negate):
                    return
                text = kept
                continue
            definition = _DEFINITION.match(text) if text.startswith("$") else None
            if definition is not None:
                name, value = definition.groups()
                if name == "_RANDOM":
                    raise GrammarError(here.file, here.line, "$_RANDOM cannot be redefined")
                self.defs[name] = _Definition([value.rstrip(" \t")])
                return
            seq = _SEQ.match(text)
            if seq is not None:
                yield from self._seq(here, seq, seq_vars)
                return
            if text.startswith("~"):
                break
            replaced, extra = self._substitute(text, here)
            if replaced is None:
                break
            text = replaced
            if len(text) > MAX_LINE:
                raise GrammarError(here.file, here.line, f"line longer than {MAX_LINE} characters")
            if extra:
                yield from self._emit(_Line(text, here.file, here.line))
                for more in extra:
                    yield from self._logical(_Line(more, here.file, here.line), seq_vars)
                return
            if text.lstrip(" \t").startswith("~"):
                text = text.lstrip(" \t")
            if "$" not in text and not text.startswith(("@", "~SEQ")):
                break
        else:
            raise GrammarError(here.file, here.line, "a definition refers to itself")
        yield from self._emit(_Line(text, here.file, here.line))

    def _emit(self, line: _Line) -> Iterator[_Line]:
        if len(line.text) > MAX_LINE:
            raise GrammarError(line.file, line.line, f"line longer than {MAX_LINE} characters")
        words = split_words(line.text, line)
        if len(words) == 2 and words[0] == "include":
            yield from self._include(words[1], line)
            return
        self.count += 1
        if self.count > MAX_LINES:
            raise GrammarError(line.file, line.line, f"more than {MAX_LINES} lines in all")
        yield line

    def _include(self, pattern: str, where: _Line) -> Iterator[_Line]:
        base = posixpath.dirname(where.file) or self.cwd
        full = pattern if posixpath.isabs(pattern) else posixpath.join(base, pattern)
        if has_magic(full):
            matches = self.source.glob(full)
            if not matches:
                return  # keepalived: "No config files matched", and goes on
        else:
            matches = [full]
        for path in matches:
            yield from self.read_file(path, where)

    def _substitute(self, text: str, here: _Line) -> tuple[str | None, list[str]]:
        """One pass of replacements, or None if there was none; and a multi-line tail."""
        changed = False
        extra: list[str] = []
        out: list[str] = []
        pos = 0
        for match in _REFERENCE.finditer(text):
            name = match.group(1) or match.group(3)
            params = (match.group(2) or "").split()
            if name == "_RANDOM":
                raise GrammarError(
                    here.file, here.line, "$_RANDOM: an import must give the same file every time"
                )
            value = self._value(name, params, here)
            if value is None:
                raise GrammarError(
                    here.file,
                    here.line,
                    f"${name} is not defined (keepalived would keep the text ${name} as it is)",
                )
            out.append(text[pos : match.start()])
            pos = match.end()
            changed = True
            if value.multiline:
                if match.end() != len(text):
                    raise GrammarError(
                        here.file,
                        here.line,
                        f"${name} is a multi-line definition: it can only end a line",
                    )
                out.append(value.lines[0])
                extra = value.lines[1:]
                break
            out.append(value.lines[0])
            # keepalived stops replacing after a value that starts a ~SEQ.
            if value.lines[0].lstrip(" \t").startswith("~"):
                break
        if not changed:
            return None, []
        out.append(text[pos:])
        return "".join(out), extra

    def _value(self, name: str, params: list[str], here: _Line) -> _Definition | None:
        if name in self.defs:
            return self.defs[name]
        if name == "_INSTANCE":
            return _Definition([self.config_id])
        if name == "_PWD":
            # keepalived chdir()s to the folder of the file it reads.
            return _Definition([posixpath.dirname(here.file) or self.cwd])
        return None

    def _seq(self, here: _Line, seq: re.Match[str], seq_vars: tuple[str, ...]) -> Iterator[_Line]:
        hexa, inner, text = seq.group(1) == "x", seq.group(2), seq.group(3)
        parts = [p.strip() for p in inner.split(",")]
        var = parts[0]
        if not re.fullmatch(_NAME, var) or len(parts) < 2 or len(parts) > 4:
            raise GrammarError(here.file, here.line, f"invalid ~SEQ specification {here.text!r}")
        numbers: list[int] = []
        for part in parts[1:]:
            resolved, _ = self._substitute(part, here)
            try:
                numbers.append(int(resolved if resolved is not None else part, 0))
            except ValueError:
                raise GrammarError(
                    here.file, here.line, f"invalid ~SEQ number {part!r} in {here.text!r}"
                ) from None
        if len(numbers) == 1:
            end = numbers[0]
            start, step = (-1 if end < 0 else 1), (-1 if end < 1 else 1)
        elif len(numbers) == 2:
            start, end = numbers
            step = 1 if start <= end else -1
        else:
            start, step, end = numbers
            if not step or (start < end and step < 0) or (start > end and step > 0):
                raise GrammarError(here.file, here.line, f"invalid ~SEQ values {here.text!r}")
        if hexa and (start < 0 or end < 0):
            raise GrammarError(here.file, here.line, "~SEQx is only for positive numbers")
        count = (end - start) // step + 1
        if count > MAX_LINES:
            raise GrammarError(here.file, here.line, f"~SEQ of more than {MAX_LINES} values")
        for value in range(start, end + (1 if step > 0 else -1), step):
            self.defs[var] = _Definition([format(value, "x") if hexa else str(value)])
            yield from self._logical(_Line(text, here.file, here.line), (*seq_vars, var))


def split_words(text: str, where: _Line | None = None) -> list[str]:
    """keepalived's alloc_strvec(): blanks separate, "..." is one word without quotes."""
    words: list[str] = []
    i = 0
    n = len(text)
    blanks = " \t\f\n\r\v"
    while i < n:
        while i < n and text[i] in blanks:
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                if where is None:
                    raise ValueError("unterminated quote")
                raise GrammarError(where.file, where.line, f"unterminated quote in {text!r}")
            words.append(text[i + 1 : end])
            i = end + 1
            continue
        j = i
        while j < n and text[j] not in blanks and text[j] != '"':
            j += 1
        words.append(text[i:j])
        i = j
    return words


def _segments(text: str) -> list[str]:
    """The line cut before and after every `{` and `}` outside double quotes."""
    out: list[str] = []
    quote = False
    start = 0
    for i, c in enumerate(text):
        if c == '"':
            quote = not quote
        elif c in "{}" and not quote:
            out.append(text[start:i])
            out.append(c)
            start = i + 1
    out.append(text[start:])
    return [s.strip(" \t") for s in out if s.strip(" \t")]


# ---- logical lines -> tree ----------------------------------------------------------------


@dataclass
class _Open:
    words: tuple[str, ...]
    file: str
    line: int
    text: str
    children: list[Statement] = field(default_factory=list)
    block_at: tuple[str, int] | None = None  # where its `{` was


def build_tree(lines: Iterator[_Line] | list[_Line]) -> tuple[Statement, ...]:
    top: list[Statement] = []
    stack: list[_Open] = []  # blocks open, innermost last
    pending: _Open | None = None  # the last statement at this level, still open to a `{`

    def children() -> list[Statement]:
        return stack[-1].children if stack else top

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            children().append(Statement(pending.words, pending.file, pending.line, pending.text))
            pending = None

    for line in lines:
        for seg in _segments(line.text):
            if seg == "{":
                if pending is None:
                    raise GrammarError(line.file, line.line, "'{' with no keyword before it")
                if len(stack) >= MAX_DEPTH:
                    raise GrammarError(
                        line.file, line.line, f"blocks nested deeper than {MAX_DEPTH}"
                    )
                pending.block_at = (line.file, line.line)
                stack.append(pending)
                pending = None
            elif seg == "}":
                flush()
                if not stack:
                    raise GrammarError(line.file, line.line, "'}' closes no block")
                done = stack.pop()
                children().append(
                    Statement(done.words, done.file, done.line, done.text, tuple(done.children))
                )
            else:
                flush()
                words = split_words(seg, line)
                if words:
                    pending = _Open(tuple(words), line.file, line.line, seg)
    flush()
    if stack:
        opened = stack[-1]
        raise GrammarError(
            opened.file,
            opened.line,
            f"'{{' of {opened.words[0]} is never closed (missing '}}')",
        )
    return tuple(top)


def read_config(
    path: str,
    config_id: str,
    source: Source | None = None,
    cwd: str | None = None,
) -> tuple[Statement, ...]:
    """Read `path` and everything it includes; raise GrammarError at the first problem."""
    reader = _Reader(source or FileSystem(), config_id, cwd or os.getcwd())
    return build_tree(reader.read_file(path, None))


def parse_text(
    text: str, config_id: str = "", filename: str = "keepalived.conf"
) -> tuple[Statement, ...]:
    """`read_config` on one in-memory file (no includes beyond it)."""
    return read_config(filename, config_id, MemorySource({posixpath.normpath(filename): text}))


def walk(statements: tuple[Statement, ...]) -> Iterator[Statement]:
    """Every statement, depth first, in file order."""
    for st in statements:
        yield st
        if st.block:
            yield from walk(st.block)
