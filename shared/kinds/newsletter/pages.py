"""What the pages show of a newsletter, declared here and rendered by shared/web's generic
pages: the dashboard's form (form), the archive's and the status page's words and card
summary (CARD), and the names those cards need (card_data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.kinds.newsletter.request import MAX_SPAN_DAYS
from shared.kinds.newsletter.sources import list_sources

DEFAULT_RANGE_DAYS = 7  # the last seven days, today included
FORMATS = {"markdown": "Markdown", "html": "HTML"}

# The function's words are for programs ("from must not be after to"); a person gets these.
# [field, a pattern of the message, the words; {1} is the pattern's first group].
PLAIN_WORDS = [
    ["dateRange", "from must not be after to", "The start date is after the end date: choose a start on or before the end."],
    ["dateRange", "spans more than (\\d+) days", "That is more than {1} days: choose a shorter range."],
    ["dateRange", "must be an object", "Choose a start and an end date."],
    ["dateRange.from", ".", "Enter a real start date."],
    ["dateRange.to", ".", "Enter a real end date."],
    ["selectedSources", "at most (\\d+) sources", "Choose at most {1} sources."],
    ["selectedSources", ".", "Choose at least one source."],
    ["outputFormat", ".", "Choose Markdown or HTML."],
]  # fmt: skip


def form(session, today: datetime | None = None) -> dict:
    """The generation form: the date range (whole UTC days), the active sources, the format."""
    today = (today or datetime.now(UTC)).date()
    sources = [{"value": source.id, "label": source.name} for source in list_sources(session) if source.active]
    return {
        "title": "Generate a newsletter",
        "submit": "Submit for generation",
        "fields": [
            {
                "name": "dateRange",
                "label": "Date range",
                "type": "group",
                "hint": f"Whole days in UTC, both included; at most {MAX_SPAN_DAYS} days.",
                "fields": [
                    {"name": "from", "label": "From", "type": "date", "default": str(today - timedelta(DEFAULT_RANGE_DAYS - 1))},
                    {"name": "to", "label": "To", "type": "date", "default": str(today)},
                ],
            },
            {
                "name": "selectedSources",
                "label": "Sources",
                "type": "choices",
                "options": sources,
                "default": [source["value"] for source in sources],
                "empty": "No active sources yet: add one with python -m shared.kinds.newsletter.cli add NAME URL.",
            },
            {
                "name": "outputFormat",
                "label": "Output format",
                "type": "choice",
                "options": [{"value": value, "label": label} for value, label in FORMATS.items()],
                "default": "markdown",
            },
        ],
        "plainWords": PLAIN_WORDS,
    }  # fmt: skip


# What a newsletter was asked for, from its payload (the list carries it) or its result:
# "2025-01-01 to 2025-01-07 · HTML · Demo: Engineering Blog, Demo: Product Updates".
CARD = {
    "label": "Newsletter",
    "plural": "Newsletters",
    "title": "Newsletter generation",
    "start": "Generate a newsletter",
    # The status page's stepper and cancel words (the seed's): Queued, Processing, Formatting,
    # Complete; "Cancel generation".
    "steps": ["Formatting"],
    "noun": "generation",
    "summary": [
        {"paths": ["payload.dateRange", "result.dateRange"], "template": "{from} to {to}"},
        {"paths": ["payload.outputFormat", "result.format"], "default": "markdown", "labels": FORMATS},
        # A finished card gives a labelled part a line of its own: "Sources: ...".
        {
            "paths": ["payload.selectedSources", "result.countsBySource"],
            "names": "sources",
            "unnamed": "source {}",
            "label": "Sources",
            "name": "sources",
        },
    ],
    "document": {"title": "result.title"},
}


def card_data(session) -> dict[str, dict]:
    """The names the cards show: every source's by id, active or not (an older newsletter
    may name a retired one)."""
    return {"sources": {str(source.id): source.name for source in list_sources(session)}}
