"""The service's API documentation page (/docs), rendered on the server from the app's own OpenAPI schema.

FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN, so they are blank without internet. The
PyPI packages that bundle those scripts (swagger-ui-bundle 1.1.0: Swagger UI 4.15.5 of 2022; fastapi-offline
1.7.7) ship 1-1.5 MB of JavaScript holding a hundred links to other hosts (validator.swagger.io among them),
for a service of four endpoints. This page needs no script at all: one HTML file, the page's stylesheet, and
nothing from another host. ``/openapi.json`` stays for tools that want the schema itself.

``PREDICT_REQUEST`` and ``PREDICT_RESPONSES`` are what the schema says about POST /predict, whose handler
reads the form itself (to bound it) so FastAPI cannot describe it.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
METHODS = ("get", "post", "put", "patch", "delete")

# What /openapi.json and /docs say about POST /predict (the handler reads the form itself, to bound it).
PREDICT_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "1 to 16 images: JPEG, PNG, WebP, BMP, GIF or TIFF (read from the bytes)",
                        }
                    },
                }
            }
        },
    }
}
_PROBABILITIES = {"angry": 0.02, "fearful": 0.01, "happy": 0.91, "sad": 0.02, "surprised": 0.04}
PREDICT_RESPONSES = {
    200: {
        "description": "One record per image, in the order sent; faces largest first",
        "content": {
            "application/json": {
                "example": {
                    "results": [
                        {
                            "path": "photo.jpg",
                            "size": [640, 480],
                            "label": "happy",
                            "confidence": 0.91,
                            "no_face": False,
                            "probabilities": _PROBABILITIES,
                            "compound": None,
                            "faces": [
                                {
                                    "box": [212, 96, 180, 180],
                                    "label": "happy",
                                    "confidence": 0.91,
                                    "probabilities": _PROBABILITIES,
                                    "compound": None,
                                }
                            ],
                        }
                    ]
                }
            }
        },
    },
    413: {"description": "a file, the request, or an image's pixels over a limit (GET /model lists them)"},
    415: {"description": "not an accepted image format"},
    422: {
        "description": "no files, an empty, corrupt or undecodable image, or one that could not be processed",
        "content": {"application/json": {"example": {"detail": "photo.jpg: corrupt image header (...)"}}},
    },
    503: {"description": "busy: the queue is full; try again after Retry-After seconds"},
}


def schema_type(schema: dict) -> str:
    """A short reading of a JSON schema: ``array of file``, ``object``, ``string or null``, a schema's name."""
    if not schema:
        return "any"
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return " or ".join(schema_type(part) for part in schema[combined])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "string" and schema.get("format") == "binary":
        return "file"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _fields(schema: dict) -> list[dict]:
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "type": schema_type(field),
            "required": name in required,
            "description": field.get("description", field.get("title", "")),
        }
        for name, field in schema.get("properties", {}).items()
    ]


def _operations(schema: dict) -> list[dict]:
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body = []
            for content_type, content in operation.get("requestBody", {}).get("content", {}).items():
                body.append({"content_type": content_type, "fields": _fields(content.get("schema", {}))})
            responses = []
            for status, response in operation.get("responses", {}).items():
                examples = [
                    json.dumps(content["example"], indent=2)
                    for content in response.get("content", {}).values()
                    if "example" in content
                ]
                responses.append(
                    {"status": status, "description": response.get("description", ""), "examples": examples}
                )
            operations.append(
                {
                    "method": method,
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "paragraphs": [
                        " ".join(part.replace("``", "").split())
                        for part in operation.get("description", "").split("\n\n")
                        if part.strip()
                    ],
                    "body": body,
                    "responses": responses,
                }
            )
    return operations


def render_api_docs(schema: dict, *, base_url: str) -> str:
    """The /docs page for an OpenAPI ``schema``; ``base_url`` (where the service was reached) goes into the
    curl examples."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        keep_trailing_newline=True,
    )
    info = schema.get("info", {})
    return environment.get_template("api_docs.html.j2").render(
        title=info.get("title", "API"),
        version=info.get("version", ""),
        description=info.get("description", ""),
        operations=_operations(schema),
        schemas={
            name: _fields(part) for name, part in schema.get("components", {}).get("schemas", {}).items()
        },
        base_url=base_url.rstrip("/"),
    )
