"""A plotly figure, or a note, as an HTML chunk of the report (plotly.js is inlined once, by the page)."""

from __future__ import annotations

import html
from typing import Any


def figure_html(fig: Any) -> str:
    """A plotly figure as an HTML chunk; the report's page inlines plotly.js once for all of them."""
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height="480px")


def note(text: str) -> str:
    """An escaped ``<p class="note">``."""
    return f'<p class="note">{html.escape(text)}</p>'
