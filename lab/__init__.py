"""istio-multicluster-lab: Istio multicluster scenarios on two kind clusters (`python -m lab scenarios` lists them)."""

__version__ = "0.1.0"
