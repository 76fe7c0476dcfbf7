// A browser party of a BuildXpert call, written as an app developer would from
// docs/protocol.md: one websocket speaking JSON-RPC 2.0, session.authenticate with an
// access token (a browser cannot set an Authorization header), events acked in bulk,
// and the call through calls.start / calls.accept / calls.signal with a real
// RTCPeerConnection and the microphone (Chromium's fake device in the tests).
//
// The Python test drives it through the functions at the end (joinServer, startCall,
// answerCall, hangUp, countPackets) and polls `window.party.results`, where the page
// puts what it hears (the remote track's dominant frequency through a WebAudio
// AnalyserNode) and what getStats counts.
//
// Media modes:
//   direct   - the caller offers on call.accepted, the callee answers the relayed
//              offer; both trickle their candidates to the other through the server.
//   recorded - each party's connection ends at the server: after the accept EACH party
//              offers (the callee once its calls.accept is answered, the caller on
//              call.accepted) and applies the server's answer (call.signal); local
//              candidates trickle to the server, the server's come inside its answer.
"use strict";

const ACK_DELAY_MS = 500; // events.ack in bulk, not once per event (docs: Events)
const STATS_EVERY_MS = 250;
const HEARING_EVERY_MS = 100;
const LOUD_DB = -60; // a tone's peak bin; Opus-decoded silence sits far below

class RpcError extends Error {
  constructor(method, error) {
    super(`${method}: ${error.code} ${error.message} ${JSON.stringify(error.data || {})}`);
    this.code = error.code;
    this.data = error.data || {};
  }
}

// One JSON-RPC 2.0 socket: requests matched to answers by id (answers may come out
// of order: the server runs requests concurrently), events to handlers by name.
class RpcSocket {
  constructor(ws, log) {
    this.ws = ws;
    this.log = log;
    this.nextId = 1;
    this.pending = new Map();
    this.handlers = new Map();
    this.ackedSeq = 0;
    this.seenSeq = 0;
    this.ackTimer = null;
    ws.onmessage = (message) => {
      const payload = JSON.parse(message.data);
      for (const item of Array.isArray(payload) ? payload : [payload]) this.dispatch(item);
    };
    ws.onclose = (close) => {
      this.log(`socket closed ${close.code}`);
      const error = new Error(`socket closed ${close.code}`);
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
    };
  }

  static open(url, log) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new RpcSocket(ws, log));
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
  }

  call(method, params) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  on(method, handler) {
    this.handlers.set(method, handler);
  }

  dispatch(item) {
    if (item.method === undefined) {
      const request = this.pending.get(item.id);
      if (request === undefined) return;
      this.pending.delete(item.id);
      if (item.error) request.reject(new RpcError(request.method, item.error));
      else request.resolve(item.result);
      return;
    }
    const params = item.params || {};
    // Log events carry {seq, data}; live notifications (call.signal …) are the data.
    const durable = typeof params.seq === "number";
    if (durable) this.seen(params.seq);
    const handler = this.handlers.get(item.method);
    if (handler) handler(durable ? params.data : params);
  }

  seen(seq) {
    this.seenSeq = Math.max(this.seenSeq, seq);
    if (this.ackTimer !== null) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      if (this.seenSeq <= this.ackedSeq || this.ws.readyState !== WebSocket.OPEN) return;
      this.ackedSeq = this.seenSeq;
      // A notification: no answer needed (docs: events.ack).
      const ack = { jsonrpc: "2.0", method: "events.ack", params: { seq: this.ackedSeq } };
      this.ws.send(JSON.stringify(ack));
    }, ACK_DELAY_MS);
  }

  close() {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ws.close();
  }
}

function idempotencyKey() {
  return `browser-${crypto.randomUUID()}`;
}

// The dominant frequency of an audio stream, as the ear of the test.
class Hearing {
  constructor(stream, into) {
    this.context = new AudioContext();
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 8192;
    this.analyser.smoothingTimeConstant = 0;
    this.context.createMediaStreamSource(stream).connect(this.analyser);
    this.bins = new Float32Array(this.analyser.frequencyBinCount);
    this.into = into;
    this.timer = setInterval(() => this.listen(), HEARING_EVERY_MS);
  }

  listen() {
    this.analyser.getFloatFrequencyData(this.bins);
    let peak = 1; // bin 0 is DC
    for (let i = 2; i < this.bins.length; i++) if (this.bins[i] > this.bins[peak]) peak = i;
    const db = this.bins[peak];
    const loud = db > LOUD_DB;
    const hz = loud ? this.interpolate(peak) : null;
    const heard = this.into;
    heard.db = db;
    heard.hz = hz;
    heard.contextState = this.context.state;
    // How long the same tone has been heard without a break (within 10 Hz).
    if (loud && heard.steadyHz !== null && Math.abs(hz - heard.steadyHz) < 10) {
      heard.steadyMs += HEARING_EVERY_MS;
    } else {
      heard.steadyHz = hz;
      heard.steadyMs = 0;
    }
    if (loud) heard.loudMs += HEARING_EVERY_MS;
  }

  // Parabolic interpolation of the peak over its neighbours (dB), for a frequency
  // finer than one bin (about 5.4 Hz at 44.1 kHz).
  interpolate(peak) {
    const binHz = this.context.sampleRate / this.analyser.fftSize;
    const [a, b, c] = [this.bins[peak - 1], this.bins[peak], this.bins[peak + 1] ?? -Infinity];
    const denominator = a - 2 * b + c;
    const usable = Number.isFinite(denominator) && denominator !== 0;
    const shift = usable ? (0.5 * (a - c)) / denominator : 0;
    return (peak + shift) * binHz;
  }

  close() {
    clearInterval(this.timer);
    this.context.close();
  }
}

class CallParty {
  constructor(socket, microphone) {
    this.socket = socket;
    this.microphone = microphone;
    this.pc = null;
    this.call = null; // {callId, media, role, iceServers, policy}
    this.remoteDescribed = false;
    this.earlyCandidates = [];
    // calls.signal requests one at a time: the server runs a socket's requests
    // concurrently, so pipelined signals could be relayed out of order (a candidate
    // before its offer). Received signals are applied one at a time for the same reason.
    this.outbox = Promise.resolve();
    this.inbox = Promise.resolve();
    this.hearing = null;
    this.statsTimer = null;
    this.waiters = []; // next(): {method, resolve}
    this.unclaimed = []; // call.incoming that arrived before answer() asked for it
    this.acceptedEarly = null; // a call.accepted that beat the calls.start answer
    this.results = {
      state: "idle",
      role: null,
      callId: null,
      media: null,
      policy: null,
      iceServers: null,
      recordingNotice: null,
      serverSaysConnected: false,
      recording: null, // recording.ready
      recordingFailures: [], // recording.failed
      endReason: null,
      connectionState: null,
      iceConnectionState: null,
      candidatesSent: 0,
      candidatesReceived: 0,
      descriptionsSent: [],
      descriptionsReceived: [],
      localCandidateTypes: [],
      heard: { hz: null, db: null, steadyHz: null, steadyMs: 0, loudMs: 0, contextState: null },
      packetsReceived: 0,
      packetsSent: 0,
      events: [],
      errors: [],
      log: [],
    };
    socket.on("call.incoming", (data) => this.event("call.incoming", data));
    socket.on("call.ringing", (data) => this.event("call.ringing", data));
    socket.on("call.accepted", (data) => this.event("call.accepted", data));
    socket.on("call.connected", (data) => this.event("call.connected", data));
    socket.on("call.ended", (data) => this.event("call.ended", data));
    socket.on("call.signal", (data) => this.signalled(data));
    socket.on("recording.ready", (data) => this.event("recording.ready", data));
    socket.on("recording.failed", (data) => this.event("recording.failed", data));
  }

  log(line) {
    this.results.log.push(`${(performance.now() / 1000).toFixed(3)} ${line}`);
  }

  fail(error) {
    this.results.errors.push(String(error && error.stack ? error.stack : error));
    this.results.state = "failed";
  }

  // --- events -------------------------------------------------------------------

  event(method, data) {
    this.results.events.push(method);
    this.log(`event ${method}`);
    const callId = data.call ? data.call.callId : data.callId;
    const ours = this.call !== null && callId === this.call.callId;
    if (method === "call.accepted" && this.call === null) this.acceptedEarly = callId;
    // The caller offers once the callee has accepted, in both media modes.
    if (method === "call.accepted" && ours && this.call.role === "caller") {
      this.run(() => this.offer());
    }
    if (method === "call.connected" && ours) this.results.serverSaysConnected = true;
    if (method === "recording.ready" && ours) this.results.recording = data;
    if (method === "recording.failed" && ours) this.results.recordingFailures.push(data);
    if (method === "call.ended" && ours) {
      this.results.endReason = data.call.endReason;
      this.run(async () => {
        await this.endMedia();
        this.results.state = "ended";
      });
    }
    const waiting = this.waiters.filter((w) => w.method === method);
    this.waiters = this.waiters.filter((w) => w.method !== method);
    for (const waiter of waiting) waiter.resolve(data);
    if (method === "call.incoming" && waiting.length === 0) this.unclaimed.push(data);
  }

  next(method, timeoutMs) {
    if (method === "call.incoming" && this.unclaimed.length > 0) {
      return Promise.resolve(this.unclaimed.shift());
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        method,
        resolve: (data) => {
          clearTimeout(timer);
          resolve(data);
        },
      };
      this.waiters.push(waiter);
    });
  }

  run(step) {
    step().catch((error) => this.fail(error));
  }

  // --- the two roles ------------------------------------------------------------

  async start(bookingId, media) {
    const started = await this.socket.call("calls.start", {
      idempotencyKey: idempotencyKey(),
      bookingId,
      media,
    });
    this.results.role = "caller";
    this.setUp({ ...started, media, role: "caller" });
    this.results.state = "ringing";
    if (this.acceptedEarly === started.callId) this.run(() => this.offer());
    return started.callId;
  }

  async answer(timeoutMs) {
    const incoming = await this.next("call.incoming", timeoutMs);
    this.results.role = "callee";
    this.setUp({ ...incoming, role: "callee" });
    await this.socket.call("calls.accept", {
      idempotencyKey: idempotencyKey(),
      callId: incoming.callId,
    });
    this.results.state = "accepted";
    // Recorded: the callee's connection ends at the server too, so it offers now.
    if (incoming.media === "recorded") await this.offer();
    return incoming.callId;
  }

  async hangup() {
    await this.socket.call("calls.hangup", {
      idempotencyKey: idempotencyKey(),
      callId: this.call.callId,
    });
  }

  setUp(call) {
    this.call = call;
    Object.assign(this.results, {
      callId: call.callId,
      media: call.media,
      policy: call.policy,
      iceServers: call.iceServers,
      recordingNotice: call.recordingNotice ?? null,
    });
    const pc = new RTCPeerConnection({
      iceServers: call.iceServers,
      iceTransportPolicy: call.policy === "relay-only" ? "relay" : "all",
    });
    this.pc = pc;
    for (const track of this.microphone.getAudioTracks()) pc.addTrack(track, this.microphone);
    pc.onicecandidate = ({ candidate }) => {
      // null: gathering is over; sent on as "" (end of candidates, RFC 8838 section 13).
      const init = candidate ? candidate.toJSON() : { candidate: "" };
      if (candidate) this.results.localCandidateTypes.push(candidate.type);
      // A refusal is already in results.errors (send()).
      this.send({ candidate: init }).then(() => this.results.candidatesSent++, () => {});
    };
    pc.ontrack = ({ track, streams }) => {
      this.log(`remote track ${track.kind}`);
      const stream = streams[0] || new MediaStream([track]);
      // Chromium feeds a remote WebRTC track to WebAudio only while a media element
      // plays it too (muted here: the page has no speakers to use).
      const element = new Audio();
      element.muted = true;
      element.srcObject = stream;
      element.play().catch((error) => this.log(`audio element: ${error}`));
      this.hearing = new Hearing(stream, this.results.heard);
    };
    pc.onconnectionstatechange = () => {
      this.results.connectionState = pc.connectionState;
      this.log(`connection ${pc.connectionState}`);
      if (pc.connectionState === "connected") this.results.state = "connected";
    };
    pc.oniceconnectionstatechange = () => {
      this.results.iceConnectionState = pc.iceConnectionState;
    };
    this.statsTimer = setInterval(() => {
      this.count().catch((error) => {
        if (pc.signalingState !== "closed") this.fail(error); // closed: the call ended meanwhile
      });
    }, STATS_EVERY_MS);
  }

  // --- signalling -----------------------------------------------------------------

  async offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    // Sent before any candidate: onicecandidate fires as a task, after this continuation.
    await this.send({ description: this.describe() });
  }

  describe() {
    const local = this.pc.localDescription;
    this.results.descriptionsSent.push(local.type);
    return { type: local.type, sdp: local.sdp };
  }

  send(signal) {
    const callId = this.call.callId;
    const sent = this.outbox.then(() => this.socket.call("calls.signal", { callId, ...signal }));
    this.outbox = sent.catch((error) => {
      // A signal that crossed the end of the call is refused (4091): nothing went wrong.
      if (this.results.state === "ended" && error.code === 4091) return;
      this.fail(`${error.message} (sent ${JSON.stringify(signal).slice(0, 120)})`);
    });
    return sent;
  }

  signalled(data) {
    if (!this.call || data.callId !== this.call.callId) return;
    this.inbox = this.inbox.then(() => this.apply(data)).catch((error) => this.fail(error));
  }

  async apply(data) {
    const pc = this.pc;
    // Recorded calls: a refusal by the call's media host on another instance.
    if (data.error) throw new Error(`call.signal error ${JSON.stringify(data.error)}`);
    if (data.description) {
      const { type, sdp } = data.description;
      this.results.descriptionsReceived.push(type);
      this.log(`received ${type}`);
      await pc.setRemoteDescription({ type, sdp });
      this.remoteDescribed = true;
      for (const candidate of this.earlyCandidates.splice(0)) await this.addCandidate(candidate);
      if (type === "offer") {
        await pc.setLocalDescription(await pc.createAnswer());
        await this.send({ description: this.describe() });
      }
      return;
    }
    this.results.candidatesReceived++;
    if (this.remoteDescribed) await this.addCandidate(data.candidate);
    else this.earlyCandidates.push(data.candidate);
  }

  async addCandidate(candidate) {
    // "" is the other side's end of candidates; Chromium takes it as such.
    await this.pc.addIceCandidate(candidate.candidate === "" ? null : candidate);
  }

  async count() {
    let received = 0;
    let sent = 0;
    (await this.pc.getStats()).forEach((stat) => {
      if (stat.type === "inbound-rtp" && stat.kind === "audio") received += stat.packetsReceived;
      if (stat.type === "outbound-rtp" && stat.kind === "audio") sent += stat.packetsSent;
    });
    this.results.packetsReceived = received;
    this.results.packetsSent = sent;
  }

  // The call is over: stop listening, count the packets a last time (what was sent up
  // to now, for the test to compare with the recording), close the connection.
  async endMedia() {
    if (this.statsTimer !== null) clearInterval(this.statsTimer);
    this.statsTimer = null;
    if (this.hearing) this.hearing.close();
    this.hearing = null;
    if (this.pc && this.pc.signalingState !== "closed") {
      await this.count();
      this.pc.close();
    }
  }

  close() {
    this.endMedia().catch(() => {});
    this.socket.close();
  }
}

// --- what the test calls ----------------------------------------------------------

// Open the socket, authenticate, take the microphone (before any peer connection, so
// its track is in the first description).
window.joinServer = async ({ wsUrl, accessToken }) => {
  const microphone = await navigator.mediaDevices.getUserMedia({
    // A test tone is not speech: echo cancellation, noise suppression and gain control
    // would treat a steady tone as noise and fade it.
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const socket = await RpcSocket.open(wsUrl, (line) => window.party?.log(line));
  const session = await socket.call("session.authenticate", { accessToken });
  window.party = new CallParty(socket, microphone);
  window.party.results.userId = session.userId;
  window.party.results.microphone = microphone.getAudioTracks()[0].label;
  return session.userId;
};

window.startCall = async ({ bookingId, media }) => window.party.start(bookingId, media || "direct");

window.answerCall = async ({ timeoutMs }) => window.party.answer(timeoutMs || 10000);

window.hangUp = async () => window.party.hangup();

// RTP packets counted now: {sent, received}.
window.countPackets = async () => {
  await window.party.count();
  return { sent: window.party.results.packetsSent, received: window.party.results.packetsReceived };
};

window.leave = () => window.party && window.party.close();
