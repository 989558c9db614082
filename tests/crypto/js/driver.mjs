// A person whose client is matrix-js-sdk with its Rust crypto (what Element Web runs),
// driven by a Python test over stdin/stdout, one JSON object a line.
//   in:  {"id": 1, "cmd": "send_text", ...}
//   out: {"id": 1, "ok": true, "result": ...} | {"id": 1, "ok": false, "error": "..."}
//        {"kind": "event", ...}: every timeline event as the client shows it, again
//        whenever a decryption attempt finishes (same event_id, latest wins)
// The node_modules folder is $ANYWHERE_CRYPTO_JS_MODULES (package.json beside this file).
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

// matrix-js-sdk 37 declares Node 22 for one ES2024 builtin; Node 20 lacks only this one
Promise.withResolvers ??= function withResolvers() {
  let resolve, reject;
  const promise = new Promise((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
};

const modules = process.env.ANYWHERE_CRYPTO_JS_MODULES;
const lib = (name) => pathToFileURL(path.join(modules, "node_modules", "matrix-js-sdk", "lib", name)).href;
const sdk = await import(lib("index.js"));
const { logger } = await import(lib("logger.js"));
const { AllDevicesIsolationMode, OnlySignedDevicesIsolationMode } = await import(
  lib("crypto-api/index.js")
);
logger.setLevel(process.env.ANYWHERE_JS_LOG || "warn");

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let client = null;

function emit(event) {
  const wire = event.getWireContent() || {};
  out({
    kind: "event",
    room_id: event.getRoomId(),
    event_id: event.getId(),
    sender: event.getSender(),
    type: event.getType(),
    state_key: event.getStateKey() ?? null,
    content: event.getContent(),
    encrypted: event.isEncrypted(),
    utd: event.isDecryptionFailure(),
    session_id: wire.session_id ?? null,
  });
}

const commands = {
  async start({ base_url, user_id, access_token, device_id }) {
    client = sdk.createClient({
      baseUrl: base_url,
      userId: user_id,
      accessToken: access_token,
      deviceId: device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    client.on(sdk.RoomEvent.Timeline, (event) => {
      if (event.isEncrypted()) {
        client.decryptEventIfNeeded(event); // emitted when the attempt finishes
      } else {
        emit(event);
      }
    });
    client.on(sdk.MatrixEventEvent.Decrypted, (event) => emit(event));
    const prepared = new Promise((resolve) =>
      client.on(sdk.ClientEvent.Sync, (state) => state === "PREPARED" && resolve()),
    );
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return { device_id: client.getDeviceId() };
  },
  async create_dm({ user }) {
    // as Element X creates a direct chat: trusted_private_chat, is_direct, encryption in
    // the initial state, then the m.direct account data
    const { room_id } = await client.createRoom({
      preset: sdk.Preset.TrustedPrivateChat,
      is_direct: true,
      invite: [user],
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    });
    await client.setAccountData(sdk.EventType.Direct, { [user]: [room_id] });
    return room_id;
  },
  async create_room({ name, invite }) {
    // as Element creates a private room: private_chat, encryption in the initial state
    const { room_id } = await client.createRoom({
      name,
      preset: sdk.Preset.PrivateChat,
      visibility: sdk.Visibility.Private,
      invite: invite || [],
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    });
    return room_id;
  },
  async invite({ room, user }) {
    await client.invite(room, user);
    return null;
  },
  async discard_room_key({ room }) {
    // the next message starts a new Megolm session (what Element does when it rotates)
    await client.getCrypto().forceDiscardSession(room);
    return null;
  },
  async send_text({ room, body }) {
    const { event_id } = await client.sendTextMessage(room, body);
    return event_id;
  },
  async bootstrap_cross_signing() {
    // as Element does at first login (the first upload needs no password: MSC3967)
    await client.getCrypto().bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest(null);
      },
    });
    return null;
  },
  async exclude_insecure_devices({ value }) {
    // Element's "exclude insecure devices": only devices their owner cross-signed
    client
      .getCrypto()
      .setDeviceIsolationMode(
        value ? new OnlySignedDevicesIsolationMode() : new AllDevicesIsolationMode(false),
      );
    return null;
  },
  async blacklist_unverified_devices({ value }) {
    // Element's "never send encrypted messages to unverified sessions"
    client.getCrypto().globalBlacklistUnverifiedDevices = value;
    return null;
  },
  async devices_status({ user }) {
    // how this client rates each of the user's devices (after fetching their keys anew)
    const crypto = client.getCrypto();
    const devices = (await crypto.getUserDeviceInfo([user], true)).get(user) || new Map();
    const result = {};
    for (const deviceId of devices.keys()) {
      const status = await crypto.getDeviceVerificationStatus(user, deviceId);
      result[deviceId] = {
        signed_by_owner: status?.signedByOwner ?? false,
        cross_signing_verified: status?.crossSigningVerified ?? false,
        verified: status?.isVerified() ?? false,
      };
    }
    return result;
  },
  async invited_rooms() {
    return client.getRooms().filter((r) => r.getMyMembership() === "invite").map((r) => r.roomId);
  },
  async join({ room }) {
    await client.joinRoom(room);
    return null;
  },
  async put_state({ room, type, content }) {
    const { event_id } = await client.sendStateEvent(room, type, content, "");
    return event_id;
  },
  async send_encrypted_file({ room, name, data_b64 }) {
    // as Element sends a file into an encrypted room (matrix-encrypt-attachment on
    // WebCrypto): AES-CTR, 64-bit counter starting at zero, SHA-256 of the ciphertext
    const data = Buffer.from(data_b64, "base64");
    const { file, ciphertext } = await encryptAttachment(data);
    const { content_uri } = await client.uploadContent(ciphertext, {
      type: "application/octet-stream",
      includeFilename: false,
    });
    const { event_id } = await client.sendMessage(room, {
      msgtype: "m.file",
      body: name,
      file: { ...file, url: content_uri },
      info: { size: data.length, mimetype: "application/octet-stream" },
    });
    return event_id;
  },
  async fetch_encrypted_file({ file }) {
    // as Element opens an encrypted file: the hash checked, then decrypted
    const url = client.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${client.getAccessToken()}` },
    });
    if (!response.ok) throw new Error(`download: ${response.status}`);
    return Buffer.from(await decryptAttachment(new Uint8Array(await response.arrayBuffer()), file)).toString(
      "base64",
    );
  },
  async stop() {
    client?.stopClient();
    setImmediate(() => process.exit(0));
    return null;
  },
};

const unpadded = (bytes) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");

async function encryptAttachment(data) {
  const subtle = globalThis.crypto.subtle;
  const iv = new Uint8Array(16);
  globalThis.crypto.getRandomValues(iv.subarray(0, 8));
  const key = await subtle.generateKey({ name: "AES-CTR", length: 256 }, true, ["encrypt", "decrypt"]);
  const jwk = await subtle.exportKey("jwk", key);
  const ciphertext = new Uint8Array(
    await subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, data),
  );
  const sha256 = await subtle.digest("SHA-256", ciphertext);
  return {
    ciphertext,
    file: {
      v: "v2",
      key: { alg: jwk.alg, ext: jwk.ext, k: jwk.k, key_ops: jwk.key_ops, kty: jwk.kty },
      iv: unpadded(iv),
      hashes: { sha256: unpadded(sha256) },
    },
  };
}

async function decryptAttachment(ciphertext, file) {
  const subtle = globalThis.crypto.subtle;
  const sha256 = unpadded(await subtle.digest("SHA-256", ciphertext));
  if (sha256 !== file.hashes.sha256) throw new Error("the file's hash does not match");
  const key = await subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, ["encrypt", "decrypt"]);
  const counter = Buffer.from(file.iv, "base64");
  return new Uint8Array(await subtle.decrypt({ name: "AES-CTR", counter, length: 64 }, key, ciphertext));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const request = JSON.parse(line);
  try {
    const result = await commands[request.cmd](request);
    out({ id: request.id, ok: true, result: result ?? null });
  } catch (error) {
    out({ id: request.id, ok: false, error: `${request.cmd}: ${error?.stack || error}` });
  }
});
lines.on("close", () => process.exit(0));
