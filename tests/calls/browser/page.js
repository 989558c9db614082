// A voice call from a real Matrix client: matrix-js-sdk (Element's call code) in
// Chromium calls the echo bot and reports what it measured to the test's page server.
import { createClient, createNewMatrixCall, ClientEvent, CallEvent } from "matrix-js-sdk";

const params = new URLSearchParams(location.search);
const report = (data) =>
  fetch("/result", { method: "POST", body: JSON.stringify(data) }).catch(() => {});
const log = (text) => fetch("/log", { method: "POST", body: String(text) }).catch(() => {});

// Only loopback candidates may be used: drop every other one this browser gathers.
const isLoopback = (line) => !line || / 127\.0\.0\.1 /.test(line);
const NativePC = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePC {
  constructor(...args) {
    super(...args);
    const add = this.addEventListener.bind(this);
    this.addEventListener = (type, fn, ...rest) =>
      add(type, type === "icecandidate"
        ? (e) => { if (!e.candidate || isLoopback(e.candidate.candidate)) fn(e); }
        : fn, ...rest);
  }
  set onicecandidate(fn) { this.addEventListener("icecandidate", fn); }
  get localDescription() {
    const d = super.localDescription;
    if (!d) return d;
    const sdp = d.sdp.split("\r\n").filter((l) => !l.startsWith("a=candidate:") || isLoopback(l)).join("\r\n");
    return { type: d.type, sdp, toJSON() { return { type: d.type, sdp }; } };
  }
};

async function main() {
  const client = createClient({
    baseUrl: params.get("hs"),
    accessToken: params.get("token"),
    userId: params.get("user"),
    deviceId: params.get("device"),
  });
  await new Promise((resolve) => {
    client.on(ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
    client.startClient({ initialSyncLimit: 5 });
  });
  const call = createNewMatrixCall(client, params.get("room"), { invitee: params.get("bot") });
  const result = { states: [] };
  call.on(CallEvent.State, (state) => { result.states.push(state); log("state " + state); });
  call.on(CallEvent.Hangup, () => { result.hangup = call.hangupReason || "hangup"; });
  call.on(CallEvent.FeedsChanged, (feeds) => {
    for (const feed of feeds) {
      if (!feed.isLocal() && !document.getElementById("remote")) {
        const audio = document.createElement("audio");  // totalAudioEnergy needs playback
        audio.id = "remote";
        audio.autoplay = true;
        audio.srcObject = feed.stream;
        document.body.appendChild(audio);
        audio.play().catch((e) => log("play: " + e));
        listen(feed.stream, result);
      }
    }
  });
  await call.placeVoiceCall();
  const deadline = Date.now() + 30000;
  while (call.state !== "connected" && Date.now() < deadline) await sleep(100);
  result.connected = call.state === "connected";
  await sleep(1500);  // the greeting, then the echo
  result.peaksHz = [];
  for (let i = 0; i < 12; i++) {  // what we hear, every 200 ms
    if (result.analyser) result.peaksHz.push(result.analyser());
    await sleep(200);
  }
  const stats = await call.peerConn.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      result.packetsReceived = s.packetsReceived;
      result.totalAudioEnergy = s.totalAudioEnergy;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") result.packetsSent = s.packetsSent;
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      const local = stats.get(s.localCandidateId), remote = stats.get(s.remoteCandidateId);
      result.pair = [local && local.address, remote && remote.address];
    }
  });
  delete result.analyser;
  call.hangup("user_hangup", false);
  await sleep(500);
  client.stopClient();
  await report(result);
}

// The strongest frequency of what we hear (WebAudio), to check the echo is our tone.
function listen(stream, result) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  result.analyser = () => {
    analyser.getFloatFrequencyData(bins);
    const low = Math.floor((100 * analyser.fftSize) / context.sampleRate);  // 100-2000 Hz
    const high = Math.ceil((2000 * analyser.fftSize) / context.sampleRate);
    let best = low;
    for (let i = low; i < high; i++) if (bins[i] > bins[best]) best = i;
    return (best * context.sampleRate) / analyser.fftSize;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
main().catch((e) => { log("error " + (e && e.stack || e)); report({ error: String(e) }); });
