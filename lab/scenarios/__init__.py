"""Scenarios: one package each, independent of one another and of nothing in the engine but its public modules."""
