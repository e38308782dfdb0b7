"""The launched app's MCP tools (``MODELDECK_MCP``, on by default), through the ``mcp`` client."""

from __future__ import annotations

import ast
import asyncio
import base64
from pathlib import Path

import pytest

mcp = pytest.importorskip("mcp")
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

CAT = Path(__file__).resolve().parent.parent / "example_images" / "cat.jpg"


async def session_run(url: str, work):
    async with streamable_http_client(url.rstrip("/") + "/gradio_api/mcp/") as (read, write, _):
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def run(url, work):
    return asyncio.run(asyncio.wait_for(session_run(url, work), 300))


def test_tools_are_listed_with_descriptions_for_agents(url):
    tools = run(url, lambda s: s.list_tools())
    by_name = {t.name: t for t in tools.tools}
    assert {"chat", "generate", "classify", "caption", "story", "speak", "picture_story"} <= set(by_name)
    classify = by_name["classify"]
    assert "probabilit" in classify.description and "text" in classify.inputSchema["properties"]
    assert classify.inputSchema["properties"]["text"].get("description")


def test_classify_and_caption_through_mcp(url):
    picture = "data:image/jpeg;base64," + base64.b64encode(CAT.read_bytes()).decode()

    async def work(session):
        labels = await session.call_tool("classify", {"text": "这家店很好", "model": "Tiny English sentiment"})
        caption = await session.call_tool("caption", {"image": picture})
        return labels, caption

    labels, caption = run(url, work)
    assert not labels.isError and not caption.isError, (labels, caption)
    scores = ast.literal_eval(labels.content[0].text)  # gradio sends the dict's Python repr
    assert set(scores) == {"正面 positive", "负面 negative"} and abs(sum(scores.values()) - 1) < 1e-5
    texts = [c.text for c in caption.content if c.type == "text"]
    assert texts and all(isinstance(t, str) for t in texts)


def test_bad_input_comes_back_as_a_tool_error(url):
    result = run(url, lambda s: s.call_tool("classify", {"text": "", "model": None}))
    assert result.isError and "Enter the text" in result.content[0].text


def test_every_tool_parameter_is_described_in_full(url):
    from pipelines.story import STYLES

    tools = {t.name: t for t in run(url, lambda s: s.list_tools()).tools}
    assert {"classify_batch", "next_token"} <= set(tools)
    for tool in tools.values():
        for name, schema in tool.inputSchema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
    style = tools["story"].inputSchema["properties"]["style"]["description"]
    assert all(zh in style and en.split(" (")[0] in style for zh, en in STYLES.items()), style
    history = tools["chat"].inputSchema["properties"]["history"]["description"]
    assert "null for a new conversation" in history and "context window" in history  # its 2nd and 3rd lines
    assert "Chinese characters" in tools["speak"].inputSchema["properties"]["language"]["description"]


def test_the_readme_lists_every_tool_in_both_languages(url):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    chinese = readme[readme.index("**MCP**："):readme.index("# English")]
    english = readme[readme.index("**MCP tools.**"):]
    for tool in run(url, lambda s: s.list_tools()).tools:
        assert tool.name in chinese and f"`{tool.name}`" in english, tool.name
