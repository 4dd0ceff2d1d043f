"""The SSRF guard: every form of a non-public address is refused before any connection, at registration and again
at delivery (DNS rebinding), and the client connects only to the address it checked, follows no redirect, times out
and caps what it reads. The refusals use a patched resolver and count connections; the one real connection is to a
loopback receiver the allow-list names."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from core.outbound import RESPONSE_LIMIT, Guard, UrlRefused, post
from tests.support.receiver import receiver

PUBLIC = "93.184.216.34"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every connection the client tries to open (none is opened)."""
    made: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], *_args: object, **_kwargs: object) -> socket.socket:
        made.append(address)
        raise ConnectionRefusedError("tests never connect to these")

    monkeypatch.setattr(socket, "create_connection", refuse)
    yield made


def resolving(table: dict[str, list[str]]) -> Guard:
    def resolve(host: str, _port: int) -> list[str]:
        return table.get(host.lower(), [PUBLIC])

    return Guard(resolver=resolve)


REFUSED = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.100.100.200/latest/meta-data/",  # Alibaba's metadata address, in carrier-grade NAT space
    "http://[fd00::1]/",
    "http://[fd00:ec2::254]/",  # AWS's IPv6 metadata address
    "http://[fe80::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0177.0.0.1/",  # and in octal
    "http://0x7f.1/",  # and in hex, two parts
    "http://localhost./",
    "http://localhost/",
    "http://rebound.example/",  # a name whose only address is private
    "file:///etc/passwd",
    "gopher://example.com:70/_SET",
    "ftp://example.com/",
    "http://user:secret@example.com/",
    "http:///no-host",
    "http://example.com:99999/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_the_guard_refuses_before_any_connection(url: str, connections: list[tuple[str, int]]) -> None:
    guard = resolving({"localhost": ["127.0.0.1"], "localhost.": ["127.0.0.1"], "rebound.example": ["10.1.2.3"]})
    with pytest.raises(UrlRefused):
        guard.check(url)
    with pytest.raises(UrlRefused):
        post(guard, url, b"{}", {})
    assert connections == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(connections: list[tuple[str, int]]) -> None:
    guard = resolving({"mixed.example": [PUBLIC, "127.0.0.1"]})
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1"):
        post(guard, "https://mixed.example/hook", b"{}", {})
    assert connections == []


def test_a_name_that_rebinds_to_loopback_after_registration_is_refused_at_delivery(
    connections: list[tuple[str, int]],
) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    guard = Guard(resolver=lambda _host, _port: next(answers))
    assert guard.check("https://hooks.example.com/in").host == "hooks.example.com"  # registration: public
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1"):
        post(guard, "https://hooks.example.com/in", b"{}", {})  # delivery: loopback now
    assert connections == []


def test_a_public_address_is_connected_to_as_checked(connections: list[tuple[str, int]]) -> None:
    guard = resolving({"hooks.example.com": [PUBLIC]})
    with pytest.raises(ConnectionRefusedError):
        post(guard, "http://hooks.example.com:8080/in", b"{}", {})
    assert connections == [(PUBLIC, 8080)]  # the checked address, never the name resolved again


def test_the_allow_list_opens_a_loopback_receiver_and_the_answer_is_capped() -> None:
    with receiver(body=b"x" * (RESPONSE_LIMIT * 2)) as hook:
        with pytest.raises(UrlRefused):
            Guard().check(hook.url)
        by_network, by_name = Guard(allow=("127.0.0.0/8",)), Guard(allow=("localhost",))
        answer = post(by_network, hook.url, b'{"a": 1}', {"Content-Type": "application/json"})
        assert answer.status == 200 and len(answer.body) == RESPONSE_LIMIT  # the rest is not read
        assert post(by_name, f"http://localhost:{hook.port}/hooks", b"{}", {}).status == 200
        assert [r.body for r in hook.received] == [b'{"a": 1}', b"{}"]
        assert hook.received[0].headers["Content-Type"] == "application/json"


def test_a_redirect_is_answered_not_followed() -> None:
    with receiver(statuses=[302], headers={"Location": "http://169.254.169.254/"}) as hook:
        answer = post(Guard(allow=("127.0.0.1",)), hook.url, b"{}", {})
        assert answer.status == 302 and len(hook.received) == 1


def test_a_slow_receiver_times_out() -> None:
    with receiver(delay=1.0) as hook, pytest.raises(TimeoutError):
        post(Guard(allow=("127.0.0.1",)), hook.url, b"{}", {}, read_timeout=0.2)
