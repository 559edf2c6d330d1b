"""``leadpipe flower``: Celery's web monitor, behind basic auth from settings."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

LOCAL_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1"})
err = Console(stderr=True, soft_wrap=True)


def flower_env(user: str, password: str | None) -> dict[str, str]:
    """Flower options passed through its ``FLOWER_*`` environment, never on the command line
    (where ``ps`` would show the password to every user of the machine)."""
    env = {"FLOWER_PURGE_OFFLINE_WORKERS": "300"}
    if password is not None:
        # Flower splits multi-valued env options on commas.
        if "," in password or ":" in user or "," in user:
            raise typer.BadParameter(
                "flower user/password may not contain ',' (or ':' in the user)"
            )
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    return env


def flower(
    address: Annotated[
        str | None, typer.Option(help="bind address (settings: flower_address)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (settings: flower_port)")] = None,
) -> None:
    """Start Flower with basic auth (LEADPIPE_FLOWER_USER / LEADPIPE_FLOWER_PASSWORD)."""
    from pipeline.settings import get_settings

    settings = get_settings()
    address = address or settings.flower_address
    port = port or settings.flower_port
    secret = settings.flower_password
    password = secret.get_secret_value() if secret is not None else None
    if not password:
        if address not in LOCAL_ADDRESSES:
            err.print(
                f"error: refusing to start Flower on {address} without a password: set "
                "LEADPIPE_FLOWER_PASSWORD (and LEADPIPE_FLOWER_USER), or bind to 127.0.0.1",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(2)
        err.print(
            "warning: Flower runs WITHOUT authentication on localhost; its API (and the queue "
            "controls) stay locked until LEADPIPE_FLOWER_PASSWORD is set",
            markup=False,
            highlight=False,
        )
        password = None
    os.environ.update(flower_env(settings.flower_user, password))
    from workers.app import app

    app.start(["flower", f"--address={address}", f"--port={port}"])
