"""Derive a strict JSON Schema for kind's v1alpha4 Cluster config from kind's Go types (run by hand, not a test).

Usage: git -C <kind checkout> show <tag>:pkg/apis/config/v1alpha4/types.go > types.go
       python derive_schema.py types.go <tag> > v1alpha4-<tag>.schema.json
Reads the struct fields' `json:"..."` tags and the string constants of the named enum types; kind decodes the
config strictly (pkg/internal/apis/config/encoding/load.go, yamlUnmarshalStrict), hence additionalProperties=false.
"""

import json
import re
import sys
from pathlib import Path

SCALARS = {"string": {"type": "string"}, "bool": {"type": "boolean"},
           "int32": {"type": "integer", "minimum": -2**31, "maximum": 2**31 - 1}}


def derive(src: str, tag: str) -> dict:
    structs: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"type (\w+) struct \{(.*?)\n\}", src, re.S):
        fields = {}
        for fm in re.finditer(r'^\s*(\w+)?\s+([\*\[\]\w\.]+)\s+`yaml:"[^"]*" json:"([^"]*)"`', m.group(2), re.M):
            key = fm.group(3).split(",")[0]
            fields[key or "__inline__"] = fm.group(2)
        structs[m.group(1)] = fields
    enums: dict[str, list[str]] = {}
    for m in re.finditer(r'^\s*\w+\s+(\w+)\s*=\s*"([^"]*)"', src, re.M):
        enums.setdefault(m.group(1), []).append(m.group(2))

    def typ(go: str) -> dict:
        go = go.lstrip("*")
        if go.startswith("[]"):
            return {"type": "array", "items": typ(go[2:])}
        if go.startswith("map[string]"):
            return {"type": "object", "additionalProperties": typ(go[len("map[string]"):])}
        if go in SCALARS:
            return SCALARS[go]
        if go in enums:
            return {"type": "string", "enum": enums[go]}
        return {"$ref": f"#/$defs/{go}"}

    defs = {}
    for name, fields in structs.items():
        props = {}
        for key, go in fields.items():
            if key == "__inline__":
                props.update({k: typ(v) for k, v in structs[go].items()})
            else:
                props[key] = typ(go)
        defs[name] = {"type": "object", "properties": props, "additionalProperties": False}
    root = dict(defs["Cluster"])
    root["properties"] = dict(root["properties"], kind={"const": "Cluster"},
                              apiVersion={"const": "kind.x-k8s.io/v1alpha4"})
    root["required"] = ["kind", "apiVersion"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"kind {tag} v1alpha4 Cluster (derived from pkg/apis/config/v1alpha4/types.go)",
            **root, "$defs": defs}


if __name__ == "__main__":
    print(json.dumps(derive(Path(sys.argv[1]).read_text(), sys.argv[2]), indent=2))
