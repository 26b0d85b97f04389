"""/local: the in-browser page (``emotionlab.web``) served by ``emotionlab serve``, the same files
`emotionlab export --web` writes. The service only hands out the files: BlazeFace and the classifier run in the
visitor's browser, and photos never reach the service. A name from the client is looked up in the site's file
list, never joined to a path."""

from __future__ import annotations

from functools import cache

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response

from emotionlab.errors import EmotionlabError
from emotionlab.web.site import PAGE_POLICY, media_type, site_files

LOCAL_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}


@cache
def _files() -> dict:
    return site_files()


def add_local_page(app: FastAPI) -> None:
    """Add /local (a redirect to /local/) and /local/{name} to ``app``, outside its OpenAPI schema."""

    @app.get("/local", include_in_schema=False)
    async def local_root() -> RedirectResponse:
        return RedirectResponse("local/")  # the page's relative links need the trailing slash

    @app.get("/local/{name:path}", include_in_schema=False)
    async def local(name: str) -> Response:
        try:
            files = _files()
        except EmotionlabError as error:  # e.g. ONNX Runtime Web not vendored in this install
            raise HTTPException(503, f"the in-browser page is unavailable: {error}") from error
        source = files.get(name or "index.html")
        if source is None:
            raise HTTPException(404, "not found")
        kind = media_type(name or "index.html")
        if isinstance(source, bytes):
            return Response(source, media_type=kind, headers=LOCAL_HEADERS)
        return FileResponse(source, media_type=kind, headers=LOCAL_HEADERS)
