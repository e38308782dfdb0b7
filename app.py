"""ModelDeck: a playground for small Hugging Face models (chat, text generation, classification,
picture → story → voice). ``build_demo()`` assembles the app; ``python app.py`` serves it.

Importing this module builds the interface only: no model is loaded and torch is not imported
until a request needs a model.
"""

from __future__ import annotations

import logging
import os
import threading
import time

# huggingface_hub 2.x downloads through hf_xet (hf_transfer is ignored); its high-performance mode
# uses every core and more memory for faster first downloads on a Space.
os.environ.setdefault("HF_XET_HIGH_PERFORMANCE", "1")

import gradio as gr  # noqa: E402

from pipelines import ConfigError, backends, preload, settings  # noqa: E402
from pipelines.images import use_own_pixel_limit  # noqa: E402
from server import launch_arguments  # noqa: E402
from ui import about_tab, admission, api, chat_tab, classify_tab, next_token_tab, story_tab, textgen_tab  # noqa: E402
from ui.common import I18N, t  # noqa: E402

log = logging.getLogger("modeldeck")

CSS = "#story-audio audio { width: 100%; } footer { opacity: 0.7; }" + next_token_tab.CSS + chat_tab.CSS


def build_demo() -> gr.Blocks:
    """Return the ModelDeck interface with its API endpoints (nothing is loaded yet)."""
    with gr.Blocks(title="ModelDeck · 小模型游乐场") as demo:
        gr.Markdown(t("md_title"))
        with gr.Tabs():
            with gr.Tab(t("md_tab_chat"), id="chat"):
                chat_tab.build()
            with gr.Tab(t("md_tab_textgen"), id="textgen"):
                textgen_tab.build()
            with gr.Tab(t("md_tab_next_token"), id="next_token"):
                next_token_tab.build()
            with gr.Tab(t("md_tab_classify"), id="classify"):
                classify_tab.build()
            with gr.Tab(t("md_tab_story"), id="story"):
                story_tab.build()
            with gr.Tab(t("md_tab_about"), id="about") as about:
                status = about_tab.build()
        about.select(about_tab.status_markdown, None, status, api_visibility="private", queue=False)
        api.register()
    return demo


def check_settings() -> None:
    """Stop with the message that names a malformed ``MODELDECK_*`` value and shows a correct one."""
    try:
        settings.check_all()
        backends.check_roles()
        backends.check_keys()
    except ConfigError as exc:
        raise SystemExit(f"ModelDeck cannot start / 无法启动: {exc}") from None


if __name__ == "__main__":
    check_settings()  # before the tabs read the model lists
demo = build_demo()
# Gradio opens uploads with PIL before our size check; let ours (MODELDECK_MAX_IMAGE_PIXELS, checked from
# the header before any decoding) be the one that answers.
use_own_pixel_limit()


def preload_roles() -> list[str]:
    """The roles named by ``MODELDECK_PRELOAD`` ("all", or a comma-separated list; empty = lazy)."""
    return list(settings.get("MODELDECK_PRELOAD"))


def start_preload(roles: list[str]) -> threading.Thread | None:
    """Load the named roles' models in a background thread, never blocking the page."""
    if not roles:
        return None

    def work() -> None:
        started = time.perf_counter()
        for problem in preload(roles if roles != ["all"] else "all"):
            log.warning("preload: %s", problem)
        log.info("preload finished in %.1f s", time.perf_counter() - started)

    thread = threading.Thread(target=work, name="modeldeck-preload", daemon=True)
    thread.start()
    return thread


def launch_settings() -> dict:
    """The arguments ``demo.launch`` gets: address, upload cap, translations, theme, the /v1 routes, MCP."""
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    return {"server_name": os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), "server_port": int(port),
            "max_file_size": f"{settings.get('MODELDECK_MAX_UPLOAD_MB')}mb", "i18n": I18N,
            "theme": gr.themes.Soft(), "css": CSS, "show_error": False, **launch_arguments()}


def configure_queue(app: gr.Blocks) -> gr.Blocks:
    """Turn the queue on with a bounded line per model group and a bound on the total (``ui.admission``)."""
    app.queue(default_concurrency_limit=1, max_size=admission.total_length())
    admission.install(app)
    return app


def main() -> None:
    check_settings()
    logging.basicConfig(level=settings.get("MODELDECK_LOG_LEVEL"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_queue(demo)
    start_preload(preload_roles())
    demo.launch(**launch_settings())


if __name__ == "__main__":
    main()
