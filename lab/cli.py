"""Command line: argument parsing and output only; the work is done by the domain modules.

Each command group has its own `_add_<group>` function, so groups can grow independently.
A LabError becomes one line on stderr and its exit code; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lab import __version__
from lab.errors import LabError, UsageError


def _read_input(path: str | None) -> str:
    if path in (None, "-"):
        return sys.stdin.read()
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


# --- mesh building blocks (certs, corefile, serviceentry) -------------------------------------------------
def _add_certs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help="shared-root CA material for the clusters")
    p.set_defaults(func=lambda a: _not_yet("certs"))


def _add_corefile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corefile", help="add or remove the CoreDNS `global` server block")
    p.set_defaults(func=lambda a: _not_yet("corefile"))


def _add_serviceentry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serviceentry", help="render the httpbin.bar.global ServiceEntries")
    p.set_defaults(func=lambda a: _not_yet("serviceentry"))


# --- diagnostics (classify, configdump, doctor) ----------------------------------------------------------
def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="say what a curl/Envoy probe result means")
    p.set_defaults(func=lambda a: _not_yet("classify"))


def _add_configdump(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configdump", help="summarise an Envoy /config_dump for a host and port")
    p.add_argument("file", metavar="FILE", help="the /config_dump JSON ('-' for standard input)")
    p.add_argument("--host", default=None, help="host to look for (default: every *.global host)")
    p.add_argument("--port", type=int, default=None, help="service port (e.g. 8000)")

    def run(a: argparse.Namespace) -> int:
        import json

        from lab import configdump

        try:
            text = _read_input(a.file)
        except OSError as err:
            raise UsageError(f"cannot read {a.file}: {err.strerror}; pass a file saved from /config_dump") from err
        dump = configdump.load(text, source=a.file)
        print(json.dumps(configdump.analyze(dump, a.host, a.port), indent=2))
        return 0

    p.set_defaults(func=run)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="walk the path sleep -> httpbin and name the first broken hop")
    p.add_argument("--profile", default="default", help="lab profile (default: default)")
    p.add_argument("--lab-home", default=None, help="lab state directory (default: $LAB_HOME or ./.lab)")
    p.add_argument("--json", action="store_true", help="print the hops as JSON")

    def run(a: argparse.Namespace) -> int:
        from lab import doctor

        hops = doctor.run(profile=a.profile, lab_home=a.lab_home)
        print(doctor.render_json(hops) if a.json else doctor.render_text(hops))
        return doctor.exit_code(hops)

    p.set_defaults(func=run)


# --- provisioning (plan, up, down, status, uninstall) ----------------------------------------------------
def _add_provisioning(sub: argparse._SubParsersAction) -> None:
    for name, text in [
        ("plan", "print the steps `lab up` runs"),
        ("up", "build the lab (idempotent)"),
        ("down", "delete the clusters the lab created"),
        ("status", "show what the lab has"),
        ("uninstall", "remove the apps and ServiceEntries (the write-up's uninstall section)"),
    ]:
        p = sub.add_parser(name, help=text)
        p.set_defaults(func=lambda a, n=name: _not_yet(n))


def _not_yet(name: str) -> int:
    raise LabError(f"`lab {name}` is not available in this version")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"istio-multicluster-lab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command and retry")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_provisioning, _add_certs, _add_corefile, _add_serviceentry, _add_classify,
                _add_configdump, _add_doctor):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except LabError as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
