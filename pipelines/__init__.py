"""ModelDeck's inference layer: plain Python in and out, no gradio.

Importing this package loads no model and imports neither torch nor transformers; models load on
first use through ``registry``.
"""

from .batch_classify import RowResult, classify_rows
from .caption import Caption, caption_image, translate_to_chinese
from .chat import DEFAULT_SYSTEM_PROMPT, chat
from .classify import classify_text, classify_texts, readable_label
from .devices import device_and_dtype_names
from . import settings
from .errors import (BusyError, ConfigError, InvalidInputError, ModelUnavailableError, OutOfMemoryError,
                     PipelineError, RemoteBusyError, RemoteUnavailableError, SpeechUnavailableError, StorageError)
from .images import load_image
from .next_token import Candidate, NextTokenView, next_token
from .next_token_step import Step, sample_step
from .picture_story import PictureStoryUpdate, picture_story
from .registry import get_model, loaded_models, model_names, preload
from .speech import Speech, synthesize_speech
from .story import STYLES, write_story
from .decoding import Usage
from .sampling import SamplingParams
from .scoring import prompt_logprobs, prompt_text
from .streaming import TextStream
from .textgen import generate_text
from .tokens import TokenLogprob

__all__ = [
    "BusyError", "Candidate", "Caption", "ConfigError", "DEFAULT_SYSTEM_PROMPT", "InvalidInputError",
    "ModelUnavailableError", "NextTokenView", "OutOfMemoryError", "PictureStoryUpdate", "PipelineError", "RemoteBusyError",
    "RemoteUnavailableError", "RowResult", "STYLES", "SamplingParams", "Speech", "SpeechUnavailableError", "Step", "StorageError",
    "TextStream", "TokenLogprob", "Usage", "caption_image", "chat", "classify_rows", "classify_text", "classify_texts",
    "device_and_dtype_names", "generate_text", "get_model", "load_image", "loaded_models", "model_names",
    "next_token", "picture_story", "preload", "prompt_logprobs", "prompt_text", "readable_label", "sample_step", "synthesize_speech",
    "translate_to_chinese", "write_story",
]
