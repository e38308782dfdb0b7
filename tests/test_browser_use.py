"""Each tab used in headless Chromium as a person would: change a control, see what should change."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest

from ui import story_saved

from test_browser import CHROMIUM, browser, open_tab, page, upload_picture, wait_filled  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

SEED_IN_STATUS = r"seed\s*(\d+)"


def finished_run(page, *, seed_other_than: str = "") -> tuple[str, str]:
    """Wait for a text-generation run to finish (with a seed other than the given one); return (output, seed)."""
    page.wait_for_function(
        """([pattern, other]) => {
            const text = document.querySelector('#textgen-status')?.innerText || '';
            const seed = text.match(new RegExp(pattern));
            return text.includes('total_tokens') && seed && seed[1] !== other;
        }""", arg=[SEED_IN_STATUS, seed_other_than])
    seed = re.search(SEED_IN_STATUS, page.locator("#textgen-status").inner_text()).group(1)
    return page.locator("#textgen-output textarea").input_value(), seed


def test_the_seed_is_random_by_default_shown_and_reusable(page, monkeypatch):
    monkeypatch.delenv("MODELDECK_SEED", raising=False)  # the app's own default: no fixed seed
    open_tab(page, "✍️ 文本生成")
    seed_box = page.locator("#textgen-seed input, #textgen-seed textarea").first
    assert seed_box.input_value() == ""  # empty, not 0: empty means random
    page.locator("#textgen-prompt textarea").fill("今天天气很好，我们一起去")
    page.locator("#textgen-run").click()
    first_text, first_seed = finished_run(page)
    page.locator("#textgen-run").click()  # a second click, the seed untouched
    second_text, second_seed = finished_run(page, seed_other_than=first_seed)
    assert second_seed != first_seed and seed_box.input_value() == ""
    page.locator("#textgen-seed-reuse").click()  # one click puts the last seed back
    page.wait_for_function("s => document.querySelector('#textgen-seed input, #textgen-seed textarea')?.value === s",
                           arg=second_seed)
    page.locator("#textgen-seed-random").click()
    page.wait_for_function("() => document.querySelector('#textgen-seed input, #textgen-seed textarea')?.value === ''")
    seed_box.fill(first_seed)  # typing the first shown seed back reproduces the first text
    page.locator("#textgen-run").click()
    again_text, again_seed = finished_run(page, seed_other_than=second_seed)
    assert again_seed == first_seed and again_text == first_text


def test_more_sequences_and_greedy_decoding_show_in_the_output(page):
    open_tab(page, "✍️ 文本生成")
    prompt = page.locator("#textgen-prompt textarea")
    prompt.fill("他好")
    sequences = page.locator("#textgen-sequences input[type=number]")
    sequences.fill("3")
    sequences.press("Enter")
    page.locator("#textgen-run").click()
    page.wait_for_function("() => document.querySelector('#textgen-output textarea')?.value.includes('【3】')")
    page.locator("#textgen-status").get_by_text("total_tokens").wait_for()
    temperature = page.locator("#textgen-temperature input[type=number]")
    temperature.fill("0")
    temperature.press("Enter")
    sequences.fill("1")
    sequences.press("Enter")
    outputs = []
    # Alternate prompts of 3 and 6 tokens: a finished run's status names its own prompt's length.
    for text, tokens in [("我是猫", 3), ("你好你好你好", 6), ("我是猫", 3)]:
        prompt.fill(text)
        page.locator("#textgen-run").click()
        page.wait_for_function("""n => {
            const m = document.querySelector('#textgen-status')?.innerText.match(/prompt_tokens\\s*(\\d+)/);
            return m && m[1] === String(n) && document.querySelector('#textgen-status')?.innerText.includes('total');
        }""", arg=tokens)
        outputs.append(page.locator("#textgen-output textarea").input_value())
        assert "seed" not in page.locator("#textgen-status").inner_text()  # greedy: no seed to show
    assert outputs[0] == outputs[2] and outputs[0].startswith("我是猫") and "【" not in outputs[0]


def test_chat_send_empty_then_a_message_then_clear(page):
    page.locator("#chat-send").click()
    page.get_by_text("Enter a message first").first.wait_for()  # an empty box says what to do
    page.get_by_text("⚙️ 生成参数").click()
    most = page.locator("#chat-max-new input[type=number]")
    most.fill("16")  # a short reply: this test is about what the buttons change
    most.press("Enter")
    page.locator("#chat-input textarea").fill("你好")
    page.locator("#chat-send").click()
    messages = page.locator("#chatbot .message-row")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message-row').length >= 2")
    page.locator("#chat-status").get_by_text("total_tokens").wait_for()
    assert page.locator("#chat-input textarea").input_value() == ""
    assert "你好" in messages.first.inner_text()
    page.locator("#chat-clear").click()
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message-row').length === 0")


def test_classification_example_then_another_model(page):
    open_tab(page, "🏷️ 文本分类")
    page.get_by_text("这家店的服务太好了，下次还来！").first.click()  # an example fills the box
    wait_filled(page, "classify-text")
    page.locator("#classify-run").click()
    labels = page.locator("#classify-labels")
    labels.get_by_text("正面 positive").first.wait_for()
    before = labels.inner_text()
    page.locator("#classify-model input").click()
    page.get_by_role("option", name="Tiny English sentiment").click()
    page.locator("#classify-run").click()
    page.wait_for_function("b => (e => !!e && e.innerText !== b)(document.querySelector('#classify-labels'))",
                           arg=before)
    assert "负面 negative" in labels.inner_text()  # the other model's scores, every label shown


def test_caption_only_then_edit_rewrite_and_voice_again(page):
    upload_picture(page)
    page.locator("#story-caption-only").click()
    wait_filled(page, "story-caption")
    assert page.locator("#story-text textarea").input_value() == ""  # caption only: no story yet
    assert page.locator("#story-caption-en textarea").input_value()
    page.locator("#story-caption textarea").fill("一只猫坐在红色的椅子上")
    page.locator("#story-rewrite").click()
    wait_filled(page, "story-text")
    page.wait_for_function("() => !document.querySelector('#story-status .generating')")  # one step at a time
    page.locator("#story-text textarea").fill("从前有一只猫。它很好。")
    page.locator("#story-revoice").click()
    page.locator("#story-audio a[href*='/gradio_api/file=']").wait_for()


def test_rewrite_writes_from_the_caption_in_the_story_language_as_the_first_story_did(page, monkeypatch):
    from gates import wait_until
    from ui import story_tab

    asked = []
    story = story_tab.adapters.story
    monkeypatch.setattr(story_tab.adapters, "story", lambda caption, *args: asked.append((caption, args[-1])) or story(
        caption, *args))  # the app runs in this process

    def rewritten() -> None:
        """Press Rewrite once the last step is over (a press while it ends is refused: press again)."""
        before = len(asked)
        busy = page.locator(".toast-body", has_text="still running")
        while len(asked) == before:
            page.locator("#story-rewrite").click()
            wait_until(lambda: len(asked) > before or busy.count() > 0, "the rewrite started or was refused")
            page.evaluate("() => document.querySelectorAll('.toast-close').forEach(x => x.click())")
            wait_until(lambda: busy.count() == 0, "the toast closed")
        page.wait_for_function("() => !document.querySelector('#story-status .generating')")

    upload_picture(page)
    page.locator("#story-language").get_by_text("English").click()
    page.locator("#story-caption-only").click()
    wait_filled(page, "story-caption-en")
    zh, en = (page.locator(f"#{box} textarea").input_value() for box in ("story-caption", "story-caption-en"))
    assert zh != en
    rewritten()  # before: the English story was written from the Chinese caption, unlike the first story
    assert asked == [(en, "en")]
    page.locator("#story-caption-en textarea").fill("a cat on a red chair")  # the English caption can be edited
    rewritten()
    page.locator("#story-language").get_by_text("中文").click()
    rewritten()
    assert asked == [(en, "en"), ("a cat on a red chair", "en"), (zh, "zh")]
    page.locator("#story-caption-en textarea").fill("")
    rewritten()  # no English caption: the other one, as a first story after a failed translation
    page.locator("#story-language").get_by_text("English").click()
    rewritten()
    assert asked[3:] == [(zh, "zh"), (zh, "en")]


def test_enter_classifies_and_shift_enter_starts_a_new_line(page):
    open_tab(page, "🏷️ 文本分类")
    box = page.locator("#classify-text textarea")
    box.fill("这家店的服务太好了，")
    box.press("Shift+Enter")  # a new line, not a classification
    box.type("下次还来！")
    assert box.input_value() == "这家店的服务太好了，\n下次还来！"
    assert page.locator("#classify-labels").get_by_text("正面 positive").count() == 0
    box.press("Enter")
    labels = page.locator("#classify-labels")
    labels.get_by_text("正面 positive").first.wait_for()
    assert labels.get_by_text("负面 negative").count() >= 1 and re.search(r"\d+%", labels.inner_text())
    assert box.input_value() == "这家店的服务太好了，\n下次还来！"  # the text stays to edit and classify again


STORY_KEY = "modeldeck-picture-story"


def kept_story(page) -> dict:
    """The picture story the browser keeps now, decrypted ({} when none)."""
    from ui.browser_store import decrypt
    from ui.story_saved import STORE_SECRET

    stored = page.evaluate("key => localStorage.getItem(key)", STORY_KEY)
    return decrypt(stored, STORE_SECRET) if stored else {}


def wait_kept(page, condition, what: str) -> None:
    """Wait until the kept picture story satisfies ``condition`` (a save with it has reached the browser)."""
    from gates import wait_until

    wait_until(lambda: condition(kept_story(page)), what)


@contextmanager
def first_call_held(fn, *, seconds: float):
    """The app's event handler ``fn``: its first call from now on waits ``seconds`` before it runs."""
    import time

    import app

    [block_fn] = [b for b in app.demo.fns.values() if b.fn is fn]
    held = []

    def slow(*args):
        if not held:
            held.append(True)
            time.sleep(seconds)
        return fn(*args)

    block_fn.fn = slow
    try:
        yield
    finally:
        block_fn.fn = fn


def test_a_reload_brings_the_picture_story_back_and_clear_forgets_it(page, tmp_path):
    upload_picture(page)
    page.locator("#story-language").get_by_text("English").click()
    page.locator("#story-run").click()
    page.locator("#story-audio a[href*='/gradio_api/file=']").wait_for()
    page.wait_for_function("() => !document.querySelector('#story-status .generating')")
    # The step's own save (after its end, with the audio) goes first: an edit typed before it lands is saved
    # anyway (the save sends what the page shows), but the wait below would take the step's save for the edit's.
    wait_kept(page, lambda kept: kept.get("audio"), "the finished story kept with its audio")
    caption = page.locator("#story-caption textarea").input_value()
    page.locator("#story-text textarea").fill("The cat I edited.")
    page.locator("#story-caption textarea").click()  # leaving the story box keeps the edit
    wait_kept(page, lambda kept: kept.get("story") == "The cat I edited.", "the edit kept")

    # The page's first restore call (its load, before the browser's store is read: nothing to restore) is held
    # while the tab opens and the store arrives, as a loaded machine makes it: the store's own call must follow.
    with first_call_held(story_saved.restore, seconds=3):
        page.reload()
        open_tab(page, "🖼️ 看图讲故事")
        page.wait_for_function("() => document.querySelector('#story-text textarea')?.value === 'The cat I edited.'")
    assert page.locator("#story-caption textarea").input_value() == caption
    assert page.locator("#story-caption-en textarea").input_value()
    assert page.locator("#story-image img").count() >= 1  # the picture is back
    assert page.locator("#story-audio a[href*='/gradio_api/file=']").count() == 1  # and the audio
    assert page.locator("#story-language input[value='en']").is_checked()
    assert "已恢复" in page.locator("#story-status").inner_text()
    fake = tmp_path / "notes.jpg"  # the restore updated the picture box: it still names a file that is no picture
    fake.write_text("just some text, not a picture")
    page.locator("#story-image input[type=file]").set_input_files(str(fake))
    page.get_by_text("cannot be read as a picture").first.wait_for()

    page.locator("#story-clear").click()
    page.wait_for_function("() => document.querySelector('#story-text textarea')?.value === ''")
    wait_kept(page, lambda kept: kept == {}, "the story forgotten")  # a reload then: test_story_saved.py
    assert page.locator("#story-caption textarea").input_value() == ""
    assert page.locator("#story-image img").count() == 0


def test_text_generation_stop_says_so_with_the_seed_and_a_new_run_drops_the_old_colours(page):
    from gates import PassGate
    from pipelines import registry

    open_tab(page, "✍️ 文本生成")
    page.locator("#textgen-prompt textarea").fill("今天天气很好")
    page.locator("#textgen-seed input, #textgen-seed textarea").first.fill("77")
    page.locator("#textgen-run").click()
    page.locator("#textgen-colors .md-tok").first.wait_for()  # a finished run: its text coloured
    status = page.locator("#textgen-status")
    with PassGate(registry.get_model("textgen"), permits=0):  # the next run waits at its first forward pass
        page.locator("#textgen-run").click()
        page.wait_for_function("() => !document.querySelector('#textgen-colors .md-tok')")  # gone at the click
        page.wait_for_function("() => !document.querySelector('#textgen-status')?.innerText.includes('total_tokens')")
        page.locator("#textgen-run").click()  # a second run at once would write over this one's output
        page.get_by_text("The last run is still going").first.wait_for()
        page.locator("#textgen-stop").click()
        status.get_by_text("已停止").wait_for()
    assert "seed 77" in status.inner_text()  # shown from the start of the run, kept by the Stop
    assert page.locator("#textgen-colors .md-tok").count() == 0


def test_the_zip_shown_is_of_the_story_shown_and_stop_says_so(page):
    from gates import PassGate, wait_until
    from pipelines import registry

    upload_picture(page)
    page.locator("#story-caption textarea").fill("一只猫坐在红色的椅子上")
    page.locator("#story-text textarea").fill("从前有一只猫。")
    page.locator("#story-bundle").click()
    zipped = page.locator("#story-bundle-file a[href*='/gradio_api/file=']")
    zipped.wait_for()
    page.locator("#story-text textarea").fill("从前有一只猫。它改过了。")  # before, the old zip stayed, as if of this story
    zipped.wait_for(state="detached")
    page.locator("#story-bundle").click()
    zipped.wait_for()
    with PassGate(registry.get_model("chat"), permits=3) as gate:  # the prompt and two tokens, then the model waits
        page.locator("#story-rewrite").click()
        wait_until(lambda: gate.arrived > 3, "the story is being written")
        page.locator("#story-stop").click()
        page.locator("#story-status").get_by_text("已停止 / stopped").wait_for()  # before, nothing said it was stopped
    assert zipped.count() == 0  # the new story's start hid the zip of the old one


def test_download_all_refuses_a_new_picture_with_the_last_pictures_story(page):
    from test_browser import ROOT
    from test_browser_bad_input import told

    upload_picture(page)
    page.locator("#story-caption textarea").fill("一只猫坐在红色的椅子上")  # typed by hand for this picture: packed
    page.locator("#story-text textarea").fill("从前有一只猫。")
    zipped = page.locator("#story-bundle-file a[href*='/gradio_api/file=']")
    page.locator("#story-bundle").click()
    zipped.wait_for()
    page.locator("#story-image input[type=file]").set_input_files(str(ROOT / "example_images" / "coffee.jpg"))
    zipped.wait_for(state="detached")
    page.locator("#story-bundle").click()
    told(page, "The captions and story were written for the previous picture")  # before: coffee with the cat story
    assert page.locator("#story-text textarea").input_value() == "从前有一只猫。"  # nothing shown is lost
    assert zipped.count() == 0
    page.locator("#story-caption-only").click()  # captions for this picture: it may be packed again
    page.wait_for_function("() => !document.querySelector('#story-caption textarea')?.value.includes('红色的椅子')")
    for _ in range(30):  # refused while the captions' step has not ended yet
        page.locator("#story-bundle").click()
        try:
            zipped.wait_for(timeout=1000)
            break
        except Exception:
            page.evaluate("() => document.querySelectorAll('.toast-close').forEach(x => x.click())")
    assert zipped.is_visible()
    page.wait_for_timeout(1000)  # a refusal's toast still on its way is closed too: the next one is new
    page.evaluate("() => document.querySelectorAll('.toast-close').forEach(x => x.click())")
    page.locator("td[role=gridcell]", has_text="冒险 · adventure").click()  # an example row: another picture
    page.wait_for_function("() => document.querySelector('#story-language input[value=en]')?.checked")
    page.locator("#story-bundle").click()
    told(page, "The captions and story were written for the previous picture")
    before = page.locator("#story-text textarea").input_value()
    page.locator("#story-rewrite").click()  # a story from the coffee's captions is still not the astronaut's
    page.wait_for_function("s => document.querySelector('#story-text textarea')?.value !== s", arg=before)
    for _ in range(60):  # Voice again is refused while the rewrite runs: once it is taken, the rewrite has ended
        page.locator("#story-revoice").click()
        try:
            page.locator(".toast-body", has_text="still running").first.wait_for(timeout=700)
        except Exception:
            break
        page.evaluate("() => document.querySelectorAll('.toast-close').forEach(x => x.click())")
    # the voicing it started ends too: a story changed while a step runs is taken for that step's (see
    # story_tab.edited_by_hand), and how long espeak takes decided whether the edit below was the user's
    page.wait_for_function("() => !document.querySelector('#story-status .generating')")
    page.locator("#story-bundle").click()
    told(page, "The captions and story were written for the previous picture")
    page.locator("#story-text textarea").fill("An astronaut walks on the moon.")  # the user's own edit: theirs
    page.locator("#story-bundle").click()
    zipped.wait_for()
    page.reload()  # the picture and texts restored together belong together
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-status").get_by_text("Your last picture story is back").wait_for()
    assert page.locator("#story-text textarea").input_value() == "An astronaut walks on the moon."
    page.locator("#story-bundle").click()
    zipped.wait_for()
