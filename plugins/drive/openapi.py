"""The OpenAPI 3.1 document of the drive's HTTP API, served at
``/_anywhere/drive/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

FOLDER = {"name": "folder", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_PARAM = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
PATH_QUERY = {"name": "path", "in": "query", "schema": {"type": "string", "default": ""}}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "description": 'The revision the change is based on ("12"); 412 when it is not current.',
    "schema": {"type": "string"},
}
ERRORS = {
    "400": {
        "description": "Bad input (the error says what)",
        "$ref": "#/components/responses/Error",
    },
    "401": {"description": "No or unknown Matrix access token"},
    "403": {
        "description": "No access: not a member, invitation not accepted, a viewer "
        "writing, or content refused"
    },
    "404": {"description": "No such folder, file or version"},
}


def op(summary: str, *params: dict, body: dict | None = None, ok: str = "OK", **extra: Any) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {"200": {"description": ok}, **ERRORS, **extra.pop("responses", {})},
        **extra,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def obj(optional: tuple[str, ...] = (), **props: str) -> dict:
    return {
        "type": "object",
        "properties": {k: {"type": v} for k, v in props.items()},
        "required": [k for k in props if k not in optional],
    }


def document() -> dict[str, Any]:
    node = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "path": {"type": "string"},
            "kind": {"enum": ["dir", "file"]},
            "revision": {"type": "integer"},
            "version": {"type": "integer"},
            "size": {"type": "integer"},
            "sha256": {"type": "string"},
            "mime": {"type": "string"},
            "updated_at": {"type": "integer", "description": "ms since the epoch"},
            "updated_by": {"type": "string"},
            "trashed_at": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anywhere drive",
            "version": "1",
            "description": (
                "Shared folders. Authenticate with your Matrix access token "
                "(Authorization: Bearer ...). A folder shared with you gives no access until "
                "you accept it (join its room, or POST .../accept)."
            ),
        },
        "servers": [{"url": "/_anywhere/drive/v1"}],
        "security": [{"matrix": []}],
        "components": {
            "securitySchemes": {"matrix": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Node": node},
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {
                        "application/json": {"schema": obj(errcode="string", error="string")}
                    },
                }
            },
        },
        "paths": {
            "/folders": {
                "get": op("Your folders, and the ones you are invited to"),
                "post": op(
                    "Create a folder (and its room)",
                    body=obj(name="string"),
                    responses={"201": {"description": "Created"}},
                ),
            },
            "/folders/{folder}/list": {"get": op("List a folder", FOLDER, PATH_QUERY)},
            "/folders/{folder}/tree": {
                "get": op("Every live node with its path, and the cursor", FOLDER)
            },
            "/folders/{folder}/changes": {
                "get": op(
                    "Nodes changed since a cursor (sync clients)",
                    FOLDER,
                    {"name": "since", "in": "query", "schema": {"type": "integer", "default": 0}},
                )
            },
            "/folders/{folder}/files/{path}": {
                "get": op(
                    "Download (Range supported)",
                    FOLDER,
                    PATH_PARAM,
                    {"name": "Range", "in": "header", "schema": {"type": "string"}},
                    responses={
                        "206": {"description": "Partial content"},
                        "416": {"description": "Range not satisfiable"},
                    },
                ),
                "put": op(
                    "Upload, streamed; nothing is kept unless all of it arrives and fits the quota",
                    FOLDER,
                    PATH_PARAM,
                    IF_MATCH,
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "description": "* to only create",
                        "schema": {"type": "string"},
                    },
                    requestBody={
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        }
                    },
                    responses={
                        "201": {"description": "A new version"},
                        "409": {"description": "A folder has that name"},
                        "412": {"description": "Stale revision"},
                        "507": {"description": "Over quota; nothing kept"},
                    },
                ),
                "delete": op(
                    "Move to the trash",
                    FOLDER,
                    PATH_PARAM,
                    IF_MATCH,
                    responses={"412": {"description": "Stale revision"}},
                ),
            },
            "/nodes/{node}/content": {
                "get": op(
                    "Download a file by id",
                    {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}},
                )
            },
            "/folders/{folder}/mkdir": {
                "post": op("Create folders", FOLDER, body=obj(path="string"))
            },
            "/folders/{folder}/move": {
                "post": op(
                    "Move or rename; with to_folder, into another shared folder (the "
                    "original goes to this folder's trash)",
                    FOLDER,
                    IF_MATCH,
                    body=obj(
                        ("to_folder",), **{"from": "string", "to": "string", "to_folder": "string"}
                    ),
                    responses={
                        "409": {"description": "Name taken"},
                        "412": {"description": "Stale revision"},
                    },
                )
            },
            "/folders/{folder}/versions": {"get": op("A file's versions", FOLDER, PATH_QUERY)},
            "/folders/{folder}/revert": {
                "post": op(
                    "Make an old version current",
                    FOLDER,
                    body=obj(path="string", version="integer"),
                )
            },
            "/folders/{folder}/trash": {
                "get": op("What is in the trash", FOLDER),
                "delete": op(
                    "Empty the trash for good (the owner only; frees quota)",
                    FOLDER,
                    ok="How many files and folders were deleted, and the bytes freed",
                ),
            },
            "/folders/{folder}/restore": {
                "post": op("Restore from the trash", FOLDER, body=obj(node_id="string"))
            },
            "/folders/{folder}/members": {
                "get": op("Members and pending invitations", FOLDER),
                "post": op(
                    "Invite someone (owner only)", FOLDER, body=obj(user_id="string", role="string")
                ),
            },
            "/folders/{folder}/members/{user}": {
                "delete": op(
                    "Revoke a share (owner only)",
                    FOLDER,
                    {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}},
                )
            },
            "/folders/{folder}/accept": {
                "post": op("Accept an invitation (joins the room)", FOLDER)
            },
            "/folders/{folder}/decline": {
                "post": op("Decline an invitation (rejects the invite)", FOLDER)
            },
            "/quota": {"get": op("Your quota: used, limit, free (bytes)")},
        },
    }
