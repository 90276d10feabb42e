"""Command line: argument parsing and output only; the work is done by the domain modules.

Each command group has its own `_add_<group>` function, so groups can grow independently.
A LabError becomes one line on stderr and its exit code; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lab import __version__
from lab.errors import LabError, UsageError


def _read_input(path: str | None) -> str:
    """FILE or standard input with every byte kept (text-mode stdin would turn CRLF into LF); a file that cannot be
    read, or is not UTF-8, is a one-line usage error."""
    try:
        if path in (None, "-"):
            # A replaced sys.stdin (tests, embedding) may have no binary buffer.
            raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
        return raw.decode("utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"{path or 'standard input'} is not UTF-8 text ({err.reason} at byte {err.start})") from err


# --- mesh building blocks (certs, corefile, serviceentry) -------------------------------------------------
def _add_certs(sub: argparse._SubParsersAction) -> None:
    from lab import certs
    from lab.errors import UsageError
    from lab.profile import load_profile

    p = sub.add_parser("certs", help="shared-root CA material for the clusters (the cacerts secret)")
    csub = p.add_subparsers(dest="certs_command", required=True, metavar="ACTION")

    gen = csub.add_parser("generate", help="a root CA and one intermediate CA per cluster (Istio's cacerts layout)")
    gen.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="writes DIR/root-cert.pem, DIR/root-key.pem and DIR/<cluster>/ (an existing root is reused)")
    gen.add_argument("--clusters", metavar="NAMES",
                     help="comma-separated cluster names (default: the profile's clusters)")

    def generate(a: argparse.Namespace) -> int:
        names = a.clusters.split(",") if a.clusters else [c.name for c in load_profile().clusters]
        certs.generate(a.out, names)
        root = a.out / certs.ROOT_CERT
        print(f"root: {root} (sha256 {certs.root_fingerprint(root.read_bytes())}); "
              f"its key {a.out / certs.ROOT_KEY} stays here, keep it private")
        for name in names:
            print(f"{name.strip()}: {a.out / name.strip()} ({', '.join(certs.CACERTS_FILES)})")
        return 0

    gen.set_defaults(func=generate)

    chk = csub.add_parser("check", help="exit 0 if both directories share one root and both chains verify, else 1")
    chk.add_argument("dir_a", type=Path, metavar="DIR_A")
    chk.add_argument("dir_b", type=Path, metavar="DIR_B")

    def check(a: argparse.Namespace) -> int:
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

    chk.set_defaults(func=check)


def _add_corefile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corefile", help="add or remove the CoreDNS `global` server block",
                       description="Read a Corefile (FILE or standard input), write the result to standard output.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    pp = verbs.add_parser("patch", help="add (or replace) the `global:53` block forwarding to istiocoredns")
    pp.add_argument("--forward", required=True, metavar="IP", help="the istiocoredns ClusterIP (an IP literal)")
    pp.add_argument("--no-aaaa-guard", dest="aaaa_guard", action="store_false",
                    help="leave out the AAAA guard (musl clients then fail to resolve .global; docs/corefile.md)")
    pp.add_argument("file", nargs="?", metavar="FILE", help="Corefile to read (default: standard input)")
    up = verbs.add_parser("unpatch", help="remove the block serving `global`, leaving the rest byte-identical")
    up.add_argument("file", nargs="?", metavar="FILE", help="Corefile to read (default: standard input)")

    def run(a: argparse.Namespace) -> int:
        from lab import corefile

        text = _read_input(a.file)
        out = corefile.patch(text, a.forward, aaaa_guard=a.aaaa_guard) if a.verb == "patch" else corefile.unpatch(text)
        sys.stdout.write(out)
        return 0

    p.set_defaults(func=run)


def _add_serviceentry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serviceentry", help="render the httpbin.bar.global ServiceEntries")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    r = verbs.add_parser(
        "render", help="print a `.global` ServiceEntry as YAML",
        description="With --endpoint ADDR:PORT: the calling cluster's ServiceEntry (remote gateway address and the "
                    "port reaching its 15443). With --endpoint NAME.NS.svc.cluster.local: the serving cluster's.")
    r.add_argument("--host", required=True, help="<name>.<namespace>.global, e.g. httpbin.bar.global")
    r.add_argument("--port", type=int, default=8000, help="the service port (default 8000)")
    r.add_argument("--port-name", default="http1", help="the port name (default http1)")
    r.add_argument("--vip", required=True, help="the VIP in this cluster, from 240.0.0.0/4")
    r.add_argument("--endpoint", required=True, metavar="ADDR:PORT|HOSTNAME")
    r.add_argument("--namespace", help="metadata.namespace (default: none, `kubectl -n` decides)")

    def run(a: argparse.Namespace) -> int:
        from lab import serviceentry as se

        svc = se.RemoteService.from_host(a.host, port=a.port, port_name=a.port_name)
        sys.stdout.write(se.to_yaml(se.render_for_endpoint(svc, a.vip, a.endpoint, namespace=a.namespace)))
        return 0

    r.set_defaults(func=run)


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

        output = _read_input(a.file)
        log = _read_input(a.access_log) if a.access_log else None
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
    p.add_argument("file", metavar="FILE", help="the /config_dump JSON ('-' for standard input)")
    p.add_argument("--host", default=None, help="host to look for (default: every *.global host)")
    p.add_argument("--port", type=int, default=None, help="service port (e.g. 8000)")

    def run(a: argparse.Namespace) -> int:
        import json

        from lab import configdump
        text = _read_input(a.file)
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


def _add_faults(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faults", help="the documented-failure catalogue (lab/faults.py)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    t = verbs.add_parser("table", help="print the catalogue as the README's Markdown table")
    t.add_argument("--write", metavar="FILE", help="replace the table between FILE's two marker lines instead")

    def table(a: argparse.Namespace) -> int:
        from lab import faults

        if not a.write:
            sys.stdout.write(faults.catalogue_table())
            return 0
        new = faults.with_catalogue_table(_read_input(a.write))
        tmp = Path(f"{a.write}.tmp")
        try:
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, a.write)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write {a.write}: {err.strerror}") from err
        print(f"{a.write}: fault table written from lab/faults.py")
        return 0

    t.set_defaults(func=table)


# --- provisioning (plan, up, down, status, uninstall) ----------------------------------------------------
def _add_provisioning(sub: argparse._SubParsersAction) -> None:
    """plan/up/down/status/uninstall: parsing and output only; lab.plan and lab.executor do the work."""

    def home_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", metavar="DIR", help="the lab's state directory (default: $LAB_HOME, else ./.lab)")

    def profile_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="default", metavar="NAME", help="default or writeup (default: default)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a profile value, e.g. --set istio_version=1.7.3 (repeatable)")

    def run_executor(name: str, a: argparse.Namespace) -> int:
        from lab import executor

        return int(getattr(executor, name)(home=a.home))

    def chosen_profile(a: argparse.Namespace) -> tuple[object, dict[str, str]]:
        from lab.profile import load_profile, parse_overrides

        overrides = parse_overrides(a.overrides)
        return load_profile(a.profile, overrides), overrides

    def plan(a: argparse.Namespace) -> int:
        from lab import plan as lab_plan
        from lab.state import lab_home

        profile, _ = chosen_profile(a)
        # $ISTIO_DIR in the script: where `lab up` unpacks the release (nothing is downloaded here)
        paths = lab_plan.Paths(lab_home(a.home), lab_plan.default_istio_dir(profile))
        steps = (lab_plan.build_uninstall if a.uninstall else lab_plan.build)(profile, paths)
        title = "lab uninstall" if a.uninstall else "lab up"
        # the write-up ends its uninstall section by unsetting the variables it exported
        out = (lab_plan.render_shell(steps, paths, title=title, unset=a.uninstall) if a.shell
               else lab_plan.to_json(steps) if a.json else lab_plan.render_text(steps))
        sys.stdout.write(out)
        return 0

    p = sub.add_parser("plan", help="print the steps `lab up` runs (with --shell: as a bash script to replay)")
    profile_args(p)
    home_arg(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--shell", action="store_true", help="print a bash script a person can replay by hand")
    fmt.add_argument("--json", action="store_true", help="print the steps as JSON")
    p.add_argument("--uninstall", action="store_true", help="the write-up's uninstall section instead of `up`")
    p.set_defaults(func=plan)

    def up(a: argparse.Namespace) -> int:
        from lab import executor

        profile, overrides = chosen_profile(a)
        return executor.up(profile, home=a.home, overrides=overrides)  # type: ignore[arg-type]

    p = sub.add_parser("up", help="build the lab and prove curl httpbin.bar.global:8000 returns 200 (re-runnable)")
    profile_args(p)
    home_arg(p)
    p.set_defaults(func=up)

    for name, text in [
        ("down", "delete the clusters this lab created (confirmed by kind's node label), nothing else"),
        ("status", "show clusters, Istio, istiocoredns, apps, ServiceEntries and the last probe"),
        ("uninstall", "remove the apps, ServiceEntries and namespaces (the write-up's uninstall section)"),
    ]:
        p = sub.add_parser(name, help=text)
        home_arg(p)
        # `make lab-down LAB_ARGS=...` passes what `make lab-up` got; the lab's recorded profile decides here.
        p.add_argument("--profile", help=argparse.SUPPRESS)
        p.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
        p.set_defaults(func=lambda a, n=name: run_executor(n, a))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"istio-multicluster-lab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command and retry")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_provisioning, _add_certs, _add_corefile, _add_serviceentry, _add_classify,
                _add_configdump, _add_doctor, _add_faults):
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
    except BrokenPipeError:
        # The reader went away (`python -m lab plan --shell | head`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("lab: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
