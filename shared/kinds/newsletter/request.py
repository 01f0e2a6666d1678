"""The newsletter request, checked at enqueue: the seed's body as it is.

{"dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
 "selectedSources": [1, 2, 3], "outputFormat": "markdown"}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.core.errors import ValidationError
from shared.core.storable import printable_field
from shared.kinds.newsletter.sources import find_sources

MAX_SPAN_DAYS = 366
MAX_SOURCES = 50
FORMATS = ("markdown", "html")
# The seed's field names, and the only ones a request may hold (a stored extra field would be
# kept whole, for nothing).
REQUEST_FIELDS = ("dateRange", "selectedSources", "outputFormat")
DATE_RANGE_FIELDS = ("from", "to")


@dataclass(frozen=True)
class NewsletterRequest:
    start: date
    end: date
    source_ids: tuple[int, ...]
    output_format: str

    @property
    def window(self) -> tuple[datetime, datetime]:
        """[start of the first day, start of the day after the last) in UTC: both ends inclusive."""
        begin = datetime.combine(self.start, time.min, UTC)
        return begin, datetime.combine(self.end + timedelta(days=1), time.min, UTC)


def _date(value, field: str, problems: list) -> date | None:
    if not isinstance(value, str):
        problems.append((field, "must be a date such as 2025-01-07"))
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append((field, f"{value[:40]!r} is not a real date (YYYY-MM-DD)"))
        return None


def parse_request(payload: dict) -> tuple[NewsletterRequest | None, list[tuple[str, str]]]:
    """The request, or the problems with it (every one of them)."""
    problems: list[tuple[str, str]] = []
    date_range = payload.get("dateRange")
    start = end = None
    if not isinstance(date_range, dict):
        problems.append(("dateRange", 'must be an object {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}'))
    else:
        problems.extend(
            (printable_field(f"dateRange.{field}"), "is not a field of dateRange (its fields: from, to)")
            for field in list(date_range)[:20]
            if field not in DATE_RANGE_FIELDS
        )
        start = _date(date_range.get("from"), "dateRange.from", problems)
        end = _date(date_range.get("to"), "dateRange.to", problems)
        if start and end and start > end:
            problems.append(("dateRange", "from must not be after to"))
        elif start and end and (end - start).days + 1 > MAX_SPAN_DAYS:
            problems.append(("dateRange", f"spans more than {MAX_SPAN_DAYS} days"))
    ids = payload.get("selectedSources")
    if not isinstance(ids, list) or not ids:
        problems.append(("selectedSources", "must be a non-empty list of source ids"))
        ids = []
    elif len(ids) > MAX_SOURCES:
        problems.append(("selectedSources", f"at most {MAX_SOURCES} sources"))
    elif not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31 for i in ids):
        problems.append(("selectedSources", "every source id must be a positive whole number"))
        ids = []
    output_format = payload.get("outputFormat", "markdown")
    if output_format not in FORMATS:
        problems.append(("outputFormat", f"must be one of {', '.join(FORMATS)}"))
    if problems:
        return None, problems
    unique = tuple(dict.fromkeys(ids))
    return NewsletterRequest(start, end, unique, output_format), []


def validate_newsletter(payload: dict, session) -> None:
    """Refuse, naming each problem, a request that cannot make a newsletter."""
    request, problems = parse_request(payload)
    if request is not None:
        found = find_sources(session, list(request.source_ids))
        for source_id in request.source_ids:
            source = found.get(source_id)
            if source is None:
                problems.append(("selectedSources", f"no source with id {source_id}"))
            elif not source.active:
                problems.append(("selectedSources", f"source {source_id} ({source.name}) is disabled"))
    if problems:
        raise ValidationError.of(problems)
