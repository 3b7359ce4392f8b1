"""User-fixable errors: one line saying what is wrong, where, and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix. The CLI prints ``str(err)`` as one line and exits with code 2."""

    def __init__(self, what: str, fix: str, where: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        where = f" ({self.where})" if self.where else ""
        text = f"{self.what}{where}. To fix: {self.fix}"
        return " ".join(text.split())  # always exactly one line
