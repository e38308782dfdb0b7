"""What the app serves besides the UI, on the same port: the OpenAI-compatible ``/v1`` API and MCP tools; and the
script that gives every Chinese browser the Chinese page."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from starlette.middleware import Middleware

from pipelines import settings

from .locale import ChineseLocale
from .openai_api import routes

log = logging.getLogger("modeldeck")


def mcp_enabled() -> bool:
    """Whether Gradio serves the API endpoints as MCP tools (``MODELDECK_MCP``, default on).

    On by default: the tools are the endpoints gradio_client already reaches, with the same queue and
    limits, so they add a protocol, not a capability; set ``MODELDECK_MCP=0`` to turn them off. Without
    the ``mcp`` package (``gradio[mcp]``) they stay off with a warning: Gradio would refuse to launch.
    """
    if not settings.get("MODELDECK_MCP"):
        return False
    if importlib.util.find_spec("mcp") is None:
        log.warning('MCP tools are off: install gradio[mcp] (pip install "gradio[mcp]") or set MODELDECK_MCP=0')
        return False
    return True


def launch_arguments() -> dict[str, Any]:
    """The ``launch()`` arguments that add the ``/v1`` routes, the Chinese page for every Chinese browser
    (``locale``) and, when enabled, the MCP server."""
    return {"app_kwargs": {"routes": routes(), "middleware": [Middleware(ChineseLocale)]},
            "mcp_server": mcp_enabled()}


__all__ = ["launch_arguments", "mcp_enabled", "routes"]
