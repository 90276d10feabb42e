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
from lab.errors import LabError


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
    p = sub.add_parser("classify", help="say what a curl/Envoy probe result means",
                       description="Print the class of a probe result alone on the first line, then the evidence "
                                   "(see docs/classify.md).")
    p.add_argument("file", nargs="?", help="what curl printed (stdout and stderr); standard input if absent or -")
    p.add_argument("--exit-code", type=int, metavar="N", help="curl's exit code, if the output does not show it")
    p.add_argument("--access-log", metavar="FILE", help="Envoy access-log lines for the same request(s)")
    p.add_argument("--each", action="store_true", help="one verdict per request when the output holds several")

    def run(a: argparse.Namespace) -> int:
        from lab import classify
        from lab.errors import UsageError

        try:
            output = _read_input(a.file)
            log = _read_input(a.access_log) if a.access_log else None
        except OSError as err:
            raise UsageError(f"cannot read {err.filename}: {err.strerror}; pass a readable file or use stdin") from err
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


def _add_configdump(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configdump", help="summarise an Envoy /config_dump for a host and port")
    p.set_defaults(func=lambda a: _not_yet("configdump"))


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="walk the path sleep -> httpbin and name the first broken hop")
    p.set_defaults(func=lambda a: _not_yet("doctor"))


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
