"""Unify: identity resolution and profile building (probabilistic matching in `matching`)."""
