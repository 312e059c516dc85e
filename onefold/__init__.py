"""Onefold: an open-source customer data platform.

The package follows the flow of customer data: ``collect`` lands every input durably,
``store`` is the warehouse underneath, and ``interfaces`` exposes it over HTTP and the CLI.
"""

__version__ = "0.1.0"
