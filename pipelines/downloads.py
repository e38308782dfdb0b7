"""Files made for the user to download: chat exports, result tables, story bundles.

They are written into the audio folder (``MODELDECK_AUDIO_DIR``), whose cleanup already bounds disk
use by age and total size, so every generated file is covered by one mechanism. A file appears
under its final name only once it is complete; names carry a random part, so two visitors never
share or overwrite a file, and no name is ever taken from user input.
"""

from __future__ import annotations

import os
import re
import uuid

from .errors import StorageError
from .speech import audio_dir, cleanup, remove_file

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def save_download(data: bytes, stem: str, extension: str) -> str:
    """Write ``data`` as ``<stem>-<random>.<extension>`` in the audio folder and return its path."""
    folder = audio_dir()
    stem = _SAFE.sub("-", stem).strip("-")[:40] or "modeldeck"
    extension = _SAFE.sub("", extension)[:8] or "bin"
    path = os.path.join(folder, f"{stem}-{uuid.uuid4().hex[:10]}.{extension}")
    temp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}.{extension}")
    try:
        os.makedirs(folder, exist_ok=True)
        cleanup(folder)
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except OSError as exc:
        remove_file(temp)
        raise StorageError(f"无法保存下载文件（{exc.strerror or exc}）。请检查 MODELDECK_AUDIO_DIR 是否可写、磁盘是否已满。",
                           f"The download could not be saved ({exc.strerror or exc}). Check that MODELDECK_AUDIO_DIR "
                           "is writable and the disk is not full.") from exc
    return path

