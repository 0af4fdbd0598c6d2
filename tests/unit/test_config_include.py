"""`include:` in hacontrol's YAML: merged lists, errors at the included file's own line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hacontrol.config import ConfigError, check_file, load_config


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        check_file(path)
    return [str(i) for i in info.value.issues]


VS = """
virtual_servers:
  - address: 192.0.2.1
    port: {port}
    real_servers: [{{address: 198.51.100.1}}]
"""


def test_lists_are_merged_in_include_order(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "main.yaml",
        """
        global: {metrics_listen: null}
        include: [services/*.yaml, vrrp.yaml]
        virtual_servers:
          - {address: 192.0.2.1, port: 80}
        """,
    )
    write(tmp_path, "services/b.yaml", VS.format(port=444))
    write(tmp_path, "services/a.yaml", VS.format(port=443))
    write(tmp_path, "services/notes.txt", "not yaml: [")  # not matched by the glob
    write(
        tmp_path,
        "vrrp.yaml",
        """
        include: groups/g.yaml
        vrrp_instances:
          - {name: VI_1, interface: eth0, vrid: 1, virtual_ipaddresses: [192.0.2.1/24]}
        """,
    )
    write(tmp_path, "groups/g.yaml", "virtual_server_groups: [{name: g, members: [{fwmark: 1}]}]\n")
    config = load_config(main)
    assert [vs.port for vs in config.virtual_servers] == [80, 443, 444]
    assert [i.name for i in config.vrrp_instances] == ["VI_1"]
    assert [g.name for g in config.virtual_server_groups] == ["g"]
    assert config.global_.metrics_listen is None


def test_errors_name_the_included_file_line_and_its_own_path(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: more.yaml\n" + VS.format(port=80))
    write(
        tmp_path,
        "more.yaml",
        """
        virtual_servers:
          - address: 192.0.2.1
            port: 81
            real_servers:
              - address: 198.51.100.1
                weight: 70000
        """,
    )
    assert errors(main) == [
        f"{tmp_path}/more.yaml:7: virtual_servers[0].real_servers[0].weight: Input should be "
        "less than or equal to 65535"
    ]


def test_cross_item_error_points_into_the_included_file(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: dup.yaml\n" + VS.format(port=80))
    write(tmp_path, "dup.yaml", "\n\n" + VS.format(port=80))
    (message,) = errors(main)
    assert message.startswith(f"{tmp_path}/dup.yaml:5: virtual_servers[0]: virtual server ")
    assert "is given twice" in message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"main.yaml": "include: missing.yaml\n"},
            "main.yaml:1: include: include {root}/missing.yaml: no such file",
        ),
        (
            {"main.yaml": "include: [a.yaml]\n", "a.yaml": "include: [main.yaml]\n"},
            "a.yaml:1: include[0]: include loop: {root}/main.yaml -> {root}/a.yaml -> "
            "{root}/main.yaml",
        ),
        (
            {"main.yaml": "\ninclude: sub\n", "sub/x.yaml": "{}\n"},
            "main.yaml:2: include: include {root}/sub: is a folder",
        ),
        (
            {"main.yaml": "include: 5\n"},
            "main.yaml:1: include: include is a file name or a list of file names",
        ),
        (
            {"main.yaml": "include: a.yaml\n", "a.yaml": "- 1\n"},
            "a.yaml:1: an included file must hold a mapping (the top level)",
        ),
        (
            {"main.yaml": "include: a.yaml\nglobal: {}\n", "a.yaml": "\nglobal: {}\n"},
            "a.yaml:2: global: global is also given in {root}/main.yaml:2: give it once",
        ),
        (
            {"main.yaml": "include: a.yaml\n", "a.yaml": "vrrp_instances: [\n"},
            "a.yaml:1: YAML:",
        ),
    ],
)
def test_include_problems(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    found = errors(tmp_path / "main.yaml")
    want = f"{tmp_path}/" + expected.format(root=tmp_path)
    assert any(message.startswith(want) for message in found), found


def test_an_empty_glob_is_no_error(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: conf.d/*.yaml\n" + VS.format(port=80))
    (tmp_path / "conf.d").mkdir()
    assert len(load_config(main).virtual_servers) == 1


def test_unreadable_included_file(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: big.yaml\n")
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(40 * 1024 * 1024)  # above the loader's size limit
    (message,) = errors(main)
    assert message.startswith(f"{main}:1: include: include {big}: larger than")
