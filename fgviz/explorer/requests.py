"""What a request to the app brings besides its values: who sends it and the upload as the one decoder takes it.

Duck-typed over Gradio's request and file payloads, so `fgviz` stays free of Gradio (app.py passes them in).
"""

from __future__ import annotations

import base64
import os
from typing import Any


def client_of(request: Any) -> str | None:
    """Who sends a request, for the rate of new model loads: on a Space the address its proxy forwards (Gradio sees
    the proxy's), elsewhere the peer's address; the session when neither is known."""
    if request is None:
        return None
    forwarded = request.headers.get("x-forwarded-for", "") if os.environ.get("SPACE_ID") else ""
    return forwarded.split(",")[0].strip() or getattr(request.client, "host", None) or request.session_hash


def upload_value(payload: Any) -> Any:
    """An upload as the one decoder (`decode_image`) takes it: the file Gradio stored, or a data URL's bytes. Events
    run with `preprocess=False`, so Gradio never opens an image itself (it failed on a non-image before the app's
    error path could say why) and every input reaches the handler as sent, for the app to check."""
    if isinstance(payload, dict):
        url = payload.get("url") or ""
        return base64.b64decode(url.split(",", 1)[1]) if url.startswith("data:") else payload.get("path")
    return payload
