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
    "description": (
        'Entity tags ("12", a list "11", "12", or *), compared strongly (RFC 9110): the '
        "request goes ahead only when one is the file's current ETag; 412 otherwise, also "
        "for a value that is not a list of entity tags."
    ),
    "schema": {"type": "string"},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "description": (
        'Entity tags or *, compared weakly (W/"12" matches "12"): when one is the current '
        "ETag, GET and HEAD answer 304 and writes 412; * to only create."
    ),
    "schema": {"type": "string"},
}
IF_RANGE = {
    "name": "If-Range",
    "in": "header",
    "description": (
        "With Range: the range is sent only when this is the current (strong) ETag; "
        "otherwise the whole current file, 200."
    ),
    "schema": {"type": "string"},
}


UPLOAD = {"name": "upload", "in": "path", "required": True, "schema": {"type": "string"}}


def error(description: str) -> dict[str, Any]:
    """An error answer: every error body is JSON ``{"errcode", "error"}``."""
    return {"description": description, "content": ERROR_CONTENT}


ERROR_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"errcode": {"type": "string"}, "error": {"type": "string"}},
            "required": ["errcode", "error"],
        }
    }
}
ERRORS = {
    "400": error("Bad input (the error says what)"),
    "401": error("No or unknown Matrix access token"),
    "403": error(
        "No access: not permitted to use the bridge or refused by its policy, not a member, "
        "invitation not accepted, a viewer writing, or content refused"
    ),
    "404": error("No such folder, file or version"),
}
PRECONDITION_FAILED = error("A precondition (If-Match, If-None-Match) is false")


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
                "(Authorization: Bearer ...); only this document is served without one. "
                "A folder shared with you gives no access until you accept it (join its "
                "room, or POST .../accept). Every error body is JSON {errcode, error}."
            ),
        },
        "servers": [{"url": "/_anywhere/drive/v1"}],
        "security": [{"matrix": []}],
        "components": {
            "securitySchemes": {"matrix": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Node": node},
            "responses": {"Error": error("An error")},
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
                    "Download (Range and conditional requests supported; HEAD too)",
                    FOLDER,
                    PATH_PARAM,
                    {"name": "Range", "in": "header", "schema": {"type": "string"}},
                    IF_MATCH,
                    IF_NONE_MATCH,
                    IF_RANGE,
                    responses={
                        "206": {"description": "Partial content"},
                        "304": {"description": "Not modified (If-None-Match)"},
                        "412": PRECONDITION_FAILED,
                        "416": error(
                            "Range not satisfiable (Content-Range: bytes */SIZE says the size)"
                        ),
                    },
                ),
                "put": op(
                    "Upload, streamed; nothing is kept unless all of it arrives and fits the quota",
                    FOLDER,
                    PATH_PARAM,
                    IF_MATCH,
                    IF_NONE_MATCH,
                    requestBody={
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        }
                    },
                    responses={
                        "201": {"description": "A new version"},
                        "409": error("A folder has that name"),
                        "412": PRECONDITION_FAILED,
                        "507": error("Over quota; nothing kept"),
                    },
                ),
                "delete": op(
                    "Move to the trash",
                    FOLDER,
                    PATH_PARAM,
                    IF_MATCH,
                    IF_NONE_MATCH,
                    responses={"412": PRECONDITION_FAILED},
                ),
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document; no token needed (it holds nothing secret)",
                    "security": [],
                    "responses": {"200": {"description": "OK"}},
                }
            },
            "/shared/{room}/{node}/{version}/{sharer}/{sig}": {
                "get": op(
                    "A file shared into a room as a link, for the room's members (HEAD, "
                    "Range and conditional requests as for files)",
                    *(
                        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                        for name in ("room", "node", "version", "sharer", "sig")
                    ),
                    responses={
                        "410": error(
                            "The file is in the trash, or the person who shared it no longer "
                            "has access to its folder"
                        )
                    },
                )
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
                    responses={"409": error("Name taken"), "412": PRECONDITION_FAILED},
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
            "/folders/{folder}/share": {
                "post": op(
                    "Post a file into a room (#alias:server or !id:server) you and the bot are "
                    "in, as !drive share; the copyright rule applies",
                    FOLDER,
                    body=obj(path="string", room="string"),
                    ok="Posted: {room, posted: file or link, path}",
                )
            },
            "/folders/{folder}/uploads": {
                "post": op(
                    "Start a resumable upload of size bytes to path",
                    FOLDER,
                    body=obj(("mime",), path="string", size="integer", mime="string"),
                    responses={
                        "201": {"description": "Started: {id, offset, size, path, folder}"},
                        "507": error("Does not fit in the owner's free quota"),
                    },
                )
            },
            "/uploads/{upload}": {
                "get": op("Where a resumable upload is: offset, the bytes kept so far", UPLOAD),
                "patch": op(
                    "The next bytes of a resumable upload (application/offset+octet-stream); "
                    "with the last byte the file is stored (done, node)",
                    UPLOAD,
                    {
                        "name": "Upload-Offset",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "integer"},
                        "description": "The byte this piece starts at: the kept offset",
                    },
                    responses={
                        "409": error("Not at the kept offset (Upload-Offset says where)"),
                        "507": error("Over quota; nothing kept"),
                    },
                ),
                "delete": op("Give up a resumable upload (its bytes are removed)", UPLOAD),
            },
            "/app-passwords": {
                "get": op(
                    "Your app passwords for WebDAV (/dav/): name, created_at, last_used_at; "
                    "never the passwords themselves"
                ),
                "post": op(
                    "Make an app password for WebDAV (Basic auth at /dav/ with your Matrix "
                    "user name); the answer {name, user, password} is the only time it is "
                    "shown (only its SHA-256 is stored)",
                    body=obj(name="string"),
                    responses={"201": {"description": "Made"}, "409": error("Name taken")},
                ),
            },
            "/app-passwords/{name}": {
                "delete": op(
                    "Revoke an app password: it no longer signs in",
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    responses={"204": {"description": "Revoked"}},
                )
            },
        },
    }
