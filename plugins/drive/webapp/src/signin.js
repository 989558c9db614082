// Signing in: the homeserver's own password login or its single sign-on (through the
// bridge, so the page talks to one origin), or — inside Element — an OpenID token from
// the client through the widget API, exchanged for a short drive session.
import { WidgetApi } from "matrix-widget-api";

const KEY = "anywhere-drive-session";
// The app's own sign-in routes, beside the page.
const SIGNIN = "/_anywhere/drive/app";

export function saved() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}

export function save(session) {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

async function post(path, body) {
  const response = await fetch(SIGNIN + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

export async function flows() {
  const response = await fetch(SIGNIN + "/login");
  return response.ok ? response.json() : { password: true, sso: false };
}

export async function withPassword(user, password) {
  const answer = await post("/login", { user, password });
  return { token: answer.access_token, user: answer.user_id, kind: "matrix" };
}

export async function withLoginToken(loginToken) {
  const answer = await post("/login", { login_token: loginToken });
  return { token: answer.access_token, user: answer.user_id, kind: "matrix" };
}

// Inside a widget host: ask it for an OpenID token (MSC1960), then for a drive session;
// the answer's renew() does it again (the session is short).
export async function asWidget(params) {
  const widgetId = params.get("widgetId");
  const parent = params.get("parentUrl");
  const api = new WidgetApi(widgetId, parent ? new URL(parent).origin : undefined);
  const ready = new Promise((resolve) => api.once("ready", resolve));
  api.start();
  await ready;
  const session = async () => {
    const openid = await api.requestOpenIDConnectToken();
    if (!openid || !openid.access_token) throw new Error("the Matrix client gave no OpenID token");
    const answer = await post("/session", {
      access_token: openid.access_token,
      matrix_server_name: openid.matrix_server_name,
    });
    return { token: answer.session, user: answer.user_id, kind: "widget", expires: answer.expires_at, renew: session };
  };
  return session();
}
