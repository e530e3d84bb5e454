"""Pytest fixtures wiring the real ``huggingface_hub`` client (and transformers / timm on top of it) to a
:class:`tests.hub_server.LoopbackHub`, in-process.

Use from a test module (or a conftest) with::

    from hub_fixtures import loopback_hub  # noqa: F401  (pytest fixture; `tests.hub_fixtures` if tests/ is a package)

Why the monkeypatching: ``huggingface_hub.constants`` reads its environment variables once, at import time
(``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_XET``, cache/token paths...),
so setting ``HF_ENDPOINT`` & co. in ``os.environ`` is not enough once it has been imported. Every reader in
``huggingface_hub`` (and transformers' ``utils/hub.py``, timm's ``_hub.py``) goes through ``constants.<NAME>``
at call time, except a few module-level copies patched below. The environment is set as well, so that
code importing ``huggingface_hub`` for the first time during the test, or subprocesses, see the same values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:  # tests/ as a package, or (pytest's default "prepend" import mode, no __init__.py) as a sys.path dir
    from .hub_server import LoopbackHub
except ImportError:
    from hub_server import LoopbackHub


def wire_hf_client(monkeypatch: pytest.MonkeyPatch, url: str, home: Path) -> None:
    """Point huggingface_hub at `url` (online, Xet off, empty cache under `home`, no ambient token)."""
    import huggingface_hub
    from huggingface_hub import constants

    home = Path(home)
    hub_cache = home / "hub"
    hub_cache.mkdir(parents=True, exist_ok=True)
    token_path = home / "token"

    env = {
        "HF_ENDPOINT": url,
        "HF_HUB_OFFLINE": "0",  # other tests set it to 1; constants reads HF_HUB_OFFLINE *or* TRANSFORMERS_OFFLINE
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",  # uploads pick Xet client-side whenever hf_xet is installed: force plain LFS
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(token_path),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # No ambient credentials: a test that passes no token really sends none.
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN",
                "HUGGINGFACE_CO_STAGING", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        monkeypatch.delenv(key, raising=False)

    # Module-level constants captured at import time.
    url = url.rstrip("/")
    patches = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {urlsplit(url).hostname}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(token_path),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
    }
    for name, value in patches.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)

    # Copies made with `from ..constants import X` / computed from ENDPOINT at import time.
    from huggingface_hub.utils import _cache_manager, _http

    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", str(hub_cache), raising=False)
    if hasattr(_http, "_HUB_ORIGINS") and hasattr(_http, "_url_origin"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS | {_http._url_origin(url)}))
    git_credential = sys.modules.get("huggingface_hub.utils._git_credential")
    if git_credential is not None:
        monkeypatch.setattr(git_credential, "ENDPOINT", url, raising=False)

    # transformers shares one HfApi whose endpoint was fixed when it was built (maybe for another server): fresh one.
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)

    # The shared httpx client keeps pooled connections (and read proxy env vars when it was built): start fresh.
    huggingface_hub.close_session()


@pytest.fixture
def loopback_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A running :class:`LoopbackHub` with huggingface_hub / transformers / timm pointed at it.

    The HF cache is an empty ``tmp_path / "hf_home"``; ``hub.token`` (``"hf_test_xyz"``) is the valid write token.
    """
    import huggingface_hub

    with LoopbackHub() as hub:
        wire_hf_client(monkeypatch, hub.url, tmp_path / "hf_home")
        try:
            yield hub
        finally:
            huggingface_hub.close_session()  # drop keep-alive connections to the server before it stops
