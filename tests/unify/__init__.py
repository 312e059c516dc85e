"""Tests of the unify stage."""
