"""The HTTP gateway: any service uses the key pool by changing one base URL (issue 17).

    from lib.gateway import create_app      # a Starlette app; `serve-gateway` runs it

Inside: app (routes, lifespan, the attempt loop and streaming pass-through), access (the
per-request access-token statements on the pool's kind of connections), errors (Gemini-shaped
own errors), metrics (Prometheus text).
"""

from lib.gateway.app import GatewayConfig, create_app

__all__ = ["GatewayConfig", "create_app"]
