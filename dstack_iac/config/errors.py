"""Configuration errors that point at the file, line, column and field a user has to fix."""

from __future__ import annotations

from dataclasses import dataclass

from dstack_iac.errors import BadInput


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None  # 1-based; None when the value came from the command line or a default
    column: int | None
    field: str  # dotted path, e.g. "resources.gpu" or "commands[1]"
    message: str
    source: str | None = None  # e.g. "--gpu" for a command-line override

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        if self.source:
            where += f" ({self.source})"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "source": self.source,
        }


class ConfigError(BadInput):
    """One or more problems in a configuration, reported together."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        count = len(issues)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the configuration; nothing was provisioned\n"
                         + "\n".join(f"  {issue.render()}" for issue in issues))
