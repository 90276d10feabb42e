"""The lab's error family. The CLI prints one line for a LabError and a traceback only for bugs."""

from __future__ import annotations

import os


class LabError(Exception):
    """Something the user can act on; str() is the one line the CLI prints (what went wrong, what to do)."""

    exit_code = 1


class UsageError(LabError):
    """Bad input on the command line or in a profile: refused before anything is touched."""

    exit_code = 2


class ValidationError(UsageError):
    """A value breaks a rule (a VIP, a host name, a Corefile); the message names the rule."""


class ManifestError(LabError):
    """A manifest template is missing, or is rendered with a missing, extra or unsafe variable."""


class PreflightError(LabError):
    """The machine cannot run the lab (Docker, architecture, memory, limits, ports)."""


class CommandError(LabError):
    """An external command failed; carries the command, its context, exit code and the tail of its output."""

    def __init__(self, argv: list[str], returncode: int, output: str, context: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        self.context = context
        tail = " | ".join(line for line in output.strip().splitlines()[-3:] if line.strip())
        where = f"{context}: " if context else ""
        super().__init__(f"{where}`{' '.join(self.argv)}` exited {returncode}" + (f": {tail}" if tail else ""))


class ApiError(LabError):
    """A Kubernetes API call failed (lab.cluster): what was asked of which cluster, the API's reason, what to do."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class UnreachableError(ApiError):
    """The cluster's API server did not answer at all (refused, timed out, no route): `server` is where it was
    asked, `why` the transport's reason. No HTTP status: nothing answered."""

    def __init__(self, message: str, *, server: str, why: str) -> None:
        self.server = server
        self.why = why
        super().__init__(message)


class NotFoundError(ApiError):
    """The object a read or a change needs does not exist (HTTP 404)."""


class NotReadyError(LabError):
    """A condition was not met before its deadline."""


class LockedError(LabError):
    """Another lab run holds the lock."""


class NoLabError(LabError):
    """A command that needs a lab found no state file: the same line from status, uninstall and doctor."""

    def __init__(self, home: object) -> None:
        self.home = home
        super().__init__(no_lab_message(home))


def no_lab_message(home: object) -> str:
    """The one wording for "there is no lab here" (`lab down` says it too, as a note, and exits 0)."""
    where = (f"{home} is a file, not a lab directory" if os.path.lexists(str(home)) and not os.path.isdir(str(home))
             else f"no lab in {home} (no state.json there)")
    return f"{where}: build one with `make lab-up`, or point --home (or LAB_HOME) at the lab's directory"
