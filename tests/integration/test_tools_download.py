"""lab.tools against a loopback HTTP server serving fake artifacts: verified downloads, caching, PATH reuse."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from lab import tools
from lab.errors import PreflightError
from lab.scenario import load_profile
from lab.shell import Runner
from tests.support.artifact_server import serve

pytestmark = pytest.mark.integration

PROFILE = load_profile("default")
VALUES = Path("manifests/examples/multicluster/values-istio-multicluster-gateways.yaml")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def script(version_line: str) -> bytes:
    return f"#!/bin/sh\necho '{version_line}'\n".encode()


def istio_tarball(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in ((f"istio-{version}/bin/istioctl", script(version)),
                           (f"istio-{version}/{VALUES}", b"kind: IstioOperator\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o755
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def release_files(kind_body: bytes | None = None, kind_sum: str | None = None) -> dict[str, bytes]:
    kind_body = kind_body if kind_body is not None else script("kind v0.20.0 go1.20.4 linux/amd64")
    kubectl = script('{"clientVersion": {"gitVersion": "v1.21.14"}}')
    tgz = istio_tarball("1.7.8")
    return {
        "/kind/v0.20.0/kind-linux-amd64": kind_body,
        "/kind/v0.20.0/kind-linux-amd64.sha256sum": f"{kind_sum or sha(kind_body)}  kind-linux-amd64\n".encode(),
        "/k8s/v1.21.14/bin/linux/amd64/kubectl": kubectl,
        "/k8s/v1.21.14/bin/linux/amd64/kubectl.sha256": sha(kubectl).encode(),
        "/istio/1.7.8/istio-1.7.8-linux-amd64.tar.gz": tgz,
        "/istio/1.7.8/istio-1.7.8-linux-amd64.tar.gz.sha256": f"{sha(tgz)} istio-1.7.8-linux-amd64.tar.gz\n".encode(),
    }


def sources(server) -> tools.Sources:
    return tools.Sources(kind=server.url("/kind"), kubectl=server.url("/k8s"), istio=server.url("/istio"))


def test_download_verifies_the_checksum_and_renames_into_place(tmp_path):
    body = b"kind binary" * 1000
    files = {"/k": body, "/k.sha256sum": f"{sha(body)}  k\n".encode()}
    messages: list[str] = []
    with serve(files) as srv:
        dest = tools.download(srv.url("/k"), srv.url("/k.sha256sum"), tmp_path / "bin" / "kind",
                              progress=messages.append)
    assert dest.read_bytes() == body
    assert any("downloading" in m for m in messages) and any("sha256 verified" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["kind"]


def test_a_checksum_mismatch_leaves_nothing_behind_and_says_what_to_do(tmp_path):
    files = {"/k": b"tampered", "/k.sha256sum": f"{sha(b'original')}  k\n".encode()}
    with serve(files) as srv, pytest.raises(PreflightError) as info:
        tools.download(srv.url("/k"), srv.url("/k.sha256sum"), tmp_path / "bin" / "kind", progress=lambda m: None)
    msg = str(info.value)
    assert "sha256 " + sha(b"tampered") in msg and sha(b"original") in msg and "retry" in msg
    assert list((tmp_path / "bin").iterdir()) == []


def test_a_missing_artifact_is_a_one_line_preflight_error(tmp_path):
    with serve({}) as srv, pytest.raises(PreflightError, match="HTTP 404.*check the network or the version"):
        tools.download(srv.url("/k"), srv.url("/k.sha256sum"), tmp_path / "kind", progress=lambda m: None)
    assert not (tmp_path / "kind").exists()


def test_ensure_tools_downloads_once_then_reuses_the_cache(tmp_path):
    runner = Runner()
    with serve(release_files()) as srv:
        first = tools.ensure_tools(PROFILE, tmp_path, runner, sources=sources(srv), progress=lambda m: None,
                                   use_path=False)
        n = len(srv.requests)
        second = tools.ensure_tools(PROFILE, tmp_path, runner, sources=sources(srv), progress=lambda m: None,
                                    use_path=False)
        assert len(srv.requests) == n == 6
    assert first == second
    assert first.kind == tmp_path / "bin" / "kind-v0.20.0"
    assert first.kubectl == tmp_path / "bin" / "kubectl-v1.21.14"
    assert first.istio_dir == tmp_path / "istio" / "istio-1.7.8"
    assert first.istioctl == first.istio_dir / "bin" / "istioctl"
    assert (first.istio_dir / VALUES).is_file()
    for binary in (first.kind, first.kubectl, first.istioctl):
        assert os.stat(binary).st_mode & stat.S_IXUSR
    assert runner.run([str(first.kind), "version"]).stdout.strip() == "kind v0.20.0 go1.20.4 linux/amd64"


def test_ensure_tools_refuses_a_tampered_kind_and_caches_nothing_for_it(tmp_path):
    with serve(release_files(kind_sum=sha(b"something else"))) as srv, pytest.raises(PreflightError,
                                                                                       match="kind-linux-amd64"):
        tools.ensure_tools(PROFILE, tmp_path, Runner(), sources=sources(srv), progress=lambda m: None,
                           use_path=False)
    assert not (tmp_path / "bin" / "kind-v0.20.0").exists()


def _on_path(tmp_path: Path, name: str, line: str) -> Path:
    bindir = tmp_path / "path"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_bytes(script(line))
    exe.chmod(0o755)
    return exe


def test_a_path_binary_at_the_exact_version_is_used_and_others_are_not(tmp_path, monkeypatch):
    kind_ok = _on_path(tmp_path, "kind", "kind v0.20.0 go1.20.4 linux/amd64")
    _on_path(tmp_path, "kubectl", '{"clientVersion": {"gitVersion": "v1.21.2"}}')  # wrong patch version
    _on_path(tmp_path, "istioctl", "1.7.8")
    monkeypatch.setenv("PATH", f"{tmp_path / 'path'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    with serve(release_files()) as srv:
        got = tools.ensure_tools(PROFILE, cache, Runner(), sources=sources(srv), progress=lambda m: None)
        assert not any(r.startswith("/kind/") for r in srv.requests)
        assert "/k8s/v1.21.14/bin/linux/amd64/kubectl" in srv.requests
    assert got.kind == kind_ok
    assert got.kubectl == cache / "bin" / "kubectl-v1.21.14"
    assert got.istioctl == tmp_path / "path" / "istioctl"
    assert got.istio_dir == cache / "istio" / "istio-1.7.8"


def test_an_interrupted_extraction_is_not_reused(tmp_path):
    with serve(release_files()) as srv:
        src = sources(srv)
        istio_dir = tools.ensure_istio("1.7.8", tmp_path, sources=src, progress=lambda m: None)
        (tmp_path / "istio" / ".istio-1.7.8.extracted").unlink()  # as if the run died before the marker
        (istio_dir / VALUES).unlink()
        again = tools.ensure_istio("1.7.8", tmp_path, sources=src, progress=lambda m: None)
    assert (again / VALUES).is_file()
    assert [p.name for p in (tmp_path / "istio").iterdir() if p.name.startswith(".extract-")] == []
