"""server.locale: gradio's page gets the script that picks Chinese for every Chinese browser; nothing else changes.
(The browser's side: tests/test_browser_locale.py.)"""

from __future__ import annotations

import httpx

from server.locale import SCRIPT, with_script


def test_the_script_goes_ahead_of_gradios_module_script_and_only_into_its_page():
    page = b'<html><head><script>a</script><script type="module" src="x.js"></script></head><gradio-app></gradio-app>'
    edited = with_script(page)
    assert edited.index(SCRIPT) < edited.index(b'<script type="module"') and edited.count(SCRIPT) == 1
    other = b"<html><head></head><body>an HTML file served from a folder</body></html>"
    assert with_script(other) == other


def test_the_served_page_has_it_once_and_other_answers_are_untouched(url):
    page = httpx.get(url)
    assert page.status_code == 200 and page.content.count(SCRIPT) == 1
    assert int(page.headers["content-length"]) == len(page.content)
    config = httpx.get(url.rstrip("/") + "/config")
    assert config.status_code == 200 and SCRIPT not in config.content
