"""Chinese for every Chinese browser: the page gets a script that tells gradio a language it has translations of.

Gradio 6.31 takes ``navigator.language`` when it is one of its own languages (``zh-CN``, ``zh-TW``), else its base
language when that is one ("zh" is not), else English. So a browser set to plain Chinese (``zh``), Hong Kong
(``zh-HK``), Singapore (``zh-SG``) or a script-tagged ``zh-Hans-CN`` got the English page. The language is chosen
before ``launch(head=...)`` or ``js=`` run, so the script goes into the page's HTML ahead of gradio's own.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

# Traditional script (Hong Kong, Macao, Taiwan, zh-Hant-*) gets gradio's zh-TW words, every other zh* its zh-CN.
SCRIPT = b"""<script>(() => {
  const lang = navigator.language || "";
  if (!/^zh(-|$)/i.test(lang) || lang === "zh-CN" || lang === "zh-TW") return;
  const chosen = /^zh-(hant|hk|mo|tw)(-|$)/i.test(lang) ? "zh-TW" : "zh-CN";
  Object.defineProperty(navigator, "language", { get: () => chosen, configurable: true });
})();</script>"""

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def with_script(page: bytes) -> bytes:
    """``page`` with ``SCRIPT`` ahead of its first module script (gradio's); other HTML is left as it is."""
    if b"<gradio-app" not in page:
        return page
    at = page.find(b'<script type="module"')
    if at < 0:
        at = page.find(b"</head>")
    return page if at < 0 else page[:at] + SCRIPT + page[at:]


class ChineseLocale:
    """ASGI middleware: puts ``SCRIPT`` into gradio's page (HTML answers to GET); everything else passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []

        async def edit(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                    start = message  # held until the whole page is here
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = with_script(b"".join(body))
                headers = [(k, str(len(page)).encode() if k.lower() == b"content-length" else v)
                           for k, v in start.get("headers", [])]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self.app(scope, receive, edit)
