"""The one subprocess runner: argv lists (never a shell), captured output, errors that carry the command.

Everything that runs docker, kind, kubectl or istioctl goes through a `Runner`, so that tests can swap in a
recording runner and dry runs take the same path as real ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lab.errors import CommandError, PreflightError

# Every child a Runner started and that has not ended yet. Ctrl-C at a terminal reaches the whole foreground
# process group, but a SIGINT sent to the lab's pid alone (`kill -INT <pid>`, a supervisor) reaches only the lab:
# its children (a `docker pull`, a `kind create`) would run on. `end_children` ends them.
_children: set[subprocess.Popen[str]] = set()
_children_lock = threading.Lock()


def end_children(grace: float = 5.0) -> int:
    """SIGINT to every running child (what Ctrl-C would have sent), SIGKILL to those still there after `grace`
    seconds. Returns how many there were."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return len(procs)


def _communicate(argv: list[str], input: str | None, timeout: float | None,  # noqa: A002
                 env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """subprocess.run(capture_output=True, text=True), with the child registered for `end_children`."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env))
    with _children_lock:
        _children.add(proc)
    try:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, exc.timeout, output=out, stderr=err) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    finally:
        with _children_lock:
            _children.discard(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        """stdout and stderr together (curl's progress meter and error go to stderr)."""
        if self.stdout and self.stderr:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr


@dataclass
class Runner:
    """Runs commands for real. `env` is added to os.environ; `redact` strings never appear in errors."""

    env: Mapping[str, str] = field(default_factory=dict)
    redact: Sequence[str] = ()

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,  # noqa: A002 - mirrors subprocess
        check: bool = True,
        timeout: float | None = None,
        context: str = "",
        env: Mapping[str, str] | None = None,
    ) -> Result:
        argv = [str(a) for a in argv]
        full_env = {**os.environ, **self.env, **(env or {})}
        try:
            proc = _communicate(argv, input, timeout, full_env)
        except FileNotFoundError as err:
            why = context or "needed by the lab"
            raise PreflightError(f"{argv[0]} is not installed or not on PATH ({why})") from err
        except subprocess.TimeoutExpired as err:
            out = _text(err.stdout) + _text(err.stderr)
            raise CommandError(self._scrub_argv(argv), -1, self._scrub(out + f"\n(timed out after {timeout:.0f}s)"),
                               context) from err
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            raise CommandError(self._scrub_argv(argv), result.returncode, self._scrub(result.output), context)
        return result

    def _scrub_argv(self, argv: Sequence[str]) -> list[str]:
        return [self._scrub(a) for a in argv]

    def _scrub(self, text: str) -> str:
        for secret in self.redact:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
