"""The built-in `newsletter` job: a newsletter for a date range from the selected feeds.

Its sources table and statements are its own (migrations/ and sql/ beside this file), and so
are its settings (settings.py: the limits per feed, read at start with the core's).
Importing the package registers the kind; the handler and feedparser load on first use.
"""

from pathlib import Path

from shared.core.handlers import Kind, register_kind
from shared.kinds.newsletter import pages
from shared.kinds.newsletter.settings import NewsletterSettings

HERE = Path(__file__).parent


register_kind(
    Kind(
        name="newsletter",
        handler="shared.kinds.newsletter.handler:generate_newsletter",
        migrations=HERE / "migrations",
        statements=HERE / "sql",
        settings=NewsletterSettings,
        default=True,  # the seed's requests name no kind: they are newsletter requests
        form=pages.form,  # the dashboard's generation form
        card=pages.CARD,  # how the archive and the status page show a newsletter
        card_data=pages.card_data,
    )
)
