"""The error every stage raises for a request it cannot carry out."""

from __future__ import annotations


class OnefoldError(ValueError):
    """A request Onefold cannot carry out: ``code`` is stable for API clients, ``message``
    says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
