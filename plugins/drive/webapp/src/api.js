// The drive's HTTP API (/_anywhere/drive/v1/) as the page uses it: JSON calls with the
// bearer token, uploads with progress (resumable ones for large files), downloads.

export const PREFIX = "/_anywhere/drive/v1";
// Files up to this size go up in one PUT; larger ones in pieces of this size through
// an upload session, which resumes from the last stored byte after a cut-off.
export const PIECE = 8 * 1024 * 1024;
const RETRIES = 5;

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

  // Upload through an upload session, piece by piece; after a failed piece, ask the
  // bridge how much it kept and go on from there.
  async resumable(folder, path, file, onProgress) {
    const session = await this.call("POST", `/folders/${encodeURIComponent(folder)}/uploads`, {
      path, size: file.size, mime: file.type || null,
    });
    const url = `${PREFIX}/uploads/${encodeURIComponent(session.id)}`;
    let offset = session.offset;
    let failures = 0;
    for (;;) {
      const end = Math.min(offset + PIECE, file.size);
      try {
        const answer = await this.xhr("PATCH", url, file.slice(offset, end), {
          "Upload-Offset": String(offset),
          "Content-Type": "application/offset+octet-stream",
        }, (loaded) => onProgress(offset + loaded));
        failures = 0;
        if (answer.done) return answer.node;
        offset = answer.offset;
      } catch (error) {
        if (error instanceof ApiError && error.status !== 409 && error.status !== 0) throw error;
        failures += 1;
        if (failures > RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** failures));
        offset = (await this.call("GET", `/uploads/${encodeURIComponent(session.id)}`)).offset;
      }
    }
  }

  upload(folder, path, file, onProgress) {
    return file.size > PIECE
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
