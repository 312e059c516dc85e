"""The management API: authenticated, JSON, described by OpenAPI at ``/api/openapi.json``."""
