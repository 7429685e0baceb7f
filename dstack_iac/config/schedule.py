"""`schedule: {cron: ...}`: cron expressions in UTC, read with croniter (pallets-eco).

Only the five standard fields (minute hour day-of-month month day-of-week) and the `@hourly`,
`@daily`, `@weekly`, `@monthly`, `@yearly` shorthands are accepted: croniter also reads a
seconds field, which no other cron does, so a sixth field is refused as the mistake it usually is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

SHORTHANDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")


class CronError(ValueError):
    def __init__(self, index: int | None, message: str):
        super().__init__(message)
        self.index = index


def cron_expressions(value: Any) -> list[str]:
    """One expression or a list of them, each checked; CronError names the bad one."""
    from croniter import croniter

    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise CronError(None, 'cron must be an expression, e.g. "0 3 * * *" (03:00 UTC daily), or a list of them')
    expressions = []
    for index, item in enumerate(items):
        where = index if not isinstance(value, str) else None
        if not isinstance(item, str):
            raise CronError(where, f"{item!r} is not a cron expression: write it as a quoted string")
        text = " ".join(item.split())
        if text.lower() not in SHORTHANDS:
            fields = text.split(" ")
            if len(fields) != 5:
                raise CronError(where, f"{item!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}: a cron "
                                       "expression has 5 (minute hour day-of-month month day-of-week), e.g. "
                                       '"30 2 * * 1-5"')
            if not croniter.is_valid(text):
                raise CronError(where, f"{item!r} is not a valid cron expression (minute 0-59, hour 0-23, "
                                       "day-of-month 1-31, month 1-12, day-of-week 0-6; * , - / allowed)")
        expressions.append(text)
    return list(dict.fromkeys(expressions))


def next_start(expressions: Sequence[str], after: datetime | None = None) -> datetime:
    """The first trigger of any expression strictly after `after` (now), in UTC."""
    from croniter import croniter

    start = after or datetime.now(timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return min(croniter(expression, start).get_next(datetime) for expression in expressions)
