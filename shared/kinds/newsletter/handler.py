"""The `newsletter` handler: fetch each selected feed, keep the entries in the date range,
and render the newsletter, reporting the seed's steps (Processing, Formatting, Complete),
a log line and a progress step per source, and a preview as it grows; then the writer
(writer.py: the digest as it is, or a Gemini model's summaries) and the rendering.

A source that times out, answers an error or serves a broken feed is logged and skipped;
the newsletter says which. When every source fails, the job fails.
"""

from __future__ import annotations

from shared.core import log
from shared.core.errors import JobCancelled
from shared.kinds.newsletter.compose import BrokenFeed, Section, entries_in_range
from shared.kinds.newsletter.fetch import FeedError, fetch_feed
from shared.kinds.newsletter.render import render, title_for
from shared.kinds.newsletter.request import REQUEST_FIELDS, parse_request, validate_newsletter
from shared.kinds.newsletter.settings import NewsletterSettings
from shared.kinds.newsletter.sources import find_sources
from shared.kinds.newsletter.writer import write

PREVIEW_MAX_CHARS = 20_000
FETCH_SHARE = 85  # percent of the progress bar spent fetching


class AllSourcesFailed(Exception):
    pass


def generate_newsletter(payload: dict, ctx) -> dict | None:
    request, problems = parse_request(payload)
    if request is None:  # enqueue validated it; a hand-written row may not have been
        raise ValueError("Invalid newsletter request: " + "; ".join(f"{f}: {m}" for f, m in problems))
    start, end = request.window
    limits: NewsletterSettings = ctx.settings or NewsletterSettings()  # a bare runner: the defaults
    with ctx.session() as session:
        sources = find_sources(session, list(request.source_ids))
    total = len(request.source_ids)
    ctx.progress(2, step="Processing", message=f"Fetching {total} {'source' if total == 1 else 'sources'}")
    sections: list[Section] = []
    failed: list[dict] = []
    counts: dict[str, int] = {}
    for done, source_id in enumerate(request.source_ids, start=1):
        source = sources.get(source_id)
        if source is None or not source.active:
            reason = "removed" if source is None else "disabled"
            failed.append(
                {"id": source_id, "name": source.name if source else f"#{source_id}", "error": f"source {reason}"}
            )
            ctx.log(f"Source {source_id} was {reason} after this newsletter was queued; skipped", level="warning")
            continue
        ctx.log(f"Fetching {source.name}")
        try:
            body = fetch_feed(
                source.feed_url,
                limits.feed_timeout_seconds,
                limits.feed_max_bytes,
                ctx.cancelled,
                limits.feed_allow_private,
            )
            entries, undated = entries_in_range(body, start, end)
        except JobCancelled:
            return None
        except (FeedError, BrokenFeed) as exc:
            # The job's log is public: it gets the reason; the server log gets the detail.
            log.warning("Feed skipped", jobId=ctx.job_id, source=source.id, detail=getattr(exc, "detail", str(exc)))
            failed.append({"id": source.id, "name": source.name, "error": str(exc)})
            ctx.log(f"{source.name}: skipped ({exc})", level="warning")
        else:
            sections.append(Section(source.id, source.name, tuple(entries)))
            counts[str(source.id)] = len(entries)
            note = f", {undated} undated skipped" if undated else ""
            ctx.log(f"{source.name}: {len(entries)} {'entry' if len(entries) == 1 else 'entries'} in range{note}")
            preview = render(request.output_format, request.start, request.end, sections, [])
            ctx.emit("preview", {"format": request.output_format, "content": preview[:PREVIEW_MAX_CHARS]})
        ctx.progress(2 + FETCH_SHARE * done // total, message=f"{done} of {total} sources read")
        if ctx.cancelled.is_set():
            return None
    if not sections:
        reasons = "; ".join(f"{f['name']}: {f['error']}" for f in failed)
        raise AllSourcesFailed(f"Every source failed ({reasons})")
    sections, writer = write(request, sections, limits, ctx)
    ctx.progress(90, step="Formatting", message=f"Rendering {request.output_format}")
    document = render(request.output_format, request.start, request.end, sections, failed)
    return {
        "title": title_for(request.start, request.end),
        "format": request.output_format,
        "dateRange": {"from": request.start.isoformat(), "to": request.end.isoformat()},
        "document": document,
        "entryCount": sum(counts.values()),
        "countsBySource": counts,
        "failedSources": failed,
        **writer,
    }


generate_newsletter.validate = validate_newsletter
generate_newsletter.fields = REQUEST_FIELDS  # anything else in a request is refused at enqueue
