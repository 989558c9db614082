"""Signing in to the web app: the homeserver's own password or single-sign-on login
(passed through the bridge, so the page talks to one origin only), and the widget's
OpenID token exchanged for a drive session.

The page keeps the token it gets in session storage and sends it as
``Authorization: Bearer``; no cookie is ever trusted, so there is nothing to forge
across sites."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..errors import Denied, DriveError
from ..http_common import error, json_body, plugin_of, require_permitted
from .sessions import DriveSessions

#: Where the page asks the homeserver's own single-sign-on redirect to send people back.
SSO_RETURN = "/_anywhere/drive/app/"


async def login_flows(request: web.Request) -> web.Response:
    """Which logins the homeserver offers (``password``, ``sso``), and where its
    single-sign-on redirect is."""
    plugin = plugin_of(request)
    homeserver = plugin.bridge.info.homeserver_url.rstrip("/")
    try:
        async with plugin.bridge.http.get(f"{homeserver}/_matrix/client/v3/login") as resp:
            flows = [f.get("type") for f in (await resp.json()).get("flows", [])]
    except Exception as exc:
        return error(503, "M_UNKNOWN", f"the homeserver could not be asked how to log in: {exc}")
    return web.json_response(
        {
            "password": "m.login.password" in flows,
            "sso": "m.login.sso" in flows,
            "sso_redirect": f"{homeserver}/_matrix/client/v3/login/sso/redirect?redirectUrl=",
            "server_name": plugin.bridge.info.homeserver_domain,
        }
    )


async def login(request: web.Request) -> web.Response:
    """``{"user", "password"}`` or ``{"login_token"}`` (back from single sign-on):
    logs in at the homeserver and answers its access token and user ID."""
    plugin = plugin_of(request)
    try:
        body = await json_body(request)
    except DriveError as exc:
        return error(400, "M_BAD_JSON", exc.message)
    login_body: dict[str, Any]
    if isinstance(body.get("login_token"), str):
        login_body = {"type": "m.login.token", "token": body["login_token"]}
    elif isinstance(body.get("user"), str) and isinstance(body.get("password"), str):
        if not body["user"].strip() or not body["password"]:
            return error(400, "M_MISSING_PARAM", "give your user name and your password")
        login_body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": body["user"].strip()},
            "password": body["password"],
        }
    else:
        return error(400, "M_MISSING_PARAM", "give 'user' and 'password', or 'login_token'")
    login_body["initial_device_display_name"] = "Anywhere drive (web)"
    homeserver = plugin.bridge.info.homeserver_url.rstrip("/")
    async with plugin.bridge.http.post(
        f"{homeserver}/_matrix/client/v3/login", json=login_body
    ) as resp:
        answer = await resp.json(content_type=None)
        if resp.status != 200:
            message = answer.get("error") if isinstance(answer, dict) else None
            return error(
                resp.status if resp.status in (400, 401, 403, 429) else 502,
                answer.get("errcode", "M_UNKNOWN") if isinstance(answer, dict) else "M_UNKNOWN",
                f"the homeserver refused the login: {message or resp.reason}",
            )
    return web.json_response({"access_token": answer["access_token"], "user_id": answer["user_id"]})


async def widget_session(request: web.Request) -> web.Response:
    """``{"access_token", "matrix_server_name"}`` — the OpenID token a Matrix client gave
    the widget (MSC1960). The bridge asks its own homeserver whose token it is
    (``/_matrix/federation/v1/openid/userinfo``; never a server the request names),
    checks that the person is on that homeserver and may use the drive, and answers a
    drive session (see :mod:`.sessions`)."""
    plugin = plugin_of(request)
    if plugin.drive is None:
        return error(503, "M_NOT_READY", "the drive is starting; try again in a moment")
    try:
        body = await json_body(request)
    except DriveError as exc:
        return error(400, "M_BAD_JSON", exc.message)
    token, server = body.get("access_token"), body.get("matrix_server_name")
    if not isinstance(token, str) or not token or not isinstance(server, str):
        return error(
            400, "M_MISSING_PARAM", "give the OpenID token's access_token and matrix_server_name"
        )
    ours = plugin.bridge.info.homeserver_domain
    if server != ours:
        return error(
            403,
            "M_FORBIDDEN",
            f"this OpenID token is from {server}; this drive serves people of {ours} only",
        )
    homeserver = plugin.bridge.info.homeserver_url.rstrip("/")
    url = f"{homeserver}/_matrix/federation/v1/openid/userinfo?access_token={quote(token)}"
    try:
        async with plugin.bridge.http.get(url) as resp:
            answer = await resp.json(content_type=None) if resp.status == 200 else None
            status = resp.status
    except Exception as exc:
        return error(503, "M_UNKNOWN", f"the homeserver could not check the OpenID token: {exc}")
    if status == 404:
        plugin.bridge.log.warning(
            "the homeserver does not serve /_matrix/federation/v1/openid/userinfo: add the "
            "'openid' resource to its listener for the drive's widget",
            plugin="drive",
        )
        return error(
            503,
            "M_UNKNOWN",
            "the homeserver cannot check OpenID tokens (it does not serve the 'openid' "
            "resource): ask its operator to add it, or sign in on the standalone page",
        )
    user = answer.get("sub") if isinstance(answer, dict) else None
    if not isinstance(user, str):
        return error(
            401,
            "M_UNKNOWN_TOKEN",
            "the homeserver does not know this OpenID token (it is forged or has expired): "
            "reopen the widget",
        )
    if not user.endswith(f":{ours}"):
        return error(403, "M_FORBIDDEN", f"{user} is not on {ours}; this drive serves {ours} only")
    try:
        await require_permitted(plugin, user)
    except Denied as exc:
        return error(exc.status, exc.code, exc.message)
    lifetime = plugin.bridge.settings("drive")["webapp_session_seconds"]
    session, expires = DriveSessions(plugin.bridge.signer).issue(user, lifetime)
    return web.json_response({"session": session, "user_id": user, "expires_at": expires})
