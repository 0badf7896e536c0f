"""``partsbin webhooks``: subscriptions to registry events (admins and namespace owners)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from partsbin.cli._app import (
    PANEL_SERVER,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    console,
    note,
    open_registry,
    print_json,
    table,
)

if TYPE_CHECKING:
    from partsbin.client.webhooks import Webhook

webhooks_app = typer.Typer(
    help="Webhooks: the registry POSTs signed JSON to a URL when something happens.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks", rich_help_panel=PANEL_SERVER)

_EVENTS = "component.published, evaluation.recorded, alias.moved, version.yanked, job.finished"


def _hook_json(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "url": h.url,
        "namespace": h.namespace,
        "events": h.events,
        "description": h.description,
        "active": h.active,
        "created_at": h.created_at,
        "deliveries": h.deliveries,
        **({"secret": h.secret} if h.secret else {}),
    }


@webhooks_app.command("add")
def add(
    url_arg: Annotated[str, typer.Argument(metavar="URL", help="the http(s) receiver")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="whose events (default: every namespace; admins only)")
    ] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help=f"repeat to choose; default every one: {_EVENTS}")
    ] = None,
    description: Annotated[str, typer.Option(help="what it is for, for people")] = "",
    secret: Annotated[
        str | None, typer.Option(help="the signing key (16-128 characters); default: one is made and shown once")
    ] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Subscribe URL to events; a ping is sent at once. Receivers check X-Partsbin-Signature-256."""
    with open_registry(url, token) as reg:
        hook = reg.create_webhook(url_arg, events=event, namespace=namespace, description=description, secret=secret)
    if json_out:
        print_json(_hook_json(hook))
        return
    console.print(f"webhook {hook.id}: {hook.url} ({hook.namespace or 'every namespace'}: {', '.join(hook.events)})")
    console.print(f"secret: {hook.secret}")
    note(
        "the secret is not shown again: receivers verify deliveries with partsbin.verify_signature(secret, body, header)"
    )


@webhooks_app.command("ls")
def ls(json_out: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """The subscriptions this token manages."""
    with open_registry(url, token) as reg:
        hooks = reg.webhooks()
    if json_out:
        print_json([_hook_json(h) for h in hooks])
        return
    if not hooks:
        note("no webhooks (add one with: partsbin webhooks add URL --namespace NS)")
        return
    t = table("id", "url", "namespace", "events", "active", "deliveries")
    for h in hooks:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(h.deliveries.items())) or "none"
        t.add_row(
            str(h.id), h.url, h.namespace or "(all)", ", ".join(h.events), "yes" if h.active else "paused", counts
        )
    console.print(t)


@webhooks_app.command("rm")
def rm(webhook_id: Annotated[int, typer.Argument(min=1)], url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a subscription and the record of its deliveries."""
    with open_registry(url, token) as reg:
        reg.delete_webhook(webhook_id)
    note(f"deleted webhook {webhook_id}")


@webhooks_app.command("pause")
def pause(webhook_id: Annotated[int, typer.Argument(min=1)], url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Stop sending (events meanwhile are not queued; pending deliveries fail)."""
    with open_registry(url, token) as reg:
        reg.update_webhook(webhook_id, active=False)
    note(f"paused webhook {webhook_id}")


@webhooks_app.command("resume")
def resume(webhook_id: Annotated[int, typer.Argument(min=1)], url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Send events again."""
    with open_registry(url, token) as reg:
        reg.update_webhook(webhook_id, active=True)
    note(f"resumed webhook {webhook_id}")


@webhooks_app.command("ping")
def ping(webhook_id: Annotated[int, typer.Argument(min=1)], url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Send a ping event now."""
    with open_registry(url, token) as reg:
        d = reg.ping_webhook(webhook_id)
    note(f"queued ping {d.uuid} (delivery {d.id}); see: partsbin webhooks deliveries {webhook_id}")


@webhooks_app.command("deliveries")
def deliveries(
    webhook_id: Annotated[int, typer.Argument(min=1)],
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed")] = None,
    limit: Annotated[int, typer.Option(min=1, help="the newest this many")] = 20,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A subscription's deliveries, newest first, with their attempts."""
    with open_registry(url, token) as reg:
        rows = reg.webhook_deliveries(webhook_id, status=status, limit=limit)
    if json_out:
        print_json([d.__dict__ for d in rows])
        return
    t = table("id", "event", "status", "attempts", "last answer", "created")
    for d in rows:
        last = d.error or (str(d.response_status) if d.response_status is not None else "")
        created = d.created_at.strftime("%Y-%m-%d %H:%M:%S") if d.created_at else ""
        t.add_row(str(d.id), d.event, d.status, str(d.attempts), last, created)
    console.print(t)


@webhooks_app.command("redeliver")
def redeliver(
    webhook_id: Annotated[int, typer.Argument(min=1)],
    delivery_id: Annotated[int, typer.Argument(min=1)],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Send a finished delivery again (same id and body)."""
    with open_registry(url, token) as reg:
        d = reg.redeliver_webhook(webhook_id, delivery_id)
    note(f"delivery {d.id} ({d.event}) queued again")
