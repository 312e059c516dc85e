"""Collect: accept messages from real clients and files, and land them durably."""
