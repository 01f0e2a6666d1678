"""Write docs/settings.md's table from the settings' declarations (shared/core/settings.py and
each kind's): `python -m local.settings_doc`. tests/test_settings.py fails while the page and
the declarations differ."""

from __future__ import annotations

import re
from pathlib import Path

from shared.core.handlers import kind_settings_classes
from shared.core.settings import Settings, markdown_table

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN = "<!-- the table is written by `python -m local.settings_doc` from the declarations: edit those -->\n"
END = "<!-- end of the generated table -->\n"
_BETWEEN = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)


def table() -> str:
    return markdown_table({"core": Settings, **kind_settings_classes()})


def page_with_table(page: str) -> str:
    if not _BETWEEN.search(page):
        raise SystemExit(f"{PAGE} has no generated table markers")
    return _BETWEEN.sub(lambda _: BEGIN + table() + END, page)


def main() -> None:
    PAGE.write_text(page_with_table(PAGE.read_text()))
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
