"""Picture → story → voice: when does the user first see something?

ModelDeck's path (lazy models, caption shown first, the story model loading while the caption is
computed, the story streamed, greedy caption) versus the reference app's design (every model loaded
at import, 3-beam caption, the whole story generated, then speech; nothing shown until all is done).
Both start from nothing loaded; speech uses the offline voice so the network plays no part."""

from __future__ import annotations

import os
import statistics
import time

from _common import parser, real_size_env, report, tiny_env

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_images", "cat.jpg")


def modeldeck_run(length: int) -> dict[str, float]:
    from pipelines import picture_story, registry

    registry.clear()
    start = time.perf_counter()
    marks: dict[str, float] = {}
    for update in picture_story(EXAMPLE, "童话", length, 5, "zh"):
        now = time.perf_counter() - start
        if update.stage == "caption":
            marks.setdefault("caption shown", now)  # the captioner's text; its translation follows
        elif update.stage == "story" and "first story token" not in marks:
            marks["first story token"] = now
        elif update.stage == "audio":
            marks["story complete"] = marks.get("story complete", now)
            marks["audio ready"] = now
        if update.stage == "story":
            marks["story complete"] = now
    return marks


def eager_run(length: int) -> dict[str, float]:
    """The reference design: load everything, then caption (3 beams), story, speech; show at the end."""
    import torch
    from PIL import Image
    from pipelines import registry, synthesize_speech
    from pipelines.caption import translate_to_chinese

    registry.clear()
    start = time.perf_counter()
    for role in ("captioner", "translator", "chat"):
        registry.get_model(role)
    cap = registry.get_model("captioner")
    pixels = cap.processor(images=Image.open(EXAMPLE).convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = cap.model.generate(pixel_values=pixels, max_length=50, num_beams=3)
    caption = translate_to_chinese(cap.processor.decode(out[0], skip_special_tokens=True) or "a cat")
    llm = registry.get_model("chat")
    prompt = f"任务：根据图片描述写童话风格故事\n要求：字数控制在{length}字左右\n图片描述：{caption}\n故事："
    ids = llm.processor(prompt, return_tensors="pt")
    with torch.inference_mode():
        story_ids = llm.model.generate(**ids, max_new_tokens=int(length * 1.5) + 32, do_sample=True,
                                       temperature=0.7, top_p=0.9, pad_token_id=llm.processor.pad_token_id)
    story = llm.processor.decode(story_ids[0][ids["input_ids"].shape[1]:], skip_special_tokens=True) or "故事。"
    synthesize_speech(story[:length] + "。", "zh")
    done = time.perf_counter() - start
    return {"caption shown": done, "first story token": done, "story complete": done, "audio ready": done}


def main() -> None:
    args = parser(__doc__).parse_args()
    os.environ.update(tiny_env() if args.tiny else real_size_env(streamed_text=True))
    os.environ["MODELDECK_TTS"] = "espeak"
    os.environ.setdefault("MODELDECK_AUDIO_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "modeldeck-bench-audio"))
    length = 30 if args.tiny else 150
    from pipelines.engine import engine

    runs = {"modeldeck": [], "eager": []}
    for _ in range(args.repeats):  # alternate, so machine noise hits both alike
        # On ModelDeck's engine thread: torch work on a second thread would slow both (pipelines/engine.py).
        runs["eager"].append(engine.call(eager_run, length))
        runs["modeldeck"].append(modeldeck_run(length))
    rows = []
    for mark in ("caption shown", "first story token", "story complete", "audio ready"):
        md = statistics.median(r[mark] for r in runs["modeldeck"])
        eager = statistics.median(r[mark] for r in runs["eager"])
        rows.append([mark, md, eager, eager / md])
    report(f"models: {'tiny' if args.tiny else 'default-model sizes, random weights'}; story length {length}; "
           f"median of {args.repeats}, cold (nothing loaded) each run; seconds from the click",
           ["first visible", "ModelDeck (s)", "eager reference design (s)", "× sooner"], rows)


if __name__ == "__main__":
    main()
