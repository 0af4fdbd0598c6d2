"""The control socket's request grammar (pure): what is accepted and the exact errors."""

from __future__ import annotations

import pytest

from hacontrol.runtime.control import Request, RequestError, parse_request


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"command": "status"}\n', Request("status", {})),
        (b'{"command": "status", "counters": false}', Request("status", {"counters": False})),
        (b'{"command": "reload"}', Request("reload", {})),
        (
            b'{"command": "drain", "virtual_server": "web", "real_server": "198.51.100.1:80"}',
            Request("drain", {"virtual_server": "web", "real_server": "198.51.100.1:80"}),
        ),
        (b'{"command": "step-down"}', Request("step-down", {})),
        (
            b'{"command": "release", "instances": ["VI_1", "VI_2"]}',
            Request("release", {"instances": ["VI_1", "VI_2"]}),
        ),
    ],
)
def test_valid_requests(line: bytes, expected: Request) -> None:
    assert parse_request(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe", "the request is not UTF-8"),
        (b"status", "the request is not JSON"),
        (b"[1, 2]", "the request must be a JSON object"),
        (b"{}", 'the request needs "command": a string'),
        (b'{"command": 7}', 'the request needs "command": a string'),
        (b'{"command": "stauts"}', "unknown command 'stauts' (known: status, reload, drain"),
        (b'{"command": "status", "verbose": true}', "status: unknown argument 'verbose'"),
        (b'{"command": "status", "counters": "yes"}', "status: 'counters' must be a boolean"),
        (b'{"command": "drain", "virtual_server": "web"}', "drain: missing argument 'real_server'"),
        (
            b'{"command": "drain", "virtual_server": 1, "real_server": "x"}',
            "drain: 'virtual_server' must be a string",
        ),
        (b'{"command": "step-down", "instances": "VI_1"}', "'instances' must be a list"),
        (b'{"command": "step-down", "instances": [1]}', "'instances' must be a list of strings"),
        (b'{"command": "status", "counters": 1}', "'counters' must be a boolean"),
    ],
)
def test_malformed_requests_get_a_precise_error(line: bytes, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(line)
    assert message in str(info.value)


def test_a_boolean_is_not_a_string() -> None:
    with pytest.raises(RequestError, match="must be a string"):
        parse_request(b'{"command": "drain", "virtual_server": true, "real_server": "x"}')
