"""Istio 1.30 "multi-primary on different networks" on two kind clusters (issue 11)."""
