"""Strict validation of every manifest the lab applies: Istio kinds against the own schemas of the Istio version the
scenario installs (1.7.8 by default, 1.30.3 for multi-primary-multi-network: `istio_version=`), Kubernetes kinds
against the Kubernetes OpenAPI schemas that `kubernetes-validate` bundles (and the 1.36 set kept in tests/data).

Why strict: neither the cluster nor Istio 1.7 would tell us about a misspelt field. The 1.7.8 CRDs are
`apiextensions.k8s.io/v1`, whose structural schemas make the API server *prune* unknown fields silently, and istiod
reads the spec with `gogoprotomarshal.ApplyJSON`, which retries with `AllowUnknownFields` (istio/istio 1.7.8
`pkg/util/gogoprotomarshal/protomarshal.go`). A ServiceEntry with `adresses:` would be accepted and have no VIP.

- Istio kinds (`*.istio.io`): the CRD `openAPIV3Schema` of the served version, from
  `tests/data/istio-1.7.8/crd-all.gen.yaml` (istio/istio `manifests/charts/base/crds/crd-all.gen.yaml`@1.7.8). The
  CRDs do not set `additionalProperties`; the lab sets `additionalProperties: false` on every schema object that
  declares `properties`, so unknown fields are refused. Objects that declare no properties (`status`, protobuf
  `Struct` values such as EnvoyFilter patches, marked `x-kubernetes-preserve-unknown-fields`) stay open: their
  content is free-form by design. `nullable: true` is honoured. `metadata` is checked as Kubernetes ObjectMeta.
- IstioOperator (`install.istio.io/v1alpha1`): its CRD in 1.7.8 (`manifests/charts/base/crds/crd-operator.yaml`)
  declares `spec` as `x-kubernetes-preserve-unknown-fields`, so the CRD gives nothing to check. istioctl 1.7.8 itself
  is strict: it unmarshals the spec, `values` and `meshConfig` with jsonpb without unknown fields
  (`operator/pkg/apis/istio/common.go`, `operator/pkg/validate/validate_values.go`, `validate.go`
  validateMeshConfig). The lab mirrors that for the messages on the paths it writes (IstioOperatorSpec, components,
  gateways, KubernetesResourcesSpec, ServiceSpec/ServicePort, Values, GlobalConfig, MeshConfig): their field lists are
  in `tests/data/istio-1.7.8/istiooperator-fields.json`, extracted from the protos named there. Deeper messages are
  accepted as objects without field checks.
- Kubernetes kinds: the `-strict` schema set of `kubernetes-validate` (every object `additionalProperties: false`)
  for the bundled version nearest the cluster's minor. It bundles 1.20-1.28; a 1.19 cluster (the `writeup` profile)
  is checked against 1.20, the nearest, and the message says so. Kubernetes 1.36 (the Istio 1.30 scenario's) comes
  from `tests/data/kubernetes-1.36/_definitions.json`, the same strict set of kubernetes-validate 1.37.0, which no
  longer bundles 1.20-1.24 (its README says why it is a copy).
- Istio 1.30.3 (`istio_version="1.30.3"`): the CRDs of `tests/data/istio-1.30.3/crd-all.gen.yaml`
  (`manifests/charts/base/files/crd-all.gen.yaml`@1.30.3) as above. 1.30 has no IstioOperator CRD; istioctl 1.30.3
  decodes the file with encoding/json DisallowUnknownFields into Go structs (`operator/pkg/apis/types.go`, whose
  `k8s` fields are Kubernetes types), `values` with jsonpb (strict) and `meshConfig` leniently (it drops unknown
  fields); the lab checks all three strictly from `tests/data/istio-1.30.3/istiooperator-fields.json`, with the
  `k8s` fields checked against the Kubernetes definitions of the version validated against.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from lab.errors import ValidationError

ISTIO_VERSION = "1.7.8"  # the default: the first scenario's
ISTIO_VERSIONS = ("1.7.8", "1.30.3")
_TESTDATA = Path(__file__).resolve().parents[1] / "data"
_K8S_SCHEMA_BASE = "https://kubernetes-validate.invalid/"  # a made-up base URI for the bundled schema files
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _istio_data(istio_version: str) -> Path:
    if istio_version not in ISTIO_VERSIONS:
        raise ValidationError(f"no Istio schemas for {istio_version} (have {', '.join(ISTIO_VERSIONS)})")
    return _TESTDATA / f"istio-{istio_version}"


# --- Kubernetes ----------------------------------------------------------------------------------------------

def _k8s_schema_root() -> Any:
    return resources.files("kubernetes_validate") / "kubernetes-json-schema"


def _k8s_data_dir(version: str) -> Path:
    """Where a Kubernetes schema set kept as test data lives (`tests/data/kubernetes-1.36/`)."""
    return _TESTDATA / f"kubernetes-{version}"


@functools.cache
def _k8s_data_versions() -> frozenset[str]:
    return frozenset(p.name.removeprefix("kubernetes-") for p in _TESTDATA.glob("kubernetes-*")
                     if (p / "_definitions.json").is_file())


@functools.cache
def k8s_versions() -> tuple[str, ...]:
    """The Kubernetes minors there are strict schemas for: kubernetes-validate's (`1.20` ... `1.28`) and those kept
    in tests/data (`1.36`)."""
    found = set()
    for entry in _k8s_schema_root().iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if m:
            found.add((int(m.group(1)), int(m.group(2))))
    found |= {tuple(int(x) for x in v.split(".")) for v in _k8s_data_versions()}  # type: ignore[misc]
    return tuple(f"{a}.{b}" for a, b in sorted(found))


def k8s_schema_version(k8s_version: str) -> str:
    """The bundled minor used for `k8s_version`: the same minor, else the nearest bundled one (1.19 -> 1.20)."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?", k8s_version.strip())
    if not m:
        raise ValidationError(f"Kubernetes version {k8s_version!r} is not MAJOR.MINOR (e.g. 1.21)")
    want = (int(m.group(1)), int(m.group(2)))
    have = [tuple(int(x) for x in v.split(".")) for v in k8s_versions()]
    best = min(have, key=lambda v: (abs((v[0] - want[0]) * 100 + v[1] - want[1]), v))
    return f"{best[0]}.{best[1]}"


@functools.cache
def _k8s_registry(version: str) -> tuple[Registry, str]:
    """The registry holding the version's definitions, and the URI its definitions are referenced under
    (`<uri>#/definitions/<name>` for kubernetes-validate 1.28's Draft 4 files, `#/$defs/` for the 2020-12 set)."""
    if version in _k8s_data_versions():
        defs = json.loads((_k8s_data_dir(version) / "_definitions.json").read_text())
        return Registry().with_resource(defs["$id"], Resource.from_contents(defs)), defs["$id"]
    base = f"{_K8S_SCHEMA_BASE}v{version}.0-local-strict/"
    defs = json.loads((_k8s_schema_root() / f"v{version}.0-local-strict" / "_definitions.json").read_text())
    return Registry().with_resource(base + "_definitions.json", Resource.from_contents(defs, DRAFT4)), \
        base + "_definitions.json"


def _k8s_ref(version: str, definition: str) -> dict[str, str]:
    """A `$ref` to one Kubernetes definition of `version`."""
    _, uri = _k8s_registry(version)
    pointer = "$defs" if version in _k8s_data_versions() else "definitions"
    return {"$ref": f"{uri}#/{pointer}/{definition}"}


@functools.cache
def _k8s_gvk_index(version: str) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> definition name, from the definitions' `x-kubernetes-group-version-kind` (the 2020-12
    set kept in tests/data has no per-kind files to look names up in)."""
    defs = json.loads((_k8s_data_dir(version) / "_definitions.json").read_text())["$defs"]
    index: dict[tuple[str, str], str] = {}
    for name, schema in defs.items():
        if "apiVersion" not in schema.get("properties", {}):
            continue  # ListOptions, DeleteOptions, WatchEvent...: carry every group's gvk but are no objects
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            group_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            index.setdefault((group_version, gvk["kind"]), name)
    return index


def _k8s_definition(version: str, api_version: str, kind: str) -> str | None:
    if version in _k8s_data_versions():
        return _k8s_gvk_index(version).get((api_version, kind))
    # kubernetes-validate names files `<kind>-<group prefix>-<version>.json` (its utils.validate: the group's first
    # label, e.g. apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1; core v1 -> v1).
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _k8s_schema_root() / f"v{version}.0-local-strict" / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text()).get("$ref", "")
    return ref.split("#/definitions/", 1)[1] if "#/definitions/" in ref else None


def _k8s_validator_class(version: str) -> type[jsonschema.protocols.Validator]:
    return jsonschema.Draft202012Validator if version in _k8s_data_versions() else jsonschema.Draft4Validator


def _k8s_validator(version: str, definition: str) -> jsonschema.protocols.Validator:
    registry, _ = _k8s_registry(version)
    return _k8s_validator_class(version)(_k8s_ref(version, definition), registry=registry)


def validate_k8s(obj: dict[str, Any], k8s_version: str = "1.21") -> None:
    """Validate a Kubernetes object strictly (unknown fields refused) against the bundled schema nearest
    `k8s_version`; ValidationError naming the object and every problem."""
    _raise(_name(obj), _k8s_problems(obj, k8s_version))


def _k8s_problems(obj: dict[str, Any], k8s_version: str) -> list[str]:
    problems = _type_meta_problems(obj)
    if problems:
        return problems
    version = k8s_schema_version(k8s_version)
    where = f"Kubernetes {version}" + ("" if _same_minor(k8s_version, version) else
                                       f" (the bundled schema nearest {k8s_version})")
    definition = _k8s_definition(version, obj["apiVersion"], obj["kind"])
    if definition is None:
        return [f"{where} has no kind {obj['kind']} in {obj['apiVersion']}"]
    found = _problems(_k8s_validator(version, definition), obj)
    return found if not found or _same_minor(k8s_version, version) else [*found, f"(checked against {where})"]


def _same_minor(asked: str, used: str) -> bool:
    return ".".join(asked.strip().lstrip("v").split(".")[:2]) == used


# --- Istio CRDs ----------------------------------------------------------------------------------------------

def _strict(node: Any) -> Any:
    """A copy of an OpenAPI v3 schema with unknown fields refused wherever properties are declared."""
    if isinstance(node, list):
        return [_strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in node:
        out["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


@functools.cache
def _istio_crd_schemas(istio_version: str = ISTIO_VERSION) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, for every served version of every CRD of the version."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in yaml.safe_load_all((_istio_data(istio_version) / "crd-all.gen.yaml").read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return out


def istio_kinds(istio_version: str = ISTIO_VERSION) -> list[tuple[str, str]]:
    """Every (apiVersion, kind) the lab validates as an Istio kind of that Istio version."""
    return sorted([*_istio_crd_schemas(istio_version), (IOP_API_VERSION, "IstioOperator")])


def _with_type_meta(schema: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    root = copy.deepcopy(schema)
    root["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": metadata,
        **root.get("properties", {}),
    }
    root["additionalProperties"] = False
    return root


# --- IstioOperator -------------------------------------------------------------------------------------------

IOP_API_VERSION = "install.istio.io/v1alpha1"
_STRICT_MESSAGES = ("IstioOperatorSpec", "IstioComponentSetSpec", "BaseComponentSpec", "ComponentSpec",
                    "ExternalComponentSpec", "GatewaySpec", "KubernetesResourcesSpec", "ServiceSpec", "ServicePort",
                    "EnvVar", "Values", "GlobalConfig", "MeshConfig")
# How a proto field type reads in YAML. istioctl's Type* wrappers (operator.proto) are free-form or int-or-string.
_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "TypeBoolValueForPB": {"type": "boolean"},
    "int32": {"type": "integer"},
    "uint32": {"type": "integer", "minimum": 0},
    "google.protobuf.Duration": {"type": "string"},
    "TypeIntOrStringForPB": {"type": ["integer", "string"]},
    "TypeInterface": {},
    "TypeMapStringInterface": {"type": "object"},
    "TypeSliceOfMapStringInterface": {"type": "array", "items": {"type": "object"}},
    "map<string,string>": {"type": "object", "additionalProperties": {"type": "string"}},
    # 1.30's values_types.proto and mesh protos
    "google.protobuf.Value": {},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Int32Value": {"type": "integer"},
}
# Fields whose message is validated as another message than its proto type says (istioctl validates `values` as
# Values and `meshConfig` as MeshConfig, operator/pkg/validate/validate.go DefaultValidations).
# In 1.30 both are json.RawMessage in operator/pkg/apis/types.go, decoded as apis.Values and MeshConfig by
# operator/pkg/apis/validation/validation.go validateValues and validateMeshConfig.
_FIELD_MESSAGE = {("IstioOperatorSpec", "mesh_config"): "MeshConfig", ("IstioOperatorSpec", "values"): "Values",
                  ("IstioOperatorSpec", "meshConfig"): "MeshConfig"}
_MESH_ENUMS = ("IngressControllerMode", "AuthPolicy", "AccessLogEncoding", "H2UpgradePolicy",
               "InboundInterceptionMode", "TracingServiceName", "AuthenticationPolicy")
# Values fields whose Go name istioctl rewrites to the name values.yaml and the charts use (Istio 1.7.8
# operator/pkg/apis/istio/fixup_structs/main.go valuesNameMapping; values_types.pb.go then carries
# `name=proxy_init` / `json:"proxy_init"`): the default profile itself writes `global.proxy_init`, and the injection
# template reads `.Values.global.proxy_init.image`.
_VALUES_NAME_MAPPING = {"proxyInit": "proxy_init", "istioEgressgateway": "istio-egressgateway",
                        "istioIngressgateway": "istio-ingressgateway"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@functools.cache
def _iop_schema(istio_version: str = ISTIO_VERSION, k8s_version: str = "1.21") -> dict[str, Any]:
    data = json.loads((_istio_data(istio_version) / "istiooperator-fields.json").read_text())
    messages = data["messages"]
    # 1.7.8: the messages the lab names (its file lists exactly those); 1.30.3: every message its file lists.
    strict = _STRICT_MESSAGES if istio_version == ISTIO_VERSION else tuple(messages)
    json_names: dict[str, dict[str, str]] = data.get("json_names", {})
    defs: dict[str, dict[str, Any]] = {}
    for msg in strict:
        props: dict[str, dict[str, Any]] = {}
        for field, ptype in messages[msg]["fields"]:
            repeated = ptype.startswith("repeated ")
            base = ptype.removeprefix("repeated ")
            target = _FIELD_MESSAGE.get((msg, field), base)
            if target in strict:
                item: dict[str, Any] = {"$ref": f"#/definitions/{target}"}
            elif base.startswith("k8s:"):
                # operator/pkg/apis/types.go KubernetesResources: Kubernetes types, decoded strictly too
                item = _k8s_ref(k8s_schema_version(k8s_version), base.removeprefix("k8s:"))
            elif base in _SCALARS:
                item = _SCALARS[base]
            elif base in _MESH_ENUMS:
                item = {"type": ["string", "integer"]}
            elif m := re.fullmatch(r"map<string,(\w+)>", base):
                value = m.group(1)
                item = {"type": "object", "additionalProperties":
                        {"$ref": f"#/definitions/{value}"} if value in strict else {}}
            else:
                item = {"type": "object"}  # a message the lab does not write: an object, fields unchecked
            schema = {"type": "array", "items": item} if repeated else item
            # jsonpb accepts the proto field name and its lowerCamelCase JSON name.
            props[field] = schema
            props[_camel(field)] = schema
            if field in _VALUES_NAME_MAPPING and istio_version == ISTIO_VERSION:
                props[_VALUES_NAME_MAPPING[field]] = schema
            if field in json_names.get(msg, {}):  # an explicit json_name (1.30: `istio-ingressgateway`)
                props[json_names[msg][field]] = schema
        defs[msg] = {"type": "object", "properties": props, "additionalProperties": False}
    return {
        "definitions": defs,
        "type": "object",
        "properties": {"spec": {"$ref": "#/definitions/IstioOperatorSpec"}, "status": {"type": "object"}},
    }


# --- the public calls ----------------------------------------------------------------------------------------

@functools.cache
def _istio_validator(api_version: str, kind: str, k8s_version: str,
                     istio_version: str = ISTIO_VERSION) -> jsonschema.protocols.Validator | None:
    version = k8s_schema_version(k8s_version)
    registry, _ = _k8s_registry(version)
    meta = _k8s_ref(version, OBJECT_META)
    if (api_version, kind) == (IOP_API_VERSION, "IstioOperator"):
        # istioctl files often carry no metadata at all
        schema = _with_type_meta(_iop_schema(istio_version, version), meta)
    else:
        crd = _istio_crd_schemas(istio_version).get((api_version, kind))
        if crd is None:
            return None
        schema = _with_type_meta(crd, {"allOf": [meta, {"required": ["name"]}]})
        schema["required"] = sorted({*schema.get("required", []), "metadata"})
    # Draft 7 beside kubernetes-validate 1.28's Draft 4 files (as before); 2020-12 beside the 1.36 set
    cls = jsonschema.Draft202012Validator if version in _k8s_data_versions() else jsonschema.Draft7Validator
    return cls(schema, registry=registry)


def validate_istio(obj: dict[str, Any], istio_version: str = ISTIO_VERSION, k8s_version: str = "1.21") -> None:
    """Validate an Istio object strictly against that Istio version's schema for its kind and apiVersion (1.7.8 by
    default); ValidationError naming the object and every problem (unknown fields included)."""
    _raise(_name(obj), _istio_problems(obj, k8s_version, istio_version))


def _istio_problems(obj: dict[str, Any], k8s_version: str = "1.21", istio_version: str = ISTIO_VERSION) -> list[str]:
    problems = _type_meta_problems(obj)
    if problems:
        return problems
    _istio_data(istio_version)  # an unknown version is refused, by name
    validator = _istio_validator(obj["apiVersion"], obj["kind"], k8s_version, istio_version)
    if validator is None:
        known = sorted({k for (_, k) in istio_kinds(istio_version)})
        return [f"Istio {istio_version} serves no {obj['kind']} in {obj['apiVersion']} (kinds: {', '.join(known)})"]
    return _problems(validator, obj)


def is_istio(obj: dict[str, Any]) -> bool:
    group = str(obj.get("apiVersion", "")).split("/")[0]
    return group.endswith(".istio.io")


def validate_manifest(text: str, k8s_version: str = "1.21", istio_version: str = ISTIO_VERSION) -> None:
    """Validate every object of a (multi-document) YAML manifest, dispatching on apiVersion: `*.istio.io` to the
    Istio version's schemas (1.7.8 by default), anything else to Kubernetes'. `kind: List` items are checked one by
    one. One ValidationError names every invalid object and each of its problems."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(f"manifest is not YAML{where}: {getattr(err, 'problem', err)}") from err
    if not docs:
        raise ValidationError("manifest has no objects")
    failures = []
    for i, doc in enumerate(_flatten(docs), start=1):
        name = _name(doc) if isinstance(doc, dict) else f"document {i}"
        if not isinstance(doc, dict):
            problems = [f"is a {type(doc).__name__}, not an object"]
        elif is_istio(doc):
            problems = _istio_problems(doc, k8s_version, istio_version)
        else:
            problems = _k8s_problems(doc, k8s_version)
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
    if failures:
        raise ValidationError(" | ".join(failures))


def _flatten(docs: Iterable[Any]) -> Iterable[Any]:
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and doc.get("apiVersion") == "v1":
            yield from _flatten(doc.get("items") or [])
        else:
            yield doc


def _type_meta_problems(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return [f"is a {type(obj).__name__}, not an object"]
    missing = [k for k in ("apiVersion", "kind") if not isinstance(obj.get(k), str) or not obj.get(k)]
    return [f"{k} is missing" for k in missing]


def _name(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "object"
    meta = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name", "<no name>")
    ns = meta.get("namespace")
    return f"{obj.get('kind', '<no kind>')} {ns + '/' if ns else ''}{name}"


def _problems(validator: jsonschema.protocols.Validator, obj: dict[str, Any]) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{path}: {_message(err)}")
    return out


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(k for k in err.instance if k not in allowed)
        if unknown:
            return f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
    return err.message.replace("\n", " ")


def _raise(name: str, problems: list[str]) -> None:
    if problems:
        raise ValidationError(f"{name}: {'; '.join(problems)}")
