"""istio-multicluster-lab: Istio 1.7 replicated control planes (.global) on two kind clusters."""

__version__ = "0.1.0"
