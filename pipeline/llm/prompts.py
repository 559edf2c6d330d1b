"""Prompt rendering: Jinja2 templates in ``pipeline/templates`` (no prompt text in Python).

The templates are package data, loaded through ``importlib.resources`` (Jinja2's
``PackageLoader``), so an installed wheel or the Docker image renders them with no checkout.

Lead fields, website text and model outputs are data. They are passed in fenced blocks
(``<lead_data>`` ...), JSON-encoded with ``tojson`` (which escapes ``<``, ``>`` and ``&`` so a
field cannot close its fence), and the system prompt tells the model never to follow
instructions found inside them.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pipeline.models import Prompt


def fence_text(value: object) -> str:
    """Plain text safe inside a fence: angle brackets removed so it cannot close the block."""
    return str(value or "").replace("<", " ").replace(">", " ")


@functools.cache
def environment() -> Environment:
    """The shared Jinja2 environment (StrictUndefined: a missing variable is an error)."""
    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # package data does not change under a running worker: no stat per use
    )
    env.filters["fence"] = fence_text
    return env


@functools.cache
def _source_hash(*names: str) -> str:
    env = environment()
    digest = hashlib.sha256()
    for name in names:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        digest.update(source.encode())
    return digest.hexdigest()[:12]


def render(stage: str, **ctx: Any) -> Prompt:
    """Render ``prompts/<stage>.system.j2`` and ``prompts/<stage>.user.j2``.

    Returns:
        The prompt text and a short hash of the template sources (``prompt_version``).
    """
    env = environment()
    system_name, user_name = f"prompts/{stage}.system.j2", f"prompts/{stage}.user.j2"
    system = env.get_template(system_name).render(stage=stage, **ctx)
    user = env.get_template(user_name).render(stage=stage, **ctx)
    version = _source_hash(system_name, user_name, "prompts/_rules.j2")
    return Prompt(system=system.strip(), user=user.strip(), version=version)


def render_text(name: str, **ctx: Any) -> str:
    """Render any template (email bodies, demo pages, report pages)."""
    return environment().get_template(name).render(**ctx)
