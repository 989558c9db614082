// The drive's web app: folders, files, uploads with progress, versions, trash, people,
// invitations and sharing into rooms — on the drive's HTTP API, with its rules (the
// answers' reasons are shown as they are).
import { ApiError, Drive } from "./api.js";
import * as signin from "./signin.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const inWidget = params.get("widget") === "1";
const SSO_STATE = "anywhere-drive-sso-state";

let drive = null;
let session = null;
let folders = [];
let current = null; // { folder, path }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(text) {
  $("error").textContent = "";
  $("status").textContent = text;
}

function fail(error) {
  $("status").textContent = "";
  $("error").textContent = error instanceof ApiError || error instanceof Error
    ? error.message : String(error);
  if (error instanceof ApiError && error.status === 401 && !inWidget) signOut();
}

async function attempt(action, done) {
  try {
    const result = await action();
    if (done) say(done);
    return result;
  } catch (error) {
    fail(error);
    return undefined;
  }
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

// ----- dialogs: ask for a value (label), confirm (okText), or show something -----
function ask(title, label, value = "", body = null, okText = "OK") {
  const dialog = $("dialog");
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...(body ? [body] : []));
  $("dialog-field").hidden = label === null;
  $("dialog-label").textContent = label || "";
  const input = $("dialog-input");
  input.value = value;
  input.required = label !== null;
  $("dialog-ok").hidden = okText === null;
  $("dialog-ok").textContent = okText || "OK";
  $("dialog-cancel").textContent = okText === null ? "Close" : "Cancel";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? input.value.trim() : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    if (label !== null) { input.focus(); input.select(); } else $(okText === null ? "dialog-cancel" : "dialog-ok").focus();
  });
}

// ----- signing in -----
function signOut() {
  signin.forget();
  session = null;
  drive = null;
  showLogin();
}

async function showLogin() {
  $("app").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("quota").textContent = "";
  $("login").hidden = false;
  const offered = await signin.flows();
  $("login-server").textContent = offered.server_name
    ? `Sign in with your account on ${offered.server_name}.` : "";
  const sso = $("login-sso");
  sso.hidden = !offered.sso;
  sso.onclick = () => {
    // A login token is taken only back from the redirect this page started: someone else's
    // link with their own loginToken must not sign this person in as them (login CSRF).
    const state = Array.from(crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem(SSO_STATE, state);
    const back = `${location.origin}${location.pathname}?sso_state=${state}`;
    location.assign(offered.sso_redirect + encodeURIComponent(back));
  };
  $("login-user").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const found = await attempt(() => signin.withPassword($("login-user").value, $("login-password").value));
  if (found) {
    $("login-password").value = "";
    start(found);
  }
});
$("signout").addEventListener("click", signOut);

async function start(found) {
  session = found;
  if (found.kind === "matrix") signin.save(found);
  drive = new Drive(found.token);
  if (found.kind === "widget") keepRenewed(found);
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = inWidget;
  $("who").textContent = found.user;
  say("");
  await refreshFolders();
  const hash = new URLSearchParams(location.hash.slice(1));
  const wanted = folders.find((f) => f.id === hash.get("folder") ||
    (params.get("room") && f.room_id === params.get("room")));
  if (wanted && wanted.state === "joined") await openFolder(wanted.id, hash.get("path") || "");
}

// A widget's drive session is short: renew it when two thirds of it have passed.
function keepRenewed(current) {
  const left = current.expires * 1000 - Date.now();
  setTimeout(async () => {
    const next = await attempt(() => current.renew());
    if (!next) return;
    drive.token = next.token;
    keepRenewed(next);
  }, Math.max(1000, (left * 2) / 3));
}

// ----- folders -----
async function refreshQuota() {
  const quota = await drive.call("GET", "/quota");
  $("quota").textContent = `${size(quota.used)} of ${size(quota.limit)} used`;
}

async function refreshFolders() {
  const answer = await attempt(() => drive.call("GET", "/folders"));
  if (!answer) return;
  folders = answer.folders;
  const items = folders.map((folder) => {
    if (folder.state === "invited") {
      return el("li", {},
        el("span", { text: `${folder.name} — ${folder.owner} invites you as ${folder.role}` }),
        el("button", { type: "button", text: `Accept ${folder.name}`, onclick: () => membership(folder, "accept") }),
        el("button", { type: "button", text: `Decline ${folder.name}`, onclick: () => membership(folder, "decline") }));
    }
    return el("li", {},
      el("button", {
        type: "button", class: "linkish", text: folder.name,
        "aria-current": current && current.folder === folder.id ? "true" : "false",
        onclick: () => openFolder(folder.id, ""),
      }),
      el("span", { text: folder.role }));
  });
  $("folders").replaceChildren(...items);
  await attempt(refreshQuota);
}

async function membership(folder, action) {
  const done = await attempt(() => drive.call("POST", `/folders/${folder.id}/${action}`),
    action === "accept" ? `You accepted ${folder.name}.` : `You declined ${folder.name}.`);
  if (done) {
    await refreshFolders();
    if (action === "accept") await openFolder(folder.id, "");
  }
}

$("new-folder").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("new-folder-name").value.trim();
  const made = await attempt(() => drive.call("POST", "/folders", { name }), `Created ${name}.`);
  if (made) {
    $("new-folder-name").value = "";
    await refreshFolders();
    await openFolder(made.id, "");
  }
});

// ----- inside a folder -----
const folderOf = (id) => folders.find((f) => f.id === id);
const join = (dir, name) => (dir ? `${dir}/${name}` : name);

async function openFolder(id, path) {
  current = { folder: id, path };
  history.replaceState(null, "", `${location.pathname}${location.search}#folder=${encodeURIComponent(id)}&path=${encodeURIComponent(path)}`);
  $("folder").hidden = false;
  $("folder-title").textContent = folderOf(id)?.name || "Folder";
  await refreshFolder();
}

async function refreshFolder() {
  if (!current) return;
  const { folder, path } = current;
  const listing = await attempt(() => drive.call("GET", `/folders/${folder}/list?path=${encodeURIComponent(path)}`));
  if (!listing) return;
  const parts = path ? path.split("/") : [];
  const crumbs = [el("button", {
    type: "button", class: "linkish", text: folderOf(folder)?.name || "Folder",
    onclick: () => openFolder(folder, ""),
  })];
  parts.forEach((part, i) => {
    crumbs.push(el("span", { text: "/", "aria-hidden": "true" }));
    crumbs.push(el("button", {
      type: "button", class: "linkish", text: part,
      onclick: () => openFolder(folder, parts.slice(0, i + 1).join("/")),
    }));
  });
  $("crumbs").replaceChildren(...crumbs);
  const rows = listing.entries.map((entry) => fileRow(folder, path, entry));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "3", text: "This folder is empty." })));
  $("files").tBodies[0].replaceChildren(...rows);
  await Promise.all([refreshTrash(), refreshMembers()]);
}

function fileRow(folder, dir, entry) {
  const path = join(dir, entry.name);
  const name = entry.is_dir
    ? el("button", { type: "button", class: "linkish", text: `${entry.name}/`, onclick: () => openFolder(folder, path) })
    : el("span", { text: entry.name });
  const action = (text, label, handler) =>
    el("button", { type: "button", text, "aria-label": `${label} ${entry.name}`, onclick: handler });
  const actions = el("div", { class: "actions" });
  if (!entry.is_dir) actions.append(action("Download", "Download", () => download(folder, path, entry.name)));
  actions.append(
    action("Rename", "Rename", () => rename(folder, dir, entry)),
    action("Move", "Move", () => move(folder, path, entry)),
    action("Delete", "Delete", () => remove(folder, path, entry)),
  );
  if (!entry.is_dir) {
    actions.append(
      action("Versions", "Versions of", () => versions(folder, path, entry)),
      action("Share", "Share", () => share(folder, path, entry)),
    );
  }
  return el("tr", { "data-name": entry.name },
    el("td", {}, name),
    el("td", { text: entry.is_dir ? "" : size(entry.size) }),
    el("td", {}, actions));
}

async function download(folder, path, name) {
  const blob = await attempt(() => drive.download(folder, path));
  if (!blob) return;
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  say(`Downloaded ${name}.`);
}

async function rename(folder, dir, entry) {
  const name = await ask(`Rename ${entry.name}`, "New name", entry.name);
  if (!name || name === entry.name) return;
  const done = await attempt(() => drive.call("POST", `/folders/${folder}/move`, {
    from: join(dir, entry.name), to: join(dir, name), if_match: entry.revision,
  }), `Renamed ${entry.name} to ${name}.`);
  if (done) await refreshFolder();
}

async function move(folder, path, entry) {
  const to = await ask(`Move ${entry.name}`, "New path in this folder (e.g. Archive/report.pdf)", path);
  if (!to || to === path) return;
  const done = await attempt(() => drive.call("POST", `/folders/${folder}/move`, { from: path, to }),
    `Moved ${entry.name} to ${to}.`);
  if (done) await refreshFolder();
}

async function remove(folder, path, entry) {
  const sure = await ask(`Move ${entry.name} to the trash?`, null, "",
    el("p", { text: "You can restore it from the trash." }), "Move to trash");
  if (sure === null) return;
  const done = await attempt(() => drive.call("DELETE", drive.folderPath(folder, path)),
    `${entry.name} is in the trash.`);
  if (done) await refreshFolder();
}

async function versions(folder, path, entry) {
  const answer = await attempt(() => drive.call("GET", `/folders/${folder}/versions?path=${encodeURIComponent(path)}`));
  if (!answer) return;
  const list = el("ul", { class: "list" }, ...answer.versions.map((v) => {
    const item = el("li", {}, el("span", {
      text: `Version ${v.version}: ${size(v.size)}, ${new Date(v.created_at * 1000).toLocaleString()}` +
        (v.version === answer.current ? " (current)" : ""),
    }));
    if (v.version !== answer.current) {
      item.append(el("button", {
        type: "button", text: `Restore version ${v.version}`,
        onclick: async () => {
          $("dialog").close("cancel");
          const done = await attempt(() => drive.call("POST", `/folders/${folder}/revert`, { path, version: v.version }),
            `Restored version ${v.version} of ${entry.name}.`);
          if (done) await refreshFolder();
        },
      }));
    }
    return item;
  }));
  await ask(`Versions of ${entry.name}`, null, "", list, null);
}

async function share(folder, path, entry) {
  const room = await ask(`Share ${entry.name} into a room`, "Room (#alias:server or !id:server)");
  if (!room) return;
  await attempt(() => drive.call("POST", `/folders/${folder}/share`, { path, room }),
    `Shared ${entry.name} into ${room}.`);
}

$("new-subfolder").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("new-subfolder-name").value.trim();
  const done = await attempt(() => drive.call("POST", `/folders/${current.folder}/mkdir`, { path: join(current.path, name) }),
    `Created ${name}.`);
  if (done) { $("new-subfolder-name").value = ""; await refreshFolder(); }
});

// ----- uploads -----
function uploadAll(files) {
  if (!current) return;
  const { folder, path } = current;
  for (const file of files) uploadOne(folder, path, file);
}

async function uploadOne(folder, dir, file) {
  const bar = el("progress", { max: String(file.size || 1), value: "0", "aria-label": `Uploading ${file.name}` });
  const label = el("span", { text: file.name });
  const state = el("span", { text: "0%" });
  const item = el("li", { "data-name": file.name }, label, state, bar);
  $("uploads").append(item);
  const shown = (sent) => {
    bar.value = Math.min(sent, file.size);
    state.textContent = `${file.size ? Math.floor((100 * Math.min(sent, file.size)) / file.size) : 100}%`;
  };
  try {
    await drive.upload(folder, join(dir, file.name), file, shown);
    shown(file.size);
    state.textContent = "done";
    item.dataset.state = "done";
    say(`Uploaded ${file.name}.`);
    if (current && current.folder === folder && current.path === dir) await refreshFolder();
    await attempt(refreshQuota);
  } catch (error) {
    item.dataset.state = "failed";
    state.textContent = "not uploaded";
    fail(new Error(`${file.name} was not uploaded: ${error.message}`));
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  uploadAll(event.dataTransfer.files);
});
$("choose").addEventListener("click", () => $("picker").click());
$("picker").addEventListener("change", (event) => {
  uploadAll(event.target.files);
  event.target.value = "";
});

// ----- trash -----
async function refreshTrash() {
  const { folder } = current;
  const answer = await attempt(() => drive.call("GET", `/folders/${folder}/trash`));
  if (!answer) return;
  const items = answer.trash.map((entry) => el("li", {},
    el("span", { text: entry.path }),
    el("button", {
      type: "button", text: "Restore", "aria-label": `Restore ${entry.path}`,
      onclick: async () => {
        const done = await attempt(() => drive.call("POST", `/folders/${folder}/restore`, { node_id: entry.id }),
          `Restored ${entry.path}.`);
        if (done) await refreshFolder();
      },
    })));
  if (!items.length) items.push(el("li", { text: "The trash is empty." }));
  $("trash").replaceChildren(...items);
}

$("empty-trash").addEventListener("click", async () => {
  const sure = await ask("Empty the trash?", null, "",
    el("p", { text: "What is in it is deleted for good." }), "Empty the trash");
  if (sure === null) return;
  const done = await attempt(() => drive.call("DELETE", `/folders/${current.folder}/trash`));
  if (done) {
    say(`Deleted ${done.purged} item(s) for good, freeing ${size(done.freed_bytes)}.`);
    await refreshFolder();
    await attempt(refreshQuota);
  }
});

// ----- people -----
async function refreshMembers() {
  const { folder } = current;
  const answer = await attempt(() => drive.call("GET", `/folders/${folder}/members`));
  if (!answer) return;
  const mine = folderOf(folder);
  const owner = mine && mine.owner === session.user;
  $("invite").hidden = !owner;
  $("members").replaceChildren(...answer.members.map((m) => {
    const item = el("li", {}, el("span", { text: `${m.user_id} — ${m.role}${m.state === "invited" ? " (not accepted yet)" : ""}` }));
    if (owner && m.user_id !== session.user) {
      item.append(el("button", {
        type: "button", text: "Revoke", "aria-label": `Revoke ${m.user_id}`,
        onclick: async () => {
          const done = await attempt(() => drive.call("DELETE", `/folders/${folder}/members/${encodeURIComponent(m.user_id)}`),
            `${m.user_id} no longer has ${mine.name}.`);
          if (done) await refreshMembers();
        },
      }));
    }
    return item;
  }));
}

$("invite").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = $("invite-user").value.trim();
  const role = $("invite-role").value;
  const done = await attempt(() => drive.call("POST", `/folders/${current.folder}/members`, { user_id: user, role }),
    `Invited ${user} as ${role}.`);
  if (done) { $("invite-user").value = ""; await refreshMembers(); }
});

// ----- start -----
async function main() {
  if (inWidget) {
    say("Signing in through your Matrix client…");
    const found = await attempt(() => signin.asWidget(params));
    if (found) await start(found);
    return;
  }
  const loginToken = params.get("loginToken");
  if (loginToken) {
    history.replaceState(null, "", location.pathname);
    const expected = sessionStorage.getItem(SSO_STATE);
    sessionStorage.removeItem(SSO_STATE);
    if (expected && params.get("sso_state") === expected) {
      const found = await attempt(() => signin.withLoginToken(loginToken));
      if (found) return start(found);
    } else {
      say("A sign-in link that this page did not start was ignored: sign in here instead.");
    }
  }
  const known = signin.saved();
  if (known && known.token) return start(known);
  return showLogin();
}

main();
