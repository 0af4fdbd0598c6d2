"""YAML loading that remembers where every key came from.

pydantic reports an error at a path like ("vrrp_instances", 0, "priority");
operators want "hacontrol.yaml:14". We compose the YAML node tree once,
construct plain Python data from it, and keep a map from each path to the
line of its key (or of the item, for list entries). Duplicate keys, which
PyYAML silently resolves to the last one, are reported: in a failover config a
second `priority:` overriding the first is a mistake nobody wants hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceIssue:
    """One problem found in a config file: where, which key, what."""

    file: str
    line: int | None
    path: Path
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = format_path(self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


@dataclass(slots=True)
class LoadedYaml:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    issues: list[SourceIssue] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest known prefix of `path`.

        pydantic inserts union tags into error paths (e.g. the discriminator
        value); dropping unknown elements one at a time keeps us pointing at
        the nearest line the operator wrote.
        """
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(text: str, filename: str) -> LoadedYaml:
    """Parse `text`; syntax errors become a SourceIssue, never an exception."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(data={}, lines={(): 1})
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        return LoadedYaml(data=None, issues=[SourceIssue(filename, line, (), f"YAML: {problem}")])
    except yaml.YAMLError as exc:
        return LoadedYaml(data=None, issues=[SourceIssue(filename, None, (), f"YAML: {exc}")])
    finally:
        loader.dispose()
    result = LoadedYaml(data=data, lines={(): node.start_mark.line + 1})
    _walk(node, (), result, filename)
    return result


def _walk(node: yaml.Node, path: Path, out: LoadedYaml, filename: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                out.issues.append(
                    SourceIssue(
                        filename,
                        line,
                        (*path, key),
                        f"duplicate key (first given at line {seen[key]})",
                    )
                )
            seen[key] = line
            out.lines[(*path, key)] = line
            _walk(value_node, (*path, key), out, filename)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out.lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), out, filename)
