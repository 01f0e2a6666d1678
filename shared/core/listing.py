"""A tenant's jobs, newest first, live and archived, a page at a time.

Pages are keyset-paginated on (created_at, id), both descending, so a page costs an index
range scan whatever its depth, and a job enqueued meanwhile never shifts the next page.
The cursor is opaque to clients: base64url of the last row's position.

A job lives in exactly one of `jobs` and `jobs_archive` (archiving moves it in one
statement), so the list reads both and merges them; a filter on queued or running jobs
only skips the archive, which holds finished jobs alone.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.core.db import Session
from shared.core.errors import ValidationError
from shared.core.jobs import TERMINAL_STATUSES, Job, JobStatus
from shared.core.queue import parse_time, whole_number
from shared.core.settings import ADMIN_TENANT
from shared.core.storable import text_problem

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 200
ALL_STATUSES = tuple(status.value for status in JobStatus)
# A position before every job: the first page starts here.
_START = ("infinity", "ffffffff-ffff-ffff-ffff-ffffffffffff")


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list holds. `tenant` None: every tenant's (the admin's view)."""

    tenant: str | None
    statuses: tuple[str, ...] = ALL_STATUSES
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = DEFAULT_LIMIT
    cursor: tuple[str, str] | None = field(default=None)  # (created_at ISO, id) of the last row seen

    def in_scope(self, job: Job) -> bool:
        """Whether a change to this job concerns the list: its tenant, kind and creation time
        (none of which ever change), whatever its status now."""
        return (
            (self.tenant is None or job.tenant == self.tenant)
            and (self.kind is None or job.kind == self.kind)
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
        )

    def matches(self, job: Job) -> bool:
        return self.in_scope(job) and job.job_status in self.statuses

    @property
    def searches_archive(self) -> bool:
        return any(status in TERMINAL_STATUSES for status in self.statuses)


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def encode_cursor(job: Job) -> str:
    position = json.dumps([job.created_at.isoformat(), job.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[str, str]:
    problem = ValidationError.of([("cursor", "is not a cursor this API gave out (pass nextCursor back as it is)")])
    if len(raw) > MAX_CURSOR_LENGTH:
        raise problem
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return parse_time(created_at).isoformat(), str(uuid.UUID(job_id))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, AttributeError, OverflowError):
        raise problem from None


def _statuses(raw: str | None, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ALL_STATUSES
    wanted = tuple(dict.fromkeys(part.strip() for part in raw.split(",")))
    unknown = [status for status in wanted if status not in ALL_STATUSES]
    if unknown:
        problems.append(("status", f"{unknown[0][:40]!r} is not a status; use {', '.join(ALL_STATUSES)}"))
        return ALL_STATUSES
    return wanted


def _time(name: str, raw: str | None, problems: list[tuple[str, str]]) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        return parse_time(raw)
    except ValueError:
        problems.append((name, "must be an ISO-8601 time such as 2025-01-07T09:00:00Z"))
    except OverflowError:
        problems.append((name, "must be a time between the years 1 and 9999 in UTC"))
    return None


def _limit(raw: str | None, problems: list[tuple[str, str]]) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    number = whole_number(raw)
    if number is None or not 1 <= number <= MAX_LIMIT:
        problems.append(("limit", f"must be a whole number from 1 to {MAX_LIMIT}"))
        return DEFAULT_LIMIT
    return number


def _name(field: str, raw: str | None, problems: list[tuple[str, str]]) -> str | None:
    """A kind or tenant name to filter on: at most 100 characters PostgreSQL can compare."""
    if raw is None or raw == "":
        return None
    problem = text_problem(raw) or ("must be at most 100 characters" if len(raw) > 100 else None)
    if problem:
        problems.append((field, problem))
        return None
    return raw


def _tenant(caller: str, raw: str | None, problems: list[tuple[str, str]]) -> str | None:
    """The caller's own tenant; the admin sees every tenant's, or names one."""
    if caller != ADMIN_TENANT:
        if raw not in (None, "", caller):
            problems.append(("tenant", "only the admin token may list another tenant's jobs"))
        return caller
    return _name("tenant", raw, problems)


def filter_from_query(query: Any, caller: str) -> JobFilter:
    """The list's filter from its query parameters (a mapping with .get), every problem named."""
    problems: list[tuple[str, str]] = []
    statuses = _statuses(query.get("status"), problems)
    kind = _name("kind", query.get("kind"), problems)
    after = _time("createdAfter", query.get("createdAfter"), problems)
    before = _time("createdBefore", query.get("createdBefore"), problems)
    limit = _limit(query.get("limit"), problems)
    tenant = _tenant(caller, query.get("tenant"), problems)
    cursor = None
    if raw_cursor := query.get("cursor"):
        try:
            cursor = decode_cursor(raw_cursor)
        except ValidationError as exc:
            problems.extend((d["field"], d["message"]) for d in exc.details)
    if problems:
        raise ValidationError.of(problems)
    return JobFilter(tenant, statuses, kind, after, before, limit, cursor)


def list_jobs(session: Session, wanted: JobFilter) -> Page:
    """One page of the filter's jobs, newest first, and the cursor of the next (None: last)."""
    cursor_at, cursor_id = wanted.cursor or _START
    params = {
        "statuses": list(wanted.statuses),
        "kind": wanted.kind,
        "created_after": wanted.created_after.isoformat() if wanted.created_after else "-infinity",
        "created_before": wanted.created_before.isoformat() if wanted.created_before else "infinity",
        "cursor_at": cursor_at,
        "cursor_id": cursor_id,
        "search_archive": wanted.searches_archive,
        "page_size": wanted.limit + 1,  # one more than asked: is there a next page?
    }
    if wanted.tenant is None:
        rows = session.rows("list_all_jobs", **params)
    else:
        rows = session.rows("list_tenant_jobs", tenant=wanted.tenant, **params)
    jobs = [Job.from_row(row) for row in rows]
    if len(jobs) <= wanted.limit:
        return Page(jobs, None)
    return Page(jobs[: wanted.limit], encode_cursor(jobs[wanted.limit - 1]))


def changed_jobs(session: Session, job_ids: list[str], wanted: JobFilter) -> list[Job]:
    """The live jobs among `job_ids` that concern the list (its tenant, kind, created range)."""
    if not job_ids:
        return []
    rows = session.rows("find_jobs", ids=job_ids)
    return [job for job in map(Job.from_row, rows) if wanted.in_scope(job)]
