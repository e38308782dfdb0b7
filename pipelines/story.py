"""Write a story about a picture's caption in a chosen style, length and creativity, streamed."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

from . import registry
from .backends import chat_backend, max_new_tokens_cap
from .inputs import choice, clean_text, language as parse_language, number, seed as parse_seed
from .sampling import SamplingParams
from .streaming import TextStream

# The reference app's eleven styles, plus a fable; each with its English name.
STYLES: dict[str, str] = {
    "搞笑": "funny", "武侠": "wuxia (martial arts)", "爱情": "romance", "动作": "action",
    "科幻": "science fiction", "悬疑": "mystery", "奇幻": "fantasy", "温馨": "heart-warming",
    "恐怖": "horror", "冒险": "adventure", "童话": "fairy tale", "寓言": "fable",
}
_STYLE_ALIASES = {**{k: k for k in STYLES}, **{v: k for k, v in STYLES.items()},
                  **{v.split(" ")[0]: k for k, v in STYLES.items()}, "sci-fi": "科幻", "wuxia": "武侠"}
# What the tab starts with, and what a script gets for a setting it leaves out (None or blank).
DEFAULT_STYLE, DEFAULT_LENGTH, DEFAULT_CREATIVITY, DEFAULT_LANGUAGE = "温馨", 300, 5, "zh"
MIN_LENGTH, MAX_LENGTH = 50, 1000  # characters (zh) or words (en): a paragraph to a short story
MIN_CREATIVITY, MAX_CREATIVITY = 0, 10
OVERSHOOT = 1.2  # a story may run this far past the asked length before it is cut
SHORTEST_CUT = 0.5  # a sentence end kept when cutting must leave at least this share of the length
# Tokens per Chinese character / per English word for the tiny and Qwen vocabularies, with headroom.
TOKENS_PER_UNIT = {"zh": 1.5, "en": 1.7}
TOKEN_HEADROOM = 32  # room for the last sentence to end after the length is reached
STORY_TOP_P = 0.9  # creativity moves the temperature; the nucleus stays fixed to cut the unlikely tail
MAX_CAPTION_CHARS = 2000  # a caption is a sentence; an edited one may be a paragraph, never a book
MAX_WRITTEN_CHARS = 20_000  # the story a record keeps: far above a 1000-word story (the page keeps as much)
MIN_REPETITION_PENALTY = 1.05  # long free text loops without a mild penalty (the model may ask for more)
_ENDS = {"zh": re.compile(r"[。！？!?…]+[”」』\"')）]*"), "en": re.compile(r"[.!?]+[\"')”]*(?=\s|$)")}


def story_size(text: str, language: str) -> int:
    """Length as the user counts it: characters (no spaces) in Chinese, words in English."""
    return len(re.sub(r"\s", "", text)) if language == "zh" else len(text.split())


def trim_to_sentence(text: str, target: int, language: str) -> str:
    """Cut ``text`` at the sentence end nearest ``target`` without running far past it."""
    text = text.strip()
    limit = int(target * OVERSHOOT)
    if story_size(text, language) <= limit:
        return text
    ends = [m.end() for m in _ENDS[language].finditer(text)]
    fitting = [e for e in ends if story_size(text[:e], language) <= limit]
    if fitting and story_size(text[:fitting[-1]], language) >= target * SHORTEST_CUT:
        return text[:fitting[-1]].strip()
    # No sentence end near the target: cut at the target and mark the cut.
    if language == "zh":
        kept, count = [], 0
        for ch in text:
            count += not ch.isspace()
            if count > target:
                break
            kept.append(ch)
        return "".join(kept).rstrip("，、；：,;: ") + "……"
    return " ".join(text.split()[:target]).rstrip(",;: ") + "…"


def end_on_sentence(text: str, language: str) -> str:
    """``text`` ending on its last whole sentence (the cut marked "……"/"…" when that would drop over half of it)."""
    text = text.strip()
    ends = [m.end() for m in _ENDS[language].finditer(text)]
    if ends and ends[-1] == len(text):
        return text
    if ends and story_size(text[:ends[-1]], language) >= story_size(text, language) * SHORTEST_CUT:
        return text[:ends[-1]]
    return text.rstrip("，、；：,;: ") + ("……" if language == "zh" else "…") if text else text


def _prompt(caption: str, style: str, length: int, language: str) -> list[dict[str, str]]:
    if language == "zh":
        return [{"role": "system", "content": f"你是一位擅长写{style}故事的中文作家。"},
                {"role": "user", "content": f"请根据下面的图片描述，写一个{style}风格的故事，约{length}字。"
                                            f"要求：只用中文；情节完整，有开头和结尾；语句通顺；直接输出故事正文，不要标题。\n"
                                            f"图片描述：{caption}"}]
    style_en = STYLES[style]
    return [{"role": "system", "content": f"You are a writer of {style_en} stories."},
            {"role": "user", "content": f"Write a {style_en} story of about {length} words based on the picture "
                                        "described below. Write in English, with a beginning and an end. "
                                        f"Output only the story, without a title.\nPicture: {caption}"}]


def caption_for_story(caption_zh: Any, caption_en: Any, language: str) -> str:
    """The caption a story in ``language`` is written from: the Chinese one for a Chinese story, the English one
    for an English story; the other one when that is empty (a failed translation, a caption typed in one box)."""
    zh, en = (c if isinstance(c, str) and c.strip() else "" for c in (caption_zh, caption_en))
    return (zh or en) if language == "zh" else (en or zh)


def creativity_to_temperature(creativity: float) -> float:
    """Map creativity 0–10 to a sampling temperature 0.2–1.2 (higher is freer)."""
    return round(0.2 + 0.1 * creativity, 3)


@dataclass
class StorySettings:
    """A story request's checked settings: canonical style and language, clamped numbers, their notices."""

    style: str
    length: int
    creativity: float
    language: str
    seed: int | None = None
    notices: list[str] = field(default_factory=list)


def story_settings(style: Any = DEFAULT_STYLE, length: Any = DEFAULT_LENGTH, creativity: Any = DEFAULT_CREATIVITY,
                   language: Any = DEFAULT_LANGUAGE, seed: Any = None) -> StorySettings:
    """Check every story setting before any model runs; raise ``InvalidInputError`` for an unusable one.

    A setting left out (None or blank) takes the tab's default, whichever it is."""
    notices: list[str] = []
    return StorySettings(
        style=choice(style, _STYLE_ALIASES, name_zh="故事风格", name_en="story style", default=DEFAULT_STYLE),
        length=number(length, name="length", lo=MIN_LENGTH, hi=MAX_LENGTH, notices=notices, integer=True,
                      default=DEFAULT_LENGTH),
        creativity=number(creativity, name="creativity", lo=MIN_CREATIVITY, hi=MAX_CREATIVITY, notices=notices,
                          default=DEFAULT_CREATIVITY),
        language=parse_language(language, default=DEFAULT_LANGUAGE), seed=parse_seed(seed), notices=notices)


def _plain_lines(text: str) -> str:
    """``text`` as a browser's text box shows it (a lone "\r" and "\r\n" become "\n"), without outer spaces."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


@dataclass(frozen=True)
class StoryRecord:
    """What wrote a story, kept with it (sliders may move after): its checked settings, the caption it was
    written from, its seed, the story model's id and, once known, the text it wrote (so an edit shows)."""

    style: str
    length: int
    creativity: float
    language: str
    caption: str
    seed: int | None
    model: str
    written: str | None = None

    def with_text(self, text: str) -> StoryRecord:
        """The record with what the model has written so far."""
        return replace(self, written=text[:MAX_WRITTEN_CHARS])

    def edited(self, story: str) -> bool | None:
        """Whether ``story`` is not what the model wrote (None: not known, a record kept before texts were)."""
        if self.written is None:
            return None
        return _plain_lines(story) != _plain_lines(self.written)

    def streamed(self, story: str) -> bool:
        """Whether ``story`` is the model's text or a beginning of it, as the page showed it while it streamed."""
        return self.written is not None and _plain_lines(self.written).startswith(_plain_lines(story))

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (for a page's state and the browser's store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> StoryRecord | None:
        """The record kept as ``as_dict`` made it, or None for anything else (a page's store can be edited)."""
        if not isinstance(value, dict):
            return None
        numbers = [value.get(k) for k in ("length", "creativity")]
        seed = value.get("seed")
        if (value.get("style") not in STYLES or value.get("language") not in _ENDS
                or any(isinstance(n, bool) or not isinstance(n, (int, float)) for n in numbers)
                or not MIN_LENGTH <= numbers[0] <= MAX_LENGTH or not MIN_CREATIVITY <= numbers[1] <= MAX_CREATIVITY
                or not (seed is None or isinstance(seed, int) and not isinstance(seed, bool))
                or not all(isinstance(value.get(k), str) for k in ("caption", "model"))):
            return None
        written = value.get("written")
        return cls(value["style"], int(numbers[0]), float(numbers[1]), value["language"],
                   value["caption"][:MAX_CAPTION_CHARS], seed, value["model"],
                   written[:MAX_WRITTEN_CHARS] if isinstance(written, str) else None)


class StoryStream(TextStream):
    """A story's stream of text; ``record`` says what is writing it."""

    def __init__(self, texts: Iterator[list[str]], *, record: StoryRecord, **kwargs: Any) -> None:
        super().__init__(texts, **kwargs)
        self.record = record


def shorter_than_asked(target: int, language: str, cap: int) -> str:
    """The notice that a story of ``target`` units may need more than the ``cap`` tokens one request may write."""
    unit_zh, unit_en = ("个汉字", "characters") if language == "zh" else ("个英文单词", "words")
    return (f"{target} {unit_zh}的故事可能需要超过故事模型一次能写的 {cap} 个词元：故事可能短一些，在整句处结束。"
            f"要写更长的故事，请调大 MODELDECK_MAX_NEW_TOKENS。 / A story of {target} {unit_en} may need more than "
            f"the {cap} tokens the story model writes at once: it may come out shorter, ending on a whole sentence. "
            "Raise MODELDECK_MAX_NEW_TOKENS for longer stories.")


def write_story(caption: str, style: str = DEFAULT_STYLE, length: int = DEFAULT_LENGTH,
                creativity: float = DEFAULT_CREATIVITY, language: str = DEFAULT_LANGUAGE, *, seed: Any = None,
                settings: StorySettings | None = None) -> StoryStream:
    """Return a stream of a story about ``caption`` that ends on a sentence near ``length``.

    ``length`` counts Chinese characters for ``language="zh"`` and words for ``"en"``. ``settings``
    (from ``story_settings``) replaces the separate arguments when they were checked earlier.
    """
    settings = settings or story_settings(style, length, creativity, language, seed)
    notices = list(settings.notices)
    text = clean_text(caption, field_zh="图片描述", field_en="caption", notices=notices, max_chars=MAX_CAPTION_CHARS)
    style_, target, language_ = settings.style, settings.length, settings.language
    backend = chat_backend("story")
    wanted = int(target * TOKENS_PER_UNIT[language_]) + TOKEN_HEADROOM
    cap = max_new_tokens_cap(backend)
    if wanted > cap:
        notices.append(shorter_than_asked(target, language_, cap))
    params = SamplingParams(max_new_tokens=min(wanted, cap),
                            temperature=creativity_to_temperature(settings.creativity), top_p=STORY_TOP_P,
                            repetition_penalty=max(MIN_REPETITION_PENALTY, backend.repetition_penalty),
                            seed=settings.seed)
    inner = backend.stream_chat(_prompt(text, style_, target, language_), params, notices)

    def texts() -> Iterator[list[str]]:
        last = ""
        try:
            for last in inner:
                yield [last]
                if story_size(last, language_) >= target * OVERSHOOT:
                    inner.cancel()  # long enough: stop the computation, not only the display
                    break
        finally:
            inner.close()
        ran_out = inner.usage.finish_reason == "length"  # the token budget ended it, mid-sentence as often as not
        if inner.usage.finish_reason == "cancelled" and story_size(last, language_) >= target * OVERSHOOT:
            inner.usage.finish_reason = "length"
        story = trim_to_sentence(last, target, language_)
        yield [end_on_sentence(story, language_) if ran_out and story == last.strip() else story]

    record = StoryRecord(style_, target, float(settings.creativity), language_, text, inner.seed,
                         registry.resolve("story").source)
    return StoryStream(texts(), record=record, cancel_event=inner.cancel_event, usage=inner.usage, seed=inner.seed,
                       notices=inner.notices)
