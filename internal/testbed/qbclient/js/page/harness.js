// The page side of the QuickBlox test bed: one QuickBlox JS SDK user per
// page, driven by driver.mjs through window.harness. Every function is
// async and returns plain JSON; events go to the driver through
// window.__harnessEmit (a Playwright binding) with a wall-clock time stamp
// in milliseconds (performance.timeOrigin + performance.now():
// sub-millisecond, and comparable with the Go test's clock).
//
// Events: "stanza" (every element Strophe sends or receives, serialized),
// "session.<listener>" for the SDK's WebRTC listeners (call, accept,
// reject, stop, update, notAnswer, remoteStream, connectionState, close,
// reconnect), "session.local" for this side's own call/accept/reject/stop,
// "client.invalid" for the SDK's onInvalidEventsListener, and
// "chat.disconnected".
"use strict";

const now = () => performance.timeOrigin + performance.now();

function emit(ev) {
    ev.t ??= now();
    if (typeof window.__harnessEmit === "function") {
        window.__harnessEmit(ev).catch(() => {});
    }
}

// What the SDK's numeric connection states (qbWebRTCHelpers
// SessionConnectionState) are called.
const connectionStates = { 0: "undefined", 1: "connecting", 2: "connected", 3: "failed", 4: "disconnected", 5: "closed", 6: "completed" };
// WebRTCSession.State.ACTIVE, which the SDK does not export (NEW 1,
// ACTIVE 2, HUNGUP 3, REJECTED 4, CLOSED 5).
const sessionActive = 2;

let me = null; // {userId, appId, domain, camera, rawAudio}
// What to do with an incoming call: "accept" (getUserMedia, then accept,
// deferred), "reject" (deferred), or "hold" (leave it ringing for the test).
let incoming = { policy: "hold", userInfo: {} };
const sessions = new Map(); // session ID -> {session, direction, players: Map(track id -> element)}
const updates = new Map(); // session ID -> the last update's whole extension, for its listener
const serializer = new XMLSerializer();

function info(s) {
    return {
        session: s.ID,
        direction: sessions.get(s.ID)?.direction ?? "",
        state: s.state,
        initiatorID: s.initiatorID,
        opponentsIDs: s.opponentsIDs ?? [],
        callType: s.callType,
        currentUserID: s.currentUserID ?? 0,
    };
}

// JSON-safe copy (the SDK's objects can hold DOM nodes or cycles).
function plain(v) {
    try {
        return JSON.parse(JSON.stringify(v ?? null));
    } catch {
        return String(v);
    }
}

function track(s, direction) {
    let entry = sessions.get(s.ID);
    if (!entry) {
        entry = { session: s, direction, players: new Map() };
        sessions.set(s.ID, entry);
    }
    return entry;
}

function getSession(id) {
    const entry = sessions.get(id);
    if (!entry) throw new Error(`no session ${id}`);
    return entry.session;
}

// getUserMedia asks the SDK for the local stream: audio (raw, without echo
// cancellation, noise suppression and gain control, which would take a
// steady tone for noise), and the camera if asked and this page has one.
function getUserMedia(s, video) {
    const audio = me.rawAudio ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
    return new Promise((resolve, reject) => {
        s.getUserMedia({ audio, video: Boolean(video && me.camera) }, (err, stream) => {
            if (err) reject(new Error(`getUserMedia: ${err?.message ?? err}`));
            else resolve(stream);
        });
    });
}

// play plays a remote track in a muted media element, as an app shows its
// peer: Chromium decodes a remote track (and WebAudio gets its samples) only
// while something plays it.
function play(entry, trackObj) {
    if (entry.players.has(trackObj.id)) return;
    const el = document.createElement(trackObj.kind === "video" ? "video" : "audio");
    el.autoplay = true;
    el.muted = true;
    el.playsInline = true;
    el.srcObject = new MediaStream([trackObj]);
    document.body.appendChild(el);
    el.play().catch((e) => console.warn(`play() of a track of ${entry.session.ID}: ${e}`));
    entry.players.set(trackObj.id, el);
}

function dropPlayers(entry) {
    for (const el of entry.players.values()) {
        el.srcObject = null;
        el.remove();
    }
    entry.players.clear();
}

// The remote tracks of a session: those its peer connections receive.
function remoteTracks(s) {
    const out = [];
    for (const peer of Object.values(s.peerConnections ?? {})) {
        for (const r of peer._pc?.getReceivers() ?? []) {
            if (r.track && r.track.readyState === "live") out.push(r.track);
        }
    }
    return out;
}

// acceptSession answers as an app does: the local media first (the SDK
// needs it for its answer), then accept.
async function acceptSession(s, userInfo) {
    await getUserMedia(s, s.callType === QB.webrtc.CallType.VIDEO);
    emit({ event: "session.local", ...info(s), action: "accept", userInfo });
    s.accept(userInfo ?? {});
}

function setListeners() {
    const w = QB.webrtc;
    w.onCallListener = (s, userInfo) => {
        track(s, "incoming");
        emit({ event: "session.call", ...info(s), userInfo: plain(userInfo) });
        // onCallListener runs before the SDK has made the peer connection
        // and stored the offer (processOnCall comes next): accepting or
        // rejecting in it would find no peer. Deferred, they do.
        const { policy, userInfo: answerInfo } = incoming;
        if (policy === "accept") {
            setTimeout(() => acceptSession(s, answerInfo).catch((e) => console.error(`auto-accept of ${s.ID}: ${e}`)), 0);
        } else if (policy === "reject") {
            setTimeout(() => {
                emit({ event: "session.local", ...info(s), action: "reject", userInfo: answerInfo });
                s.reject(answerInfo ?? {});
            }, 0);
        }
    };
    w.onAcceptCallListener = (s, userId, userInfo) => emit({ event: "session.accept", ...info(s), userId, userInfo: plain(userInfo) });
    w.onRejectCallListener = (s, userId, userInfo) => emit({ event: "session.reject", ...info(s), userId, userInfo: plain(userInfo) });
    w.onStopCallListener = (s, userId, userInfo) => emit({ event: "session.stop", ...info(s), userId, userInfo: plain(userInfo) });
    w.onUpdateCallListener = (s, userId, userInfo) => {
        const extension = updates.get(s.ID) ?? null;
        updates.delete(s.ID);
        emit({ event: "session.update", ...info(s), userId, userInfo: plain(userInfo), extension });
    };
    w.onUserNotAnswerListener = (s, userId) => emit({ event: "session.notAnswer", ...info(s), userId });
    w.onRemoteStreamListener = (s, userId, stream) => {
        const entry = track(s, "incoming");
        for (const t of stream?.getTracks() ?? []) play(entry, t);
        emit({
            event: "session.remoteStream",
            ...info(s),
            userId,
            audioTracks: stream?.getAudioTracks().length ?? 0,
            videoTracks: stream?.getVideoTracks().length ?? 0,
        });
    };
    w.onSessionConnectionStateChangedListener = (s, userId, state) =>
        emit({ event: "session.connectionState", ...info(s), userId, connectionState: connectionStates[state] ?? String(state) });
    w.onSessionCloseListener = (s) => {
        const entry = sessions.get(s.ID);
        if (entry) dropPlayers(entry);
        dropAnalyser(s.ID);
        emit({ event: "session.close", ...info(s) });
    };
    w.onReconnectListener = (s, userId, state) => emit({ event: "session.reconnect", ...info(s), userId, reconnectState: String(state) });
    w.onInvalidEventsListener = (kind, s, userId, userInfo) =>
        emit({ event: "client.invalid", kind, session: typeof s === "object" && s ? s.ID : String(s), userId, userInfo: plain(userInfo) });

    // The update listener gets only the update's userInfo (which the SDK's
    // own update never sends): keep the whole extension for it.
    const onUpdate = w._onUpdateListener;
    w._onUpdateListener = function (userID, sessionID, extension) {
        updates.set(sessionID, plain(extension));
        return onUpdate.apply(this, arguments);
    };
}

// hookStanzas reports every element Strophe sends and receives (its
// xmlOutput and xmlInput, which the SDK sets for its own log: kept).
function hookStanzas() {
    const conn = QB.chat.connection;
    for (const [hook, dir] of [
        ["xmlInput", "in"],
        ["xmlOutput", "out"],
    ]) {
        const original = conn[hook];
        conn[hook] = function (el) {
            try {
                emit({ event: "stanza", dir, xml: serializer.serializeToString(el) });
            } catch (e) {
                console.error(`serializing a stanza: ${e}`);
            }
            return original?.apply(this, arguments);
        };
    }
}

// ping waits for the server's answer to a XEP-0199 ping: the server
// handles a session's stanzas in order, so the initial presence sent before
// it has been processed (and signals to this user's bare JID reach it) by
// the time the pong comes back.
function ping(timeoutMs) {
    return new Promise((resolve, reject) => {
        const iq = $iq({ type: "get", to: me.domain, id: `harness-ping-${Date.now()}` }).c("ping", { xmlns: "urn:xmpp:ping" });
        QB.chat.connection.sendIQ(iq, () => resolve(), (err) => reject(new Error(`ping: ${err ? serializer.serializeToString(err) : "timed out"}`)), timeoutMs);
    });
}

async function login(opts) {
    if (me) throw new Error("this page is logged in already");
    if (typeof QB === "undefined") throw new Error("the QuickBlox SDK did not load");
    me = { userId: opts.userId, appId: opts.appId, domain: opts.domain, camera: Boolean(opts.camera), rawAudio: Boolean(opts.rawAudio) };
    incoming = { policy: opts.incoming || "hold", userInfo: opts.answerInfo ?? {} };
    // In 2.23.0 QB.init is (appId, authKey, authSecret, accountKey, config):
    // a config object in the 4th place is taken as the config (the SDK
    // warns that the account key is missing); with no account key it
    // fetches no account settings from QuickBlox. endpoints.api points
    // nowhere (nothing here uses the REST API); the explicit WebSocket URL
    // wins over the one derived from endpoints.chat; no ICE servers (the
    // default is QuickBlox's TURN).
    QB.init(opts.appId, "testbed-auth-key", "testbed-auth-secret", {
        endpoints: { api: "127.0.0.1:9", chat: opts.domain },
        chatProtocol: { active: 2, websocket: opts.websocketURL },
        webrtc: { iceServers: [], ...(opts.webrtc ?? {}) },
        debug: { mode: opts.debug ? 1 : 0 },
    });
    if (!QB.webrtc) throw new Error("QB.webrtc is not there: no WebRTC in this page?");
    hookStanzas();
    setListeners();
    QB.chat.onDisconnectedListener = () => emit({ event: "chat.disconnected" });
    await new Promise((resolve, reject) => {
        QB.chat.connect({ userId: opts.userId, password: opts.password }, (err) => {
            if (err) reject(new Error(`QB.chat.connect: ${JSON.stringify(plain(err))}`));
            else resolve();
        });
    });
    await ping(10000);
    return {
        jid: QB.chat.connection.jid,
        sdkVersion: QB.version,
        buildNumber: QB.buildNumber,
        userAgent: navigator.userAgent,
    };
}

async function logout() {
    if (!me || !QB.chat?.connection) return null;
    // Live calls end as when an app quits: the peers hear of it.
    for (const { session } of sessions.values()) {
        if (session.state === sessionActive) {
            try {
                session.stop({});
            } catch (e) {
                console.warn(`stopping ${session.ID}: ${e}`);
            }
        }
    }
    await new Promise((resolve) => {
        const timer = setTimeout(resolve, 3000);
        QB.chat.onDisconnectedListener = () => {
            clearTimeout(timer);
            emit({ event: "chat.disconnected" });
            resolve();
        };
        QB.chat.disconnect();
    });
    return null;
}

function setIncoming(policy, userInfo) {
    if (!["accept", "reject", "hold"].includes(policy)) throw new Error(`unknown policy ${policy}`);
    incoming = { policy, userInfo: userInfo ?? {} };
    return null;
}

// call places a call as an app does: a session, the local media, call().
async function call(opponents, video, userInfo) {
    const placedAt = now();
    const type = video ? QB.webrtc.CallType.VIDEO : QB.webrtc.CallType.AUDIO;
    const s = QB.webrtc.createNewSession(opponents, type);
    track(s, "outgoing");
    emit({ event: "session.local", ...info(s), action: "placed", t: placedAt });
    await getUserMedia(s, video);
    emit({ event: "session.local", ...info(s), action: "call", userInfo });
    s.call(userInfo ?? {}, () => {});
    return { ...info(s), placedAt };
}

async function accept(id, userInfo) {
    await acceptSession(getSession(id), userInfo);
    return null;
}

async function reject(id, userInfo) {
    const s = getSession(id);
    emit({ event: "session.local", ...info(s), action: "reject", userInfo });
    s.reject(userInfo ?? {});
    return null;
}

async function hangup(id, userInfo) {
    const s = getSession(id);
    emit({ event: "session.local", ...info(s), action: "stop", userInfo });
    s.stop(userInfo ?? {});
    return null;
}

async function update(id, extension, userId) {
    getSession(id).update(extension ?? {}, userId || undefined);
    return null;
}

async function mute(id, kind, muted) {
    const s = getSession(id);
    if (muted) s.mute(kind);
    else s.unmute(kind);
    return null;
}

function emptyKind() {
    return {
        packetsReceived: 0,
        bytesReceived: 0,
        packetsLost: 0,
        packetsSent: 0,
        bytesSent: 0,
        framesDecoded: 0,
        frameWidth: 0,
        frameHeight: 0,
        audioLevel: 0,
        inboundCodec: "",
        outboundCodec: "",
    };
}

// stats sums the inbound and outbound RTP statistics of the session's
// peer connections by kind.
async function stats(id) {
    const s = getSession(id);
    const out = { audio: emptyKind(), video: emptyKind(), peers: 0, iceState: "", connectionState: "", t: now() };
    for (const peer of Object.values(s.peerConnections ?? {})) {
        const pc = peer._pc;
        if (!pc) continue;
        out.peers++;
        out.iceState = pc.iceConnectionState;
        out.connectionState = pc.connectionState;
        const report = await pc.getStats();
        const codec = (cid) => (cid && report.get(cid)?.mimeType) || "";
        for (const r of report.values()) {
            const k = out[r.kind];
            if (!k) continue;
            if (r.type === "inbound-rtp") {
                k.packetsReceived += r.packetsReceived ?? 0;
                k.bytesReceived += r.bytesReceived ?? 0;
                k.packetsLost += r.packetsLost ?? 0;
                k.framesDecoded += r.framesDecoded ?? 0;
                k.frameWidth = Math.max(k.frameWidth, r.frameWidth ?? 0);
                k.frameHeight = Math.max(k.frameHeight, r.frameHeight ?? 0);
                k.audioLevel = Math.max(k.audioLevel, r.audioLevel ?? 0);
                k.inboundCodec ||= codec(r.codecId);
            } else if (r.type === "outbound-rtp") {
                k.packetsSent += r.packetsSent ?? 0;
                k.bytesSent += r.bytesSent ?? 0;
                k.outboundCodec ||= codec(r.codecId);
            }
        }
    }
    return out;
}

// One AudioContext per page, and an analyser per session on its remote
// audio track (made again when the track changes).
let audioContext = null;
const analysers = new Map(); // session ID -> {trackId, source, analyser, bins}

function dropAnalyser(id) {
    const a = analysers.get(id);
    if (!a) return;
    a.source.disconnect();
    analysers.delete(id);
}

async function analyserFor(s) {
    const audioTrack = remoteTracks(s).find((t) => t.kind === "audio");
    if (!audioTrack) return null;
    const entry = track(s, "incoming");
    play(entry, audioTrack);
    audioContext ??= new AudioContext();
    if (audioContext.state === "suspended") await audioContext.resume();
    let a = analysers.get(s.ID);
    if (!a || a.trackId !== audioTrack.id) {
        dropAnalyser(s.ID);
        const source = audioContext.createMediaStreamSource(new MediaStream([audioTrack]));
        const analyser = audioContext.createAnalyser();
        analyser.fftSize = 16384;
        analyser.smoothingTimeConstant = 0;
        analyser.minDecibels = -200;
        analyser.maxDecibels = 0;
        source.connect(analyser);
        a = { trackId: audioTrack.id, source, analyser, bins: new Float32Array(analyser.frequencyBinCount) };
        analysers.set(s.ID, a);
    }
    return a;
}

// remoteSpectrum reads the analyser's spectrum of the session's remote
// audio (dBFS per bin of binHz, bin i centred on i·binHz) from 0 Hz to just
// above maxHz, for the Go side to judge (jsclient.Spectrum): an FFT of
// 16384 samples without smoothing. JSON has no -Infinity (digital
// silence): levels are clamped to -200 and rounded to 0.01 dB.
async function remoteSpectrum(id, maxHz) {
    const a = await analyserFor(getSession(id));
    if (!a) return { track: false, binHz: 0, db: [], state: audioContext?.state ?? "", t: now() };
    a.analyser.getFloatFrequencyData(a.bins);
    const binHz = audioContext.sampleRate / a.analyser.fftSize;
    const n = Math.min(a.bins.length, Math.floor(maxHz / binHz) + 2);
    const db = Array.from(a.bins.subarray(0, n), (v) => (v > -200 ? Math.round(v * 100) / 100 : -200));
    return { track: true, trackId: a.trackId, binHz, db, state: audioContext.state, t: now() };
}

// sendRaw sends a hand-built stanza through the SDK's connection, as a
// peer that is not the SDK would send it.
async function sendRaw(xml) {
    const doc = new DOMParser().parseFromString(xml, "text/xml");
    const err = doc.getElementsByTagName("parsererror")[0];
    if (err) throw new Error(`not well-formed XML: ${err.textContent}`);
    QB.chat.connection.send(doc.documentElement);
    return null;
}

async function sessionInfo(id) {
    return info(getSession(id));
}

window.harness = {
    login,
    logout,
    setIncoming,
    call,
    accept,
    reject,
    hangup,
    update,
    mute,
    stats,
    remoteSpectrum,
    sendRaw,
    sessionInfo,
};
window.harnessReady = true;
