"""`since` / `until`: a time window on `created_at`, given as ISO 8601 or relative to now.

Accepted: an ISO 8601 date or timestamp (`2026-03-01`, `2026-03-01T12:00:00+02:00`; without a time
zone it is taken as UTC), or a relative age `<n><unit>` with unit `m` (minutes), `h` (hours),
`d` (days), `w` (weeks): `7d` means "7 days before now". The window becomes an engine filter
(`{"created_at": {"gte": .., "lte": ..}}`) applied inside the query (a pre-filter: ranking only sees
memories in the window). Anything else raises InvalidArgument naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from clarity.errors import InvalidArgument

_REL = re.compile(r"^\s*(\d{1,7})\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, field: str, now: datetime | None = None) -> datetime:
    """The instant `value` names (see the module doc), timezone-aware."""
    now = now or datetime.now(UTC)
    rel = _REL.match(value)
    if rel:
        return now - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidArgument(f"{field}: {value[:60]!r} is neither an ISO 8601 time (2026-03-01, "
                              "2026-03-01T12:00:00Z) nor a relative age (30m, 24h, 7d, 2w)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def created_range(since: str | None, until: str | None) -> dict[str, Any] | None:
    """The engine filter value for `created_at`, or None when neither bound is given."""
    if since is None and until is None:
        return None
    now = datetime.now(UTC)
    lo = parse_time(since, "since", now) if since is not None else None
    hi = parse_time(until, "until", now) if until is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgument(f"since ({lo.isoformat()}) is after until ({hi.isoformat()})")
    fmt = "%Y-%m-%dT%H:%M:%S.%f+00:00"
    return {"gte": lo.astimezone(UTC).strftime(fmt) if lo else None,
            "lte": hi.astimezone(UTC).strftime(fmt) if hi else None}
