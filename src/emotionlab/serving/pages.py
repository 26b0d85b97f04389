"""The service's pages: the page to try it (/), its two static files, and the API docs (/docs).

They load only this service's own files (a Content-Security-Policy says so), and /static/ serves a fixed
list of names: a name from the client is looked up, never joined to a path.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from emotionlab.serving.api_docs import render_api_docs
from emotionlab.serving.local import add_local_page

STATIC = Path(__file__).parent / "static"

# The only files /static/ serves: a name from the client is looked up here, never joined to a path.
STATIC_FILES = {"faces.js": "text/javascript", "predict.js": "text/javascript", "predict.css": "text/css"}
# The pages load only this service's own files; the uploaded photo is shown from a blob: URL.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}


def add_pages(app: FastAPI) -> None:
    """Add /, /static/{name}, /docs and the in-browser page /local to ``app`` (outside its OpenAPI schema)."""
    add_local_page(app)
    page_html = (STATIC / "predict.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        """Rendered from the app's OpenAPI schema: no script, nothing from another host (api_docs.py)."""
        html = render_api_docs(app.openapi(), base_url=str(request.base_url))
        return HTMLResponse(html, headers=PAGE_HEADERS)
