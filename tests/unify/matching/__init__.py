"""Tests of probabilistic matching."""
