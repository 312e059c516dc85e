"""Interfaces: the tracking API, the management API, the server that hosts both, the CLI."""
