"""The page's language follows the browser's in headless Chromium: Chinese for every ``zh*`` language, English
otherwise."""

from __future__ import annotations

import pytest

from test_browser import CHROMIUM, browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]


def tab_names(browser, url: str, locale: str) -> list[str]:
    """The tab names a browser set to ``locale`` shows once the page has rendered."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.locator("#chat-input").wait_for()
        return [name.strip() for name in page.get_by_role("tab").all_inner_texts()]
    finally:
        context.close()


# Gradio picks a language it has translations of (zh-CN, zh-TW), else the base language ("zh": it has none),
# else English: every Chinese browser but zh-CN and zh-TW got the English page.
@pytest.mark.parametrize("locale", ["zh", "zh-HK", "zh-SG", "zh-Hans-CN", "zh-Hant-TW"])
def test_every_chinese_browser_gets_the_chinese_page(browser, url, locale):
    names = tab_names(browser, url, locale)
    assert names[:3] == ["💬 对话", "✍️ 文本生成", "🔍 下一个词 · Next token"], f"{locale}: {names}"


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_other_browsers_get_the_english_page(browser, url, locale):
    names = tab_names(browser, url, locale)
    assert names[:3] == ["💬 Chat", "✍️ Text generation", "🔍 Next token"], f"{locale}: {names}"
