"""mkdocs hook: publish the root documents SPEC.md and DISCLAIMER.md as pages of the site.

They stay at the repository root, where readers of the repository look for
them, and link to the guide as ``docs/<page>.md``; the guide links to them as
``../SPEC.md``. Both forms are right in the repository; in the site every page
sits in one folder, so each link between these files is rewritten to the page
it names. A link to any other file outside ``docs/`` is left alone, and the
strict build reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {"SPEC.md": "spec.md", "DISCLAIMER.md": "disclaimer.md"}
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)(#[^)\s]*)?\)")


def on_files(files: Files, config: Any) -> Files:
    for source, page in PUBLISHED.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    return files


def on_page_markdown(markdown: str, page: Page, config: Any, files: Files) -> str:
    # Where the page's source sits in the repository: docs/<page>, or the root.
    published = {page: source for source, page in PUBLISHED.items()}
    source = published.get(page.file.src_uri, f"docs/{page.file.src_uri}")
    folder = posixpath.dirname(source)

    def rewrite(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(folder, match.group(1)))
        anchor = match.group(2) or ""
        if target in PUBLISHED:
            return f"]({PUBLISHED[target]}{anchor})"
        if target.startswith("docs/"):
            return f"]({target.removeprefix('docs/')}{anchor})"
        return match.group(0)

    return LINK.sub(rewrite, markdown)
