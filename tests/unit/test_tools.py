"""lab.tools, pure parts: download URLs, checksum files, version output, tar safety, the cache location."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import tools
from lab.errors import PreflightError, ValidationError
from lab.scenario import load_profile
from tests.support.recording import RecordingRunner

SHA = "a8c045856db33f839908b6acb90dc8ec397253ffdaef7baf058f5a542e009b9c"  # kind v0.17.0 linux-amd64


def test_kind_url_names_the_release_asset_and_its_sha256sum_file():
    assert tools.kind_url("v0.20.0") == (
        "https://github.com/kubernetes-sigs/kind/releases/download/v0.20.0/kind-linux-amd64",
        "https://github.com/kubernetes-sigs/kind/releases/download/v0.20.0/kind-linux-amd64.sha256sum")


def test_kubectl_url_is_dl_k8s_io_with_its_sha256_file():
    assert tools.kubectl_url("v1.19.16") == ("https://dl.k8s.io/release/v1.19.16/bin/linux/amd64/kubectl",
                                             "https://dl.k8s.io/release/v1.19.16/bin/linux/amd64/kubectl.sha256")


def test_istio_url_is_the_linux_amd64_tarball_and_its_sha256():
    assert tools.istio_url("1.7.8") == (
        "https://github.com/istio/istio/releases/download/1.7.8/istio-1.7.8-linux-amd64.tar.gz",
        "https://github.com/istio/istio/releases/download/1.7.8/istio-1.7.8-linux-amd64.tar.gz.sha256")


def test_sources_override_every_base_url():
    src = tools.Sources(kind="http://h/k", kubectl="http://h/c/", istio="http://h/i")
    assert tools.kind_url("v0.17.0", src)[0] == "http://h/k/v0.17.0/kind-linux-amd64"
    assert tools.kubectl_url("v1.21.14", src)[0] == "http://h/c/v1.21.14/bin/linux/amd64/kubectl"
    assert tools.istio_url("1.7.3", src)[1] == "http://h/i/1.7.3/istio-1.7.3-linux-amd64.tar.gz.sha256"


@pytest.mark.parametrize("text", [
    SHA + "\n",                                   # dl.k8s.io: bare digest
    SHA,                                          # ... without newline
    f"{SHA}  kind-linux-amd64\n",                 # kind: `shasum -a 256 f > f.sha256sum`
    f"{SHA} kind-linux-amd64\n",                  # Istio release-builder CreateSha: "%x %s\n"
    f"{SHA} *kind-linux-amd64\n",                 # sha256sum binary mode
    SHA.upper() + "  kind-linux-amd64\r\n",
])
def test_checksum_file_forms_all_give_the_digest(text):
    assert tools.parse_checksum(text, "kind-linux-amd64") == SHA


def test_checksum_file_with_several_files_picks_the_named_one():
    other = "0" * 64
    text = f"{other}  kind-darwin-amd64\n{SHA}  kind-linux-amd64\n"
    assert tools.parse_checksum(text, "kind-linux-amd64") == SHA


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"),
    ("404: Not Found\n", "not '<sha256 hex>"),
    ("<html><body>Not Found</body></html>", "not '<sha256 hex>"),
    (SHA[:-1] + "  kind-linux-amd64\n", "not '<sha256 hex>"),
    (f"{SHA}  kind-darwin-amd64\n", "lists kind-darwin-amd64, not kind-linux-amd64"),
    (f"{SHA}\n{'1' * 64}\n", "2 digests"),
])
def test_unusable_checksum_files_are_refused(text, match):
    with pytest.raises(ValidationError, match=match):
        tools.parse_checksum(text, "kind-linux-amd64")


@given(st.binary(max_size=256), st.sampled_from(["{h}", "{h}\n", "{h}  {n}\n", "{h} {n}\n", "{h} *{n}\n"]))
def test_any_published_digest_parses_back(data, form):
    digest = hashlib.sha256(data).hexdigest()
    assert tools.parse_checksum(form.format(h=digest, n="istio-1.7.8-linux-amd64.tar.gz"),
                                "istio-1.7.8-linux-amd64.tar.gz") == digest


@pytest.mark.parametrize(("out", "version"), [
    ("kind v0.20.0 go1.20.4 linux/amd64\n", "v0.20.0"),
    ("kind v0.17.0 go1.19.2 linux/amd64", "v0.17.0"),
    ("kind v0.8.1 go1.14.4 linux/amd64", "v0.8.1"),  # kind #1746
    ("something else", None),
])
def test_kind_version_output_parses(out, version):
    assert tools.parse_kind_version(out) == version


@pytest.mark.parametrize(("out", "version"), [
    ('{\n  "clientVersion": {\n    "major": "1",\n    "minor": "21",\n    "gitVersion": "v1.21.14"\n  }\n}\n',
     "v1.21.14"),
    # `kubectl version` text of the 1.18 era, as quoted in kind issue #1746
    ('Client Version: version.Info{Major:"1", Minor:"18", GitVersion:"v1.18.5", '
     'GitCommit:"e6503f8d8f769ace2f338794c914a96fc335df0f", GitTreeState:"archive"}', "v1.18.5"),
    ("Client Version: v1.28.2\nKustomize Version: v5.0.4", "v1.28.2"),
    ('{"serverVersion": {"gitVersion": "v1.21.14"}}', None),
    ("error: unknown flag", None),
])
def test_kubectl_client_version_output_parses(out, version):
    assert tools.parse_kubectl_version(out) == version


@pytest.mark.parametrize(("out", "version"), [
    ("1.7.8\n", "1.7.8"),
    ("client version: 1.7.3\n", "1.7.3"),
    ("2026-11-25T00:00:00 warn something\n1.7.8\n", "1.7.8"),
    ("no running Istio pods", None),
])
def test_istioctl_version_output_parses(out, version):
    assert tools.parse_istioctl_version(out) == version


def test_cache_dir_prefers_lab_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "lc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tools.cache_dir() == tmp_path / "lc"
    monkeypatch.delenv("LAB_CACHE")
    assert tools.cache_dir() == tmp_path / "xdg" / "istio-multicluster-lab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tools.cache_dir() == tmp_path / "home" / ".cache" / "istio-multicluster-lab"


def _tar(tmp_path: Path, members: list[tarfile.TarInfo], payload: bytes = b"x") -> Path:
    path = tmp_path / "t.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if m.isfile():
                m.size = len(payload)
                tar.addfile(m, io.BytesIO(payload))
            else:
                tar.addfile(m)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755
    return info


@pytest.mark.parametrize("member", [
    _member("../evil"),
    _member("istio-1.7.8/../../evil"),
    _member("/etc/evil"),
    _member("istio-1.7.8/link", tarfile.SYMTYPE, "../../outside"),
    _member("istio-1.7.8/abs", tarfile.SYMTYPE, "/etc/passwd"),
    _member("istio-1.7.8/hard", tarfile.LNKTYPE, "../outside"),
    _member("istio-1.7.8/dev", tarfile.CHRTYPE),
])
def test_safe_extract_refuses_members_that_escape_or_are_devices(tmp_path, member):
    archive = _tar(tmp_path, [member])
    dest = tmp_path / "out"
    with pytest.raises(ValidationError, match="refusing"):
        tools.safe_extract(archive, dest)
    assert not (tmp_path / "evil").exists()
    assert list(dest.iterdir()) == []


def test_safe_extract_keeps_a_normal_release_layout_and_exec_bits(tmp_path):
    archive = _tar(tmp_path, [_member("istio-1.7.8/", tarfile.DIRTYPE), _member("istio-1.7.8/bin/istioctl"),
                              _member("istio-1.7.8/bin/link", tarfile.SYMTYPE, "istioctl")])
    tools.safe_extract(archive, tmp_path / "out")
    istioctl = tmp_path / "out" / "istio-1.7.8" / "bin" / "istioctl"
    assert istioctl.read_bytes() == b"x"
    assert istioctl.stat().st_mode & 0o100
    assert (tmp_path / "out" / "istio-1.7.8" / "bin" / "link").resolve() == istioctl.resolve()


def test_release_url_follows_release_builder_naming():
    from lab import tools

    assert tools.istio_url("1.7.3") == (
        "https://github.com/istio/istio/releases/download/1.7.3/istio-1.7.3-linux-amd64.tar.gz",
        "https://github.com/istio/istio/releases/download/1.7.3/istio-1.7.3-linux-amd64.tar.gz.sha256")
# --- per OS and CPU (issue 11: arm64 hosts) ----------------------------------------------------------------

@pytest.mark.parametrize("system, machine, expected", [
    ("Linux", "x86_64", ("linux", "amd64")), ("Linux", "aarch64", ("linux", "arm64")),
    ("Linux", "arm64", ("linux", "arm64")), ("Linux", "armv8l", ("linux", "arm64")),
    ("Darwin", "arm64", ("darwin", "arm64")), ("Darwin", "x86_64", ("darwin", "amd64")),
    ("Linux", "AMD64", ("linux", "amd64")),
])
def test_the_host_platform_comes_from_system_and_machine(system, machine, expected):
    host = tools.host_platform(system, machine)
    assert (host.os, host.arch) == expected


@pytest.mark.parametrize("system, machine, said", [
    ("Windows", "AMD64", "runs Windows: the lab downloads kind, kubectl and istioctl for Linux and macOS only"),
    ("Linux", "armv7l", "CPU is armv7l: kind, kubectl and istioctl are downloaded for amd64"),
    ("Linux", "s390x", "CPU is s390x"), ("", "x86_64", "runs an unknown OS"),
])
def test_an_unsupported_host_is_one_preflight_line(system, machine, said):
    with pytest.raises(PreflightError, match=re.escape(said)) as err:
        tools.host_platform(system, machine)
    assert "\n" not in str(err.value)


def test_the_host_platform_defaults_to_this_machine(monkeypatch):
    monkeypatch.setattr(tools.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(tools.platform, "machine", lambda: "arm64")
    assert tools.host_platform() == tools.HostPlatform("darwin", "arm64")


KIND = "https://github.com/kubernetes-sigs/kind/releases/download/v0.32.0/"
ISTIO = "https://github.com/istio/istio/releases/download/1.30.3/"


# kind hack/release/build/cross.sh at v0.32.0: kind-${GOOS}-${GOARCH}, each with a .sha256sum.
@pytest.mark.parametrize("os_, arch, asset", [("linux", "amd64", "kind-linux-amd64"),
                                              ("linux", "arm64", "kind-linux-arm64"),
                                              ("darwin", "arm64", "kind-darwin-arm64"),
                                              ("darwin", "amd64", "kind-darwin-amd64")])
def test_kind_url_names_the_asset_of_the_host(os_, arch, asset):
    host = tools.HostPlatform(os_, arch)
    assert tools.kind_url("v0.32.0", host=host) == (KIND + asset, KIND + asset + ".sha256sum")


@pytest.mark.parametrize("os_, arch", [("linux", "arm64"), ("darwin", "arm64"), ("darwin", "amd64")])
def test_kubectl_url_names_the_os_and_arch_directories(os_, arch):
    url = f"https://dl.k8s.io/release/v1.36.1/bin/{os_}/{arch}/kubectl"
    assert tools.kubectl_url("v1.36.1", host=tools.HostPlatform(os_, arch)) == (url, url + ".sha256")


# release-builder pkg/build/archive.go at 1.30.3 and downloadIstioCandidate.sh at 1.30.3: linux-<arch>, osx (the
# name every release has for macOS amd64), osx-arm64.
@pytest.mark.parametrize("os_, arch, asset", [("linux", "amd64", "istio-1.30.3-linux-amd64.tar.gz"),
                                              ("linux", "arm64", "istio-1.30.3-linux-arm64.tar.gz"),
                                              ("darwin", "arm64", "istio-1.30.3-osx-arm64.tar.gz"),
                                              ("darwin", "amd64", "istio-1.30.3-osx.tar.gz")])
def test_istio_url_names_the_release_archive_of_the_host(os_, arch, asset):
    host = tools.HostPlatform(os_, arch)
    assert tools.istio_asset("1.30.3", host) == asset
    assert tools.istio_url("1.30.3", host=host) == (ISTIO + asset, ISTIO + asset + ".sha256")
    src = tools.Sources(istio="http://h/i")
    assert tools.istio_url("1.30.3", src, host)[0] == f"http://h/i/1.30.3/{asset}"


def test_an_istio_release_older_than_its_archive_for_the_host_is_refused_before_any_download():
    with pytest.raises(PreflightError, match=r"Istio 1\.7\.8 has no osx-arm64 release \(the first is 1\.10\)"):
        tools.istio_url("1.7.8", host=tools.HostPlatform("darwin", "arm64"))
    with pytest.raises(PreflightError, match=r"Istio 1\.5\.10 has no linux-arm64 release \(the first is 1\.6\)"):
        tools.istio_asset("1.5.10", tools.HostPlatform("linux", "arm64"))
    assert tools.istio_asset("1.10.0", tools.HostPlatform("darwin", "arm64")) == "istio-1.10.0-osx-arm64.tar.gz"
    assert tools.istio_asset("1.7.8", tools.HostPlatform("darwin", "amd64")) == "istio-1.7.8-osx.tar.gz"


def test_ensure_tools_downloads_for_the_host_it_is_given(tmp_path, monkeypatch):
    fetched: list[str] = []

    def fake_download(url, checksum_url, dest, *, progress=None, timeout=60.0):
        fetched.append(url)
        raise PreflightError("stop here")

    monkeypatch.setattr(tools, "download", fake_download)
    with pytest.raises(PreflightError, match="stop here"):
        tools.ensure_tools(load_profile(), tmp_path, RecordingRunner(), use_path=False,
                           host=tools.HostPlatform("darwin", "arm64"))
    assert fetched == [KIND.replace("v0.32.0", "v0.20.0") + "kind-darwin-arm64"]
