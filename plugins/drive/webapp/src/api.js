// The drive's HTTP API (/_anywhere/drive/v1/) as the page uses it: JSON calls with the
// bearer token, uploads with progress (resumable ones for large files), downloads.

export const PREFIX = "/_anywhere/drive/v1";
// Files up to this size go up in one PUT; larger ones in pieces through an upload
// session, which resumes from the last stored byte after a cut-off.
export const RESUMABLE_OVER = 8 * 1024 * 1024;
// The size of a piece: a sixteenth of the file, from 4 to 32 MiB. The bridge makes each
// piece durable before it answers, so small pieces cost a disk flush and a round trip
// too often on a large file (bench/bench_webapp.py, 1 GiB: 32 MiB pieces beat 8 and
// 16 MiB ones; 64 and 128 MiB did not help further); a smaller file still goes up in
// several pieces (its progress shown as each one is stored).
const MIB = 1024 * 1024;
export const pieceSize = (size) => Math.min(32 * MIB, Math.max(4 * MIB, Math.ceil(size / 16 / MIB) * MIB));
const RETRIES = 5;
// Pieces sent at the same time: one browser connection carries less than the bridge
// takes (more lanes were faster up to 6, Chromium's limit of connections to one host;
// 4 leaves two for the page's other calls while a large file goes up).
export const LANES = 4;

export class ApiError extends Error {
  constructor(status, errcode, message) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

export class Drive {
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async call(method, path, body) {
    const init = { method, headers: this.headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(PREFIX + path, init);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiError(response.status, answer.errcode, answer.error || response.statusText);
    }
    return answer;
  }

  folderPath(folder, path) {
    return `/folders/${encodeURIComponent(folder)}/files/` +
      path.split("/").map(encodeURIComponent).join("/");
  }

  // PUT the whole file; onProgress(bytesSent).
  put(folder, path, file, onProgress) {
    return this.xhr("PUT", PREFIX + this.folderPath(folder, path), file, {
      "Content-Type": file.type || "application/octet-stream",
    }, (loaded) => onProgress(loaded));
  }

  // Upload through an upload session, in pieces sent on LANES connections at once (one
  // connection is slower than the disk and the bridge); after a failed piece, ask the
  // bridge what it kept and send only the rest of that piece.
  async resumable(folder, path, file, onProgress) {
    const session = await this.call("POST", `/folders/${encodeURIComponent(folder)}/uploads`, {
      path, size: file.size, mime: file.type || null,
    });
    const url = `${PREFIX}/uploads/${encodeURIComponent(session.id)}`;
    const todo = [];
    const piece = pieceSize(file.size);
    for (let start = 0; start < file.size; start += piece) {
      todo.push([start, Math.min(start + piece, file.size)]);
    }
    if (!todo.length) todo.push([0, 0]);
    let confirmed = 0; // bytes of finished pieces
    const sending = new Map(); // lane → bytes of its piece sent so far
    let node = null;
    let failures = 0;
    const shown = () => onProgress(confirmed + [...sending.values()].reduce((a, b) => a + b, 0));
    const lane = async (id) => {
      while (todo.length && !node) {
        const [start, end] = todo.shift();
        sending.set(id, 0);
        try {
          const answer = await this.xhr("PATCH", url, file.slice(start, end), {
            "Upload-Offset": String(start),
            "Content-Type": "application/offset+octet-stream",
          }, (loaded) => { sending.set(id, loaded); shown(); });
          sending.delete(id);
          confirmed += end - start;
          shown();
          if (answer.done) node = answer.node;
        } catch (error) {
          sending.delete(id);
          if (error instanceof ApiError && error.status !== 409 && error.status !== 0) throw error;
          failures += 1;
          if (failures > RETRIES) throw error;
          await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** failures));
          const state = await this.call("GET", `/uploads/${encodeURIComponent(session.id)}`);
          if (state.done) return;
          const kept = state.kept.find(([from, to]) => from <= start && start < to);
          const from = kept ? Math.min(kept[1], end) : start;
          confirmed += from - start;
          if (from < end) todo.unshift([from, end]);
          else if (!todo.length && !sending.size) todo.push([end, end]); // ask to finish
        }
      }
    };
    await Promise.all(Array.from({ length: LANES }, (_, id) => lane(id)));
    if (!node) throw new ApiError(0, "UNFINISHED", "the upload did not finish; try again");
    return node;
  }

  upload(folder, path, file, onProgress) {
    return file.size > RESUMABLE_OVER
      ? this.resumable(folder, path, file, onProgress)
      : this.put(folder, path, file, onProgress);
  }

  xhr(method, url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open(method, url);
      for (const [name, value] of Object.entries({ ...this.headers(), ...headers })) {
        request.setRequestHeader(name, value);
      }
      request.upload.onprogress = (event) => onProgress(event.loaded);
      request.onload = () => {
        let answer = {};
        try { answer = JSON.parse(request.responseText); } catch { /* not JSON */ }
        if (request.status >= 200 && request.status < 300) resolve(answer);
        else reject(new ApiError(request.status, answer.errcode, answer.error || request.statusText));
      };
      request.onerror = () => reject(new ApiError(0, "NETWORK", "the connection was cut off"));
      request.send(body);
    });
  }

  async download(folder, path) {
    const response = await fetch(PREFIX + this.folderPath(folder, path), { headers: this.headers() });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      throw new ApiError(response.status, answer.errcode, answer.error || response.statusText);
    }
    return response.blob();
  }
}
