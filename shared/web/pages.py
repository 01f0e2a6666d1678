"""The pages a person uses, beside the status page (page.py): the dashboard (the accepted
kinds' forms, served by enqueue) and the archive (finished documents and the jobs in
progress, served by status), both built from what each kind's registration declares; and
the JavaScript client they share, served as a module by the functions (`?asset=client.js`)
from the same file that is published as a package (clients/js/, copied into each deploy
bundle).

No page is given its request path: every URL a page uses back to its own function is a
fixed query ("?asset=client.js", "?id=..."), which the browser resolves against the page's
own address, so it keeps that origin and path whatever the path holds. (A path is not safe
to echo: werkzeug collapses "//", but a decoded backslash or tab in "/\\host/x" reaches the
browser's URL parser as "//host/x", another origin, and a script imported from there would
run under the page's nonce. Issue 26.)

Like the status page: no build step, no external fonts or scripts, and a strict
Content-Security-Policy: code runs only with the response's nonce (a module imported by a
nonced script inherits its nonce), and each page connects only where it must.
"""

from __future__ import annotations

import json
import secrets
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import flask

from shared.core.errors import NotFound, ValidationError
from shared.core.settings import Settings

HERE = Path(__file__).parent
# In the repository and in a deploy bundle alike: <root>/shared/web/pages.py, <root>/clients/js/.
CLIENT_JS = HERE.parent.parent / "clients" / "js" / "jobqueue.js"
ASSETS = {
    "client.js": (CLIENT_JS, "text/javascript; charset=utf-8"),
    "pages.js": (HERE / "pages.js", "text/javascript; charset=utf-8"),  # what the pages share
}


@cache
def _read(path: Path) -> str:
    return path.read_text()


def asset(name: str) -> tuple[str, str, dict[str, str]]:
    """(content, mimetype, headers) of a static asset the pages load, or NotFound."""
    if name not in ASSETS:
        raise NotFound(f"No asset named {name[:40]!r} (there is: {', '.join(ASSETS)})")
    path, mimetype = ASSETS[name]
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}
    return _read(path), mimetype, headers


def standalone(request: flask.Request, parameter: str) -> None:
    """A page or asset request names nothing else: another parameter (or a Last-Event-ID)
    beside it is a mistake, refused with a 400 that names it rather than ignored."""
    extra = sorted(key for key in request.args if key != parameter)
    if request.headers.get("Last-Event-ID") is not None:
        extra.append("Last-Event-ID")
    if extra:
        raise ValidationError.of([(key, f"not allowed with {parameter}") for key in extra])


def asset_response(name: str) -> flask.Response:
    content, content_type, headers = asset(name)
    return flask.Response(content, content_type=content_type, headers=headers)


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def policy(nonce: str, connect: list[str]) -> str:
    """The pages' strict policy: scripts and styles only with this response's nonce."""
    sources = " ".join(["'self'", *connect])
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"connect-src {sources}; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def page_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


# In a <script> element, "</script" ends it, and "<!--" followed by "<script" makes the
# parser swallow the real end tag (the page's own code then never runs). JSON's \u escapes
# mean the same to the script and nothing to the HTML parser. (json.dumps already escapes
# U+2028 and U+2029, which end a line in older JavaScript.)
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def script_json(value: object) -> str:
    """JSON that is safe to embed in an HTML <script> element, whatever its strings hold."""
    text = json.dumps(value)
    for raw, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def fill(template: str, nonce: str, config: dict) -> str:
    # JSON inside <script>, escaped for that context (see script_json): "</" or "<!--" in a
    # value must not end or hide the script.
    config_js = script_json(config)
    filled = template.replace("__STYLE__", _read(HERE / "pages.css")).replace(
        "__START__", _read(HERE / "page_start.js")
    )
    return filled.replace("__NONCE__", nonce).replace("__CONFIG__", config_js)


def render_page(name: str, config: dict, connect: list[str] | None = None) -> tuple[str, dict[str, str]]:
    """(the page, its security headers): shared/web/<name>.html with its config."""
    nonce = secrets.token_urlsafe(16)
    html = fill(_read(HERE / f"{name}.html"), nonce, config)
    return html, page_headers(policy(nonce, [origin(url) for url in connect or []]))


def html_response(name: str, config: dict, connect: list[str | None] | None = None) -> flask.Response:
    html, headers = render_page(name, config, [url for url in connect or [] if url])
    return flask.Response(html, mimetype="text/html", headers=headers)


def dashboard(settings: Settings, forms: dict[str, dict], default_kind: str | None) -> flask.Response:
    """The forms, served by enqueue (they post to its own address): `forms` are the accepted
    kinds' form declarations by kind name, from their registrations (handlers.kind_forms),
    which the page builds as they are. The default kind's is first, and its body names no kind."""
    ordered = sorted(forms.items(), key=lambda item: (item[0] != default_kind, item[0]))
    config = {
        "archiveUrl": with_query(settings.status_url, "view=archive") if settings.status_url else None,
        "tokenRequired": bool(settings.api_tokens),
        "forms": [{"kind": kind, "isDefault": kind == default_kind, "form": form} for kind, form in ordered],
    }
    return html_response("dashboard", config)


def archive(settings: Settings, cards: dict[str, dict], default_kind: str | None) -> flask.Response:
    """Finished documents, the jobs in progress and the failed or cancelled ones, served by
    status (it lists and streams from its own address; cancel goes to CANCEL_URL, a re-run to
    ENQUEUE_URL, whose page, the dashboard, it links to). `cards` are the kinds' card
    declarations with their data (handlers.kind_cards), which the page renders as they are."""
    config = {
        "cancelUrl": settings.cancel_url,
        "enqueueUrl": settings.enqueue_url,
        "cards": cards,
        "defaultKind": default_kind,
    }
    return html_response("archive", config, [settings.cancel_url, settings.enqueue_url])
