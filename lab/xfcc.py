"""What a server's sidecar says about the client: Envoy's X-Forwarded-Client-Cert header, as httpbin echoes it.

Pure. `header_values` reads one request header out of httpbin's `/headers` answer, `parse_xfcc` splits the header
into its elements, `client_uris` gives the client identities the nearest proxy recorded, `spiffe_id` is a workload's
identity as istiod issues it. One reader for the e2e suite (tests/e2e/helpers.py) and the doctors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADER = "X-Forwarded-Client-Cert"


def header_values(headers: Mapping[str, Any], name: str) -> list[str]:
    """Every value of request header `name` (case-insensitive) in httpbin's `/headers` answer: kennethreitz/httpbin
    (the 1.7 scenario) writes one string per header, go-httpbin (samples/httpbin@1.30.3) a list (`http.Header`)."""
    out: list[str] = []
    for key, value in headers.items():
        if key.lower() == name.lower():
            out += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_xfcc(value: str) -> list[dict[str, list[str]]]:
    """The elements of an X-Forwarded-Client-Cert value, oldest first, each as key (upper case) -> values.

    Envoy's format (envoyproxy/envoy docs/root/configuration/http/http_conn_man/headers.rst,
    x-forwarded-client-cert): elements separated by `,`, each a `;`-separated list of `Key=value` pairs (keys By,
    Hash, Cert, Chain, Subject, URI, DNS, case-insensitive; URI and DNS may repeat); a value with `,` or `;` in it is
    double-quoted (Subject="..."), and the quotes are not part of the value. With APPEND_FORWARD the proxy
    nearest the server appends the last element."""
    elements: list[dict[str, list[str]]] = []
    for raw in _split_outside_quotes(value, ","):
        if not raw.strip():
            continue
        element: dict[str, list[str]] = {}
        for pair in _split_outside_quotes(raw, ";"):
            key, sep, val = pair.strip().partition("=")
            if not sep:
                continue
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"')
            element.setdefault(key.strip().upper(), []).append(val)
        elements.append(element)
    return elements


def client_uris(value: str) -> list[str]:
    """The client certificate's URI SANs in the last element (the one the proxy nearest the server added); [] when
    there is none. `By` is the server's own identity, never the client's."""
    elements = parse_xfcc(value)
    return list(elements[-1].get("URI", [])) if elements else []


def spiffe_id(namespace: str, service_account: str, trust_domain: str = "cluster.local") -> str:
    """A workload's identity as istiod issues it: spiffe://<trust domain>/ns/<namespace>/sa/<service account>
    (pkg/spiffe/spiffe.go@1.30.3 genSpiffeURI, lines 95-111; meshConfig's default trustDomain cluster.local,
    pkg/config/mesh/mesh.go@1.30.3:80)."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
