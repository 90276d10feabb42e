"""Build and diagnose an Istio multicluster lab on two kind clusters (`lab scenarios` lists what it can build).

(For developers: argument parsing and output only; the work is done by the domain modules. Each command group has
its own `_add_<group>` function. `main` is the one place where every error becomes one line on stderr and an exit
code: a LabError, an OSError (with its path), undecodable text, inputs too big or too deep, a closed or full
standard output, Ctrl-C. Anything else is a bug and shows a traceback.)
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from lab import __version__
from lab.cliargs import port, read_input
from lab.errors import LabError, UsageError
from lab.files import MAX_INPUT, atomic_write, describe_os_error
from lab.values import ascii_int

if TYPE_CHECKING:
    from lab.profile import ProfileBase as Profile
    from lab.scenario import Scenario

T = TypeVar("T")

PROG = "python -m lab"
# --- option values: checked by argparse, so that a bad one is refused before anything runs -----------------
def _exit_code(text: str) -> int:
    try:
        return ascii_int(text, "exit code", 0, 255)
    except UsageError as err:
        # the range is in the message already when the number is out of it
        raise argparse.ArgumentTypeError(str(err) if "is outside" in str(err)
                                         else f"{err} (a process exit code is 0-255)") from None


def _dns_name(text: str) -> str:
    """A host to look for in a config dump: a DNS name (any case, a trailing dot), or `*.suffix` (lab.configdump
    .host_matches understands both)."""
    import re

    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    if len(text) > 254 or not re.fullmatch(rf"(\*\.)?{label}(\.{label})*\.?", text, re.ASCII | re.IGNORECASE):
        raise argparse.ArgumentTypeError(f"{text!r} is not a DNS host name (a name such as httpbin.bar.example, or "
                                         "*.SUFFIX for every name under SUFFIX)")
    return text


class _ArgumentError(UsageError):
    """A command line argparse refused (one line, not argparse's usage block)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{self.prog}: {message} (see `{self.prog} --help`)")


# --- mesh building blocks (certs; a scenario adds its own: Scenario.add_commands) ------------------------
def _add_certs(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("certs", help="shared-root CA material for the clusters (the cacerts secret)")
    csub = p.add_subparsers(dest="certs_command", required=True, metavar="ACTION")

    gen = csub.add_parser("generate", help="a root CA and one intermediate CA per cluster (Istio's cacerts layout)")
    gen.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="writes DIR/root-cert.pem, DIR/root-key.pem and DIR/<cluster>/ (an existing root is reused)")
    gen.add_argument("--clusters", metavar="NAMES",
                     help="comma-separated cluster names (default: the profile's clusters)")
    gen.set_defaults(func=_certs_generate)

    chk = csub.add_parser("check", help="exit 0 if both directories share one root and both chains verify, else 1")
    chk.add_argument("dir_a", type=Path, metavar="DIR_A")
    chk.add_argument("dir_b", type=Path, metavar="DIR_B")
    chk.set_defaults(func=_certs_check)


def _certs_generate(a: argparse.Namespace) -> int:
    from lab import certs
    from lab.scenario import load_profile

    names = a.clusters.split(",") if a.clusters else [c.name for c in load_profile().clusters]
    try:
        certs.generate(a.out, names)
    except OSError as err:
        raise LabError(f"cannot write the CA material to {a.out}: {describe_os_error(err, named=a.out)}") from err
    root = a.out / certs.ROOT_CERT
    print(f"root: {root} (sha256 {certs.root_fingerprint(root.read_bytes())}); "
          f"its key {a.out / certs.ROOT_KEY} stays here, keep it private")
    for name in names:
        print(f"{name.strip()}: {a.out / name.strip()} ({', '.join(certs.CACERTS_FILES)})")
    return 0


def _certs_check(a: argparse.Namespace) -> int:
    from lab import certs

    for d in (a.dir_a, a.dir_b):
        if not d.is_dir():
            raise UsageError(f"{d} is not a directory: pass two directories that hold a cluster's cacerts files")
    problems = certs.check(a.dir_a, a.dir_b)
    if any(certs.uses_sample_root(d) for d in (a.dir_a, a.dir_b)):
        print(f"lab: note: {certs.SAMPLES_NOTICE}", file=sys.stderr)
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        return 1
    root = certs.root_fingerprint((a.dir_a / certs.ROOT_CERT).read_bytes())
    print(f"ok: {a.dir_a} and {a.dir_b} share one root (sha256 {root}) and both chains verify")
    return 0


def _default_scenario() -> Scenario[Any]:
    """The scenario of the lab's default profile (lab.scenario.DEFAULT_PROFILE): what a command without
    --scenario or --profile is about."""
    from lab import scenario as registry

    return registry.owner_of(registry.DEFAULT_PROFILE)


# --- diagnostics (classify, configdump, doctor) ----------------------------------------------------------
def _add_classify(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("classify", help="say what a curl/Envoy probe result means",
                       description="Print the class of a probe result alone on the first line, then the evidence "
                                   "(see docs/classify.md).")
    p.add_argument("file", nargs="?", help="what curl printed (stdout and stderr); standard input if absent or -")
    p.add_argument("--exit-code", type=_exit_code, metavar="N", help="curl's exit code, if the output does not show it")
    p.add_argument("--access-log", metavar="FILE", help="Envoy access-log lines for the same request(s)")
    p.add_argument("--each", action="store_true", help="one verdict per request when the output holds several")

    def run(a: argparse.Namespace) -> int:
        from lab import classify

        output = read_input(a.file)
        log = read_input(a.access_log) if a.access_log else None
        if a.each:
            for i, v in enumerate(classify.classify_many(output, a.exit_code, log), 1):
                print(f"request {i}: {v.cls}")
                print("\n".join(f"  {line}" for line in v.evidence))
            return 0
        verdict = classify.classify(output, a.exit_code, log)
        print(verdict.cls)
        print("\n".join(verdict.evidence))
        return 0

    p.set_defaults(func=run)


def _add_configdump(sub: argparse._SubParsersAction[_Parser]) -> None:
    from lab.scenario import scenarios

    defaults = ", ".join(f"{s.name}: {s.config_hosts}" for s in scenarios().values())
    p = sub.add_parser("configdump", help="summarise an Envoy /config_dump for a host and port")
    p.add_argument("file", metavar="FILE", help="the /config_dump JSON ('-' for standard input)")
    p.add_argument("--host", default=None, type=_dns_name,
                   help=f"host to look for, a name or *.SUFFIX (default: every name of --scenario's services; "
                        f"{defaults})")
    p.add_argument("--port", type=port, default=None, help="service port, 1-65535 (e.g. 8000)")
    p.add_argument("--scenario", metavar="NAME", help="whose services --host defaults to (default: the default "
                                                      "profile's scenario)")

    def run(a: argparse.Namespace) -> int:
        import json

        from lab import configdump
        from lab import scenario as registry

        host = a.host or (registry.get(a.scenario) if a.scenario else _default_scenario()).config_hosts
        text = read_input(a.file)
        dump = configdump.load(text, source="standard input" if a.file == "-" else a.file)
        print(json.dumps(configdump.analyze(dump, host, a.port), indent=2))
        return 0

    p.set_defaults(func=run)


def _add_doctor(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("doctor", help="walk the path from the scenario's client to httpbin and name the first "
                                      "broken hop")
    p.add_argument("--home", metavar="DIR", help="the lab's state directory (default: $LAB_HOME, else ./.lab)")
    p.add_argument("--lab-home", dest="home", help=argparse.SUPPRESS)  # the old name, still accepted
    p.add_argument("--profile", default=None, metavar="NAME",
                   help="lab profile (default: the one the lab was built with, from its state.json)")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="whose doctor walks the lab (default: the scenario of --profile, else of the lab's profile)")
    p.add_argument("--json", action="store_true", help="print the hops as JSON")

    def run(a: argparse.Namespace) -> int:
        from lab import executor
        from lab import scenario as registry
        from lab.state import lab_home

        home = lab_home(a.home)
        if a.scenario is not None:
            scenario = registry.get(a.scenario)
            if a.profile is not None:
                registry.load_profile(a.profile, scenario=a.scenario)  # one line when it is another scenario's
            return scenario.doctor(a.profile, home, a.json, sys.stdout)
        scenario = executor.scenario_of_lab(home, a.profile)
        return scenario.doctor(a.profile, home, a.json, sys.stdout)

    p.set_defaults(func=run)


def _add_faults(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("faults", help="the documented-failure catalogue of a scenario (lab/scenarios/<name>/faults.py)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    t = verbs.add_parser("table", help="print the catalogue as the README's Markdown table")
    t.add_argument("--write", metavar="FILE", help="replace the table between FILE's two marker lines instead")
    t.add_argument("--scenario", metavar="NAME", help="whose catalogue (default: the default profile's scenario)")

    def table(a: argparse.Namespace) -> int:
        from lab import scenario as registry

        scenario = registry.get(a.scenario) if a.scenario else _default_scenario()
        if not a.write:
            sys.stdout.write(scenario.faults_table())
            return 0
        atomic_write(a.write, scenario.with_faults_table(read_input(a.write)))
        print(f"{a.write}: fault table written from the {scenario.name} scenario's catalogue")
        return 0

    t.set_defaults(func=table)


# --- provisioning (plan, up, down, status, uninstall) ----------------------------------------------------
# --- plan/up/down/status/uninstall: parsing and output only; lab.plan and lab.executor do the work -------------
def _home_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="the lab's state directory (default: $LAB_HOME, else ./.lab)")


def _profile_args(p: argparse.ArgumentParser) -> None:
    from lab.scenario import DEFAULT_PROFILE, profiles

    by_scenario: dict[str, list[str]] = {}
    for name, owner in profiles().items():
        by_scenario.setdefault(owner.name, []).append(name)
    listed = "; ".join(f"{s}: {', '.join(names)}" for s, names in by_scenario.items())
    p.add_argument("--profile", default=None, metavar="NAME",
                   help=f"the profile ({listed}; default: {DEFAULT_PROFILE}, or --scenario's own)")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help=f"the scenario, with its default profile ({', '.join(by_scenario)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value, e.g. --set istio_version=1.7.3 (repeatable)")


def _chosen_profile(a: argparse.Namespace) -> tuple[Profile, dict[str, str]]:
    from lab.profile import parse_overrides
    from lab.scenario import load_profile

    overrides = parse_overrides(a.overrides)
    return load_profile(a.profile, overrides, scenario=a.scenario), overrides


def _add_plan(sub: argparse._SubParsersAction[_Parser]) -> None:
    def plan(a: argparse.Namespace) -> int:
        from lab import plan as lab_plan
        from lab.scenario import of
        from lab.state import lab_home

        profile, _ = _chosen_profile(a)
        scenario = of(profile)
        # $ISTIO_DIR in the script: where `lab up` unpacks the release (nothing is downloaded here)
        paths = lab_plan.Paths(lab_home(a.home), lab_plan.default_istio_dir(profile))
        steps = (scenario.build_uninstall if a.uninstall else scenario.build)(profile, paths)
        title = "lab uninstall" if a.uninstall else "lab up"
        # the write-up ends its uninstall section by unsetting the variables it exported
        out = (lab_plan.render_shell(steps, paths, title=title, unset=a.uninstall) if a.shell
               else lab_plan.to_json(steps) if a.json else lab_plan.render_text(steps))
        sys.stdout.write(out)
        return 0

    p = sub.add_parser("plan", help="print the steps `lab up` runs (with --shell: as a bash script to replay)")
    _profile_args(p)
    _home_arg(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--shell", action="store_true", help="print a bash script a person can replay by hand")
    fmt.add_argument("--json", action="store_true", help="print the steps as JSON")
    p.add_argument("--uninstall", action="store_true", help="the write-up's uninstall section instead of `up`")
    p.set_defaults(func=plan)


def _add_up(sub: argparse._SubParsersAction[_Parser]) -> None:
    def up(a: argparse.Namespace) -> int:
        from lab import executor

        profile, overrides = _chosen_profile(a)
        return executor.up(profile, home=a.home, overrides=overrides)

    from lab.scenario import DEFAULT_PROFILE

    default = _default_scenario()
    p = sub.add_parser("up", help=f"build the lab and prove its scenario's call returns 200 (re-runnable; "
                                  f"{DEFAULT_PROFILE}: {default.proof(default.profiles[DEFAULT_PROFILE])})")
    _profile_args(p)
    _home_arg(p)
    p.set_defaults(func=up)


def _run_on_recorded(name: str, a: argparse.Namespace) -> int:
    from lab import executor

    command = {"down": executor.down, "status": executor.status, "uninstall": executor.uninstall}[name]
    return command(home=a.home)


def _add_recorded(sub: argparse._SubParsersAction[_Parser]) -> None:
    """down/status/uninstall: the commands that work on the lab as it was built (its recorded profile)."""
    for name, text in [
        ("down", "delete the clusters this lab created (confirmed by kind's node label), nothing else"),
        ("status", "show clusters, Istio, the scenario's own parts (DNS, gateways, apps) and the last probe"),
        ("uninstall", "remove the apps, ServiceEntries and namespaces (the write-up's uninstall section)"),
    ]:
        p = sub.add_parser(name, help=text)
        _home_arg(p)
        # `make lab-down LAB_ARGS=...` passes what `make lab-up` got; the lab's recorded profile decides here.
        p.add_argument("--profile", help=argparse.SUPPRESS)
        p.add_argument("--scenario", help=argparse.SUPPRESS)
        p.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
        p.set_defaults(func=lambda a, n=name: _run_on_recorded(n, a))


def _add_scenarios(sub: argparse._SubParsersAction[_Parser]) -> None:
    def listing(a: argparse.Namespace) -> int:
        from lab.scenario import DEFAULT_PROFILE, owner_of, scenarios

        default = owner_of(DEFAULT_PROFILE).name
        for s in scenarios().values():
            mark = " (the default)" if s.name == default else ""
            print(f"{s.name}{mark}: {s.title}")
            print(f"  profiles: {', '.join(s.profiles)} (--scenario {s.name} picks {s.default_profile})")
        return 0

    p = sub.add_parser("scenarios", help="list the installed scenarios, their profiles and default profile")
    p.set_defaults(func=listing)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0],
                     epilog="Start with `make lab-up` (README.md); `python -m lab COMMAND --help` describes a command.")
    parser.add_argument("--version", action="version", version=f"istio-multicluster-lab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command and retry")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from lab.scenario import scenarios

    for add in (_add_scenarios, _add_plan, _add_up, _add_recorded, _add_certs):
        add(sub)
    for scenario in scenarios().values():  # each scenario's own subcommands (lab corefile, ...)
        if scenario.add_commands is not None:
            scenario.add_commands(sub)
    for add in (_add_classify, _add_configdump, _add_doctor, _add_faults):
        add(sub)
    for _, p in iter_commands(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:  # a command's --help opens with what its listing says
                    child = action.choices[choice.dest]
                    if not child.description and choice.help:
                        child.description = choice.help[0].upper() + choice.help[1:] + "."
        if p is not parser:
            # `python -m lab up -v` as well as `python -m lab -v up`
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="log every command and retry")
    return parser


def iter_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under `parser` with its command path (("certs", "generate"), ...), parents first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from iter_commands(child, (*path, name))


def leaf_commands(parser: argparse.ArgumentParser | None = None) -> list[tuple[str, ...]]:
    """The runnable commands (those without subcommands of their own)."""
    parser = parser or build_parser()
    return [path for path, p in iter_commands(parser) if path and
            not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


class _StdoutError(LabError):
    """Standard output cannot be written (a full disk, an I/O error)."""


class _Stdout:
    """sys.stdout as the commands see it: a write that fails is a _StdoutError (a closed pipe stays
    BrokenPipeError), so that it is told apart from an error on a file the command writes."""

    def __init__(self, real: TextIO) -> None:
        self._real = real

    def _guard(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _StdoutError(f"cannot write standard output: {err.strerror or err}; "
                               + ("free some disk space, or send the output elsewhere"
                                  if err.errno in (errno.ENOSPC, errno.EDQUOT) else "send the output elsewhere")
                               ) from err

    def write(self, text: str) -> int:
        return self._guard(self._real.write, text)

    def flush(self) -> None:
        self._guard(self._real.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _closed_fds() -> set[int]:
    """Which of stdin/stdout/stderr were closed at start; each is reopened on /dev/null so that no file the lab
    opens later takes its number (and a child process would write into it)."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        nul = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if nul != fd:
            os.dup2(nul, fd)
            os.close(nul)
    return closed


def _silence_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not raise again (Python docs, "Note on
    # SIGPIPE"); what could not be written is dropped.
    with contextlib.suppress(OSError, ValueError, LabError):
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)


def _one_line(text: str) -> str:
    return " | ".join(part.strip() for part in str(text).splitlines() if part.strip()) or "unknown error"


def _fail(message: str, code: int) -> int:
    print(f"lab: error: {_one_line(message)}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from lab import cliargs

    closed = _closed_fds()
    if 1 in closed:
        return _fail("standard output is closed (`>&-`): run the command with its output on a terminal, a file or "
                     "a pipe", 2)
    cliargs.stdin_closed = 0 in closed
    real_stdout = sys.stdout
    sys.stdout = _Stdout(real_stdout)
    try:
        return _main(argv)
    finally:
        sys.stdout = real_stdout


def _main(argv: Sequence[str] | None) -> int:
    """Every error a command can meet becomes one line and an exit code here, so that no command can forget one."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help, --version
            sys.stdout.flush()
            return int(done.code or 0)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        # The Kubernetes client's HTTP retries warn on each attempt ("Retrying ... connection refused"); the command
        # reports the outcome in one line, so they show only with --verbose.
        logging.getLogger("urllib3").setLevel(logging.INFO if args.verbose else logging.ERROR)
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except _StdoutError as err:
        _silence_stdout()
        return _fail(str(err), err.exit_code)
    except LabError as err:
        return _fail(str(err), err.exit_code)
    except BrokenPipeError:
        # The reader went away (`python -m lab plan --shell | head`): not an error of ours.
        _silence_stdout()
        return 141
    except OSError as err:
        return _fail(describe_os_error(err), 1)
    except UnicodeError as err:
        return _fail(f"text that is not valid UTF-8 ({err}); pass UTF-8 input and paths", 2)
    except RecursionError:
        return _fail("the input is nested too deeply to read (more than a thousand levels); pass the document "
                     "the tool produced, not a generated one", 2)
    except MemoryError:
        return _fail(f"out of memory reading the input; inputs of up to {MAX_INPUT // (1024 * 1024)} MiB are read", 1)
    except KeyboardInterrupt:
        print("lab: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
