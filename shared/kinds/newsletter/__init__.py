"""The built-in `newsletter` job: a newsletter for a date range from the selected feeds.

Its sources table and statements are its own (migrations/ and sql/ beside this file), and so
are its settings (settings.py: the limits per feed, read at start with the core's).
Importing the package registers the kind; the handler and feedparser load on first use.
"""

from pathlib import Path

from shared.core.handlers import Kind, register_kind
from shared.kinds.newsletter.settings import NewsletterSettings
from shared.kinds.newsletter.sources import list_sources

HERE = Path(__file__).parent


def dashboard_form(session) -> dict:
    """The generation form's data: the active sources to choose from (the page itself is
    shared/web/dashboard.html's newsletter form)."""
    sources = [{"id": source.id, "name": source.name} for source in list_sources(session) if source.active]
    return {"title": "Generate a newsletter", "sources": sources}


def card_data(session) -> dict[int, str]:
    """What the archive's cards show besides the job: every source's name by id, active or
    not (an older newsletter may name a retired one)."""
    return {source.id: source.name for source in list_sources(session)}


register_kind(
    Kind(
        name="newsletter",
        handler="shared.kinds.newsletter.handler:generate_newsletter",
        migrations=HERE / "migrations",
        statements=HERE / "sql",
        settings=NewsletterSettings,
        default=True,  # the seed's requests name no kind: they are newsletter requests
        form=dashboard_form,
        card_data=card_data,
    )
)
