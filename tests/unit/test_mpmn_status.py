"""`lab status` rows of the multi-primary-multi-network scenario, over a stand-in kubectl."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.scenarios.multi_primary_multi_network import status
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES


@dataclass
class Res:
    ok: bool
    stdout: str = ""


class FakeKubectl:
    def __init__(self, answers: dict[str, Res]) -> None:
        self.answers = answers

    def run(self, *argv: str, check: bool = True) -> Res:
        for key, res in self.answers.items():
            if key in argv:
                return res
        return Res(False)


def _cluster(role: str) -> Any:
    return next(c for c in PROFILES["multi-primary"].clusters if c.role == role)


def test_server_rows_with_address() -> None:
    k = FakeKubectl({"istiod": Res(True, "1/1"), "deployment": Res(True, "1/1"),
                     "service": Res(True, "172.18.255.200 ")})
    got = status.rows(k, _cluster("server"))  # type: ignore[arg-type]
    assert ("east-west gateway address", True, "172.18.255.200") in got
    assert all(ok for _, ok, _ in got)


def test_server_pending_address_and_client_missing_secret() -> None:
    k = FakeKubectl({"deployment": Res(True, "1/1"), "service": Res(True, "")})
    assert ("east-west gateway address", False, "<pending>") in status.rows(k, _cluster("server"))  # type: ignore
    rows = status.rows(FakeKubectl({"deployment": Res(True, "0/1")}), _cluster("client"))  # type: ignore
    assert ("remote secret", False, "absent") in rows
    assert ("istiod", False, "0/1 ready") in rows
