"""serve-gateway: the HTTP gateway (lib/gateway) under uvicorn."""

from __future__ import annotations

import click

from lib.cli.base import CliContext, cli, pass_cli
from lib.settings import pass_to_children


@cli.command("serve-gateway")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes; they share the database and nothing else.")
@click.option("--max-attempts", type=click.IntRange(1, 10), default=None,
              help="Keys tried per request on 429/5xx/network errors "
                   "[default: GEMINI_GATEWAY_MAX_ATTEMPTS, 3].")
@pass_cli
def serve_gateway(cli_ctx: CliContext, host: str, port: int, workers: int,
                  max_attempts: int | None) -> None:
    """Serve Gemini's API (native and OpenAI-compatible) with keys from the pool.

    Clients send a gateway access token (create-access-token) where their SDK sends an API
    key; upstream is GEMINI_API_BASE_URL.
    """
    import uvicorn

    cli_ctx.runtime()  # fail here, in one line, if the database or master key is wrong
    if max_attempts is not None:
        pass_to_children("gateway_max_attempts", max_attempts)
    click.echo(f"gateway listening on http://{host}:{port} ({workers} worker"
               f"{'s' if workers > 1 else ''}); upstream "
               f"{cli_ctx.settings.gemini_api_base_url}", err=True)
    uvicorn.run("lib.gateway.server:app_factory", factory=True, host=host, port=port,
                workers=workers, access_log=False, log_level="warning", lifespan="on",
                timeout_graceful_shutdown=5)
