"""Step mode of the next-token tab in headless Chromium: one step at a time, Undo rewinds the seeded sampler, the
seed box keeps what was typed, and a bad seed is refused with the chart and text left as they were."""

from __future__ import annotations

import pytest

from test_browser import CHROMIUM, browser, open_tab, page  # noqa: F401  (fixtures)
from test_browser_bad_input import told, veiled

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

MARKS = "#nt-text sup.nt-mark"
SEED = "#nt-seed textarea, #nt-seed input"


def added(page) -> list[str]:
    """The tokens step mode appended, as the text shows them."""
    return page.locator("#nt-text .nt-added").all_inner_texts()


def stepped(page, button: str, count: int) -> None:
    """Press ``button`` and wait until the text holds ``count`` appended tokens and the step is over (the step
    buttons, disabled while it runs, are back)."""
    page.locator(button).click()
    page.wait_for_function(f"n => document.querySelectorAll('{MARKS}').length === n", arg=count)
    page.wait_for_function("() => !document.querySelector('#nt-sample').disabled")


@pytest.fixture
def shown(page):
    """The next-token tab with the chart of a prompt shown."""
    open_tab(page, "🔍 下一个词 · Next token")
    page.locator("#nt-prompt textarea").fill("今天天气很好，我们一起去")
    page.locator("#nt-run").click()
    page.locator("#nt-chart .nt-after").first.wait_for()
    return page


def test_undo_rewinds_the_seed_and_a_click_waits_while_a_sample_runs(shown):
    from gates import PassGate, wait_until
    from pipelines import registry

    page = shown
    page.locator(SEED).fill("42")
    stepped(page, "#nt-sample", 1)
    stepped(page, "#nt-sample", 2)
    first = added(page)
    stepped(page, "#nt-undo", 1)
    stepped(page, "#nt-undo", 0)
    stepped(page, "#nt-sample", 1)
    stepped(page, "#nt-sample", 2)
    assert added(page) == first  # before, the sampler went on: other tokens than the two undone
    with PassGate(registry.get_model("textgen"), permits=0) as gate:  # the next text's forward pass waits
        page.locator("#nt-sample").click()
        wait_until(lambda: gate.arrived > 0, "the sampled token's next distribution is being computed")
        assert page.locator("#nt-sample").is_disabled()
        page.locator("#nt-chart tr.nt-click").nth(1).locator(".nt-before").click()  # a candidate of the old text
        told(page, "The last step is still running")
        page.locator("#nt-top-k input[type=range]").fill("3")  # a slider moved meanwhile is drawn after the step
        gate.open()
    page.wait_for_function(f"() => document.querySelectorAll('{MARKS}').length === 3")
    page.wait_for_function("() => document.querySelectorAll('#nt-chart tr.nt-removed').length === 17")
    page.wait_for_function("() => !document.querySelector('#nt-sample').disabled")
    # Before, the click's step ended last and wrote its text: the sampled token was lost.
    assert added(page)[:2] == first and page.locator(MARKS).all_inner_texts()[-1].startswith("🎲")
    stepped(page, "#nt-undo", 2)  # the state kept the sampled token: Undo removes it, not the one before
    assert added(page) == first


def test_an_empty_seed_box_draws_with_a_new_random_seed_and_shows_it(shown):
    page = shown
    box = page.locator(SEED).first
    assert box.input_value() == ""  # before, a number box that could not be empty: it showed 0
    stepped(page, "#nt-sample", 1)
    drawn = box.input_value()
    assert drawn.isdigit() and drawn in page.locator("#nt-status").inner_text()
    stepped(page, "#nt-sample", 2)
    assert box.input_value() == drawn  # the next step goes on with the same seeded sequence


def test_a_greedy_sample_keeps_the_seed_typed_in_the_box(shown):
    page = shown
    page.locator(SEED).fill("42")
    page.locator("#nt-temperature input[type=range]").fill("0")
    stepped(page, "#nt-sample", 1)
    assert "Temperature 0" in page.locator("#nt-status").inner_text()
    assert page.locator(SEED).input_value() == "42"  # before, emptied: greedy steps have no seed


@pytest.mark.parametrize("seed", ["-1", "3000000000"])
def test_a_bad_seed_is_refused_and_the_chart_and_text_stay(shown, seed):
    page = shown
    page.locator(SEED).fill("5")
    stepped(page, "#nt-sample", 1)
    chart, text = page.locator("#nt-chart table").inner_html(), added(page)
    page.locator(SEED).fill(seed)
    page.locator("#nt-sample").click()
    page.locator(".toast-body", has_text="随机种子必须在 0 到").first.wait_for()  # Chinese first, then English
    told(page, "The seed must be between 0 and 2147483647")
    assert not veiled(page, "nt-chart") and not veiled(page, "nt-text")
    assert page.locator("#nt-chart table").inner_html() == chart and added(page) == text
    page.locator(SEED).fill("5")
    stepped(page, "#nt-sample", 2)  # the refusal left nothing running
