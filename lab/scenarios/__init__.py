"""The scenarios: one package each (with its `manifests/<name>/` folder), found by the engine through the
`istio_multicluster_lab.scenarios` entry points (pyproject.toml), never imported by it."""
