"""`flask --app run keys ...`: create, list and revoke API keys from the host."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import TaskerError
from app.core.keys import NAME_RULE, KeyManager, name_error
from app.models.migrate import prepare_database
from config.base import RATE_LIMIT_RULE, rate_limit_error


def _named(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The API's rule for a key's name and owner (app/core/keys.py)."""
    if value is not None and name_error(value):
        raise click.BadParameter(f"use {NAME_RULE}")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The API's rule for a rate limit (app/core/keys.py)."""
    if value and rate_limit_error(value):
        raise click.BadParameter(RATE_LIMIT_RULE)
    return value


def _show_webhook_secret(owner: str, secret: str | None) -> None:
    if secret:
        click.echo(f"webhook signing secret of {owner!r}: {secret}", err=True)


def _ready(keys: KeyManager) -> None:
    """The schema is brought up to date first (as run.py does), so a fresh database works."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        prepare_database(keys.db.engine)
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot prepare the database: {getattr(exc, 'orig', None) or exc}"
        ) from None


def register_commands(
    app: Flask, keys: KeyManager, webhook_secret: Callable[[str], str | None] = lambda owner: None
) -> None:
    group = AppGroup("keys", help="Create, list and revoke API keys.")
    ready = functools.partial(_ready, keys)

    @group.command("create")
    @click.option("--name", required=True, callback=_named, help="What the key is for, e.g. billing-service")
    @click.option("--owner", default=None, callback=_named, help="Whose tasks it reaches (default: the name)")
    @click.option("--admin", is_flag=True, help="Sees every owner's tasks and manages keys")
    @click.option(
        "--rate-limit", default=None, callback=_rate, help="Replaces the deployment's limits, e.g. 100/second"
    )
    def create(name: str, owner: str | None, admin: bool, rate_limit: str | None) -> None:
        """Make a key; it is printed once and cannot be shown again."""
        ready()
        try:
            resource, key = keys.create(name, owner, admin, rate_limit)
        except TaskerError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(key)
        role = "admin" if resource["admin"] else "owner"
        click.echo(f"id {resource['id']}, {role} {resource['owner']!r}: store it now.", err=True)
        _show_webhook_secret(resource["owner"], webhook_secret(resource["owner"]))

    @group.command("list")
    @click.option("--all", "include_revoked", is_flag=True, help="Revoked keys too")
    def list_keys(include_revoked: bool) -> None:
        """Every key: id, hint, owner, admin, created, last used, revoked."""
        ready()
        for key in keys.list(include_revoked):
            click.echo(
                f"{key['id']}  {key['hint']}...  {key['name']}  owner={key['owner']}  "
                f"admin={str(key['admin']).lower()}  created={key['created_at']}  "
                f"last_used={key['last_used_at'] or '-'}  revoked={key['revoked_at'] or '-'}"
            )

    @group.command("revoke")
    @click.argument("key_id")
    def revoke(key_id: str) -> None:
        """Revoke a key by its id; it stops working within 5 s everywhere."""
        ready()
        try:
            revoked = keys.revoke(uuid.UUID(key_id))
        except ValueError:
            raise click.BadParameter(f"{key_id!r} is not a key id (a UUID)") from None
        except TaskerError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"revoked {key_id}")
        if revoked["schedules_paused"]:
            paused = revoked["schedules_paused"]
            click.echo(f"the owner's last key: {paused} schedules paused (an admin resumes them)", err=True)

    app.cli.add_command(group)
