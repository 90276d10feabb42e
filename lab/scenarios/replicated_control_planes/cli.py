"""The replicated-control-planes scenario's own subcommands: `lab corefile` and `lab serviceentry`, the write-up's
two hand-made objects as filters a person can run (the engine's lab/cli.py adds them through
`Scenario.add_commands`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lab.cliargs import Once, port, read_input
from lab.scenarios.replicated_control_planes import corefile
from lab.scenarios.replicated_control_planes import serviceentry as se


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    _add_corefile(sub)
    _add_serviceentry(sub)


def _add_corefile(sub: argparse._SubParsersAction[Any]) -> None:
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
        text = read_input(a.file)
        out = corefile.patch(text, a.forward, aaaa_guard=a.aaaa_guard) if a.verb == "patch" else corefile.unpatch(text)
        sys.stdout.write(out)
        return 0

    p.set_defaults(func=run)


def _add_serviceentry(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serviceentry", help="render the httpbin.bar.global ServiceEntries")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    r = verbs.add_parser(
        "render", help="print a `.global` ServiceEntry as YAML",
        description="With --endpoint ADDR:PORT: the calling cluster's ServiceEntry (remote gateway address and the "
                    "port reaching its 15443). With --endpoint NAME.NS.svc.cluster.local: the serving cluster's.")
    r.add_argument("--host", required=True, help="<name>.<namespace>.global, e.g. httpbin.bar.global")
    r.add_argument("--port", type=port, default=8000, help="the service port, 1-65535 (default 8000)")
    r.add_argument("--port-name", default="http1", help="the port name (default http1)")
    r.add_argument("--vip", required=True, action=Once, help="the VIP in this cluster, from 240.0.0.0/4 (once)")
    r.add_argument("--endpoint", required=True, action=Once, metavar="ADDR:PORT|HOSTNAME",
                   help="the remote gateway's node IP and the nodePort of its 15443, or NAME.NS.svc.cluster.local")
    r.add_argument("--namespace", help="metadata.namespace (default: none, `kubectl -n` decides)")

    def run(a: argparse.Namespace) -> int:
        svc = se.RemoteService.from_host(a.host, port=a.port, port_name=a.port_name)
        sys.stdout.write(se.to_yaml(se.render_for_endpoint(svc, a.vip, a.endpoint, namespace=a.namespace)))
        return 0

    r.set_defaults(func=run)
