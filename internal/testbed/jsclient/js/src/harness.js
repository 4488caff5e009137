// The page side of the test harness: one matrix-js-sdk client per page,
// driven by driver.mjs through window.harness. Every function is async and
// returns plain JSON; events go to the driver through window.__harnessEmit
// (a Playwright binding) with a wall-clock time stamp in milliseconds
// (performance.timeOrigin + performance.now(): sub-millisecond, and
// comparable across pages and with the Go test's clock).
import * as sdk from "matrix-js-sdk";

const now = () => performance.timeOrigin + performance.now();

function emit(ev) {
    ev.t ??= now();
    if (typeof window.__harnessEmit === "function") {
        window.__harnessEmit(ev).catch(() => {});
    }
}

let client = null;
// What to do with an incoming call: "notify" (surface it, ringing),
// "answer" (answer at once, and surface it), "reject" (reject at once, and
// surface it), "ignore" (leave it ringing until its lifetime ends, and
// report it only as ignored).
let incomingPolicy = "notify";
const calls = new Map();
// Media elements playing each call's remote feeds, as a client app would:
// Chromium decodes (and measures the level of) remote audio that is played.
const mediaElements = new Map();
// Remote feeds whose mute changes are reported.
const watchedFeeds = new WeakSet();

function callInfo(call) {
    return {
        call: call.callId,
        room: call.roomId,
        state: call.state,
        direction: call.direction,
        type: call.type,
        hangupReason: call.hangupReason ?? "",
        hangupParty: call.hangupParty ?? "",
        opponent: call.getOpponentMember?.()?.userId ?? call.invitee ?? "",
        remoteOnHold: call.isRemoteOnHold?.() ?? false,
        localOnHold: call.isLocalOnHold?.() ?? false,
        microphoneMuted: call.isMicrophoneMuted?.() ?? false,
        remoteAudioMuted: call.remoteUsermediaFeed?.isAudioMuted?.() ?? false,
        remoteVideoMuted: call.remoteUsermediaFeed?.isVideoMuted?.() ?? false,
    };
}

function playFeeds(call) {
    let els = mediaElements.get(call.callId);
    if (!els) {
        els = new Map();
        mediaElements.set(call.callId, els);
    }
    const seen = new Set();
    for (const feed of call.getRemoteFeeds()) {
        const stream = feed.stream;
        if (!stream) continue;
        seen.add(stream.id);
        if (els.has(stream.id)) continue;
        const el = document.createElement(stream.getVideoTracks().length ? "video" : "audio");
        el.autoplay = true;
        el.muted = false;
        el.srcObject = stream;
        document.body.appendChild(el);
        el.play().catch((e) => console.warn(`play() of ${call.callId}'s feed: ${e}`));
        els.set(stream.id, el);
    }
    for (const [id, el] of els) {
        if (!seen.has(id)) {
            el.srcObject = null;
            el.remove();
            els.delete(id);
        }
    }
}

function dropFeeds(call) {
    const els = mediaElements.get(call.callId);
    if (!els) return;
    for (const el of els.values()) {
        el.srcObject = null;
        el.remove();
    }
    mediaElements.delete(call.callId);
}

function track(call) {
    if (calls.has(call.callId)) return;
    calls.set(call.callId, call);
    call.on(sdk.CallEvent.State, (state, old) => {
        emit({ event: "call.state", ...callInfo(call), state, old });
        if (state === "ended") {
            dropFeeds(call);
            dropAnalyser(call.callId);
        }
    });
    call.on(sdk.CallEvent.Hangup, () => emit({ event: "call.hangup", ...callInfo(call) }));
    // Mandatory: placeCall throws without an error listener.
    call.on(sdk.CallEvent.Error, (err) =>
        emit({ event: "call.error", ...callInfo(call), code: err?.code ?? "", message: String(err?.message ?? err) }),
    );
    call.on(sdk.CallEvent.FeedsChanged, () => {
        playFeeds(call);
        // The other party's mute, from its stream metadata (the feed's
        // CallFeedEvent.MuteStateChanged).
        for (const feed of call.getRemoteFeeds()) {
            if (watchedFeeds.has(feed)) continue;
            watchedFeeds.add(feed);
            feed.on("mute_state_changed", () => emit({ event: "call.remote_mute", ...callInfo(call) }));
        }
        emit({ event: "call.feeds", ...callInfo(call), remoteFeeds: call.getRemoteFeeds().length });
    });
    call.on(sdk.CallEvent.RemoteHoldUnhold, (onHold) => emit({ event: "call.remote_hold", ...callInfo(call), onHold }));
    call.on(sdk.CallEvent.LocalHoldUnhold, (onHold) => emit({ event: "call.local_hold", ...callInfo(call), onHold }));
}

function getCall(callId) {
    const call = calls.get(callId);
    if (!call) throw new Error(`no call ${callId}`);
    return call;
}

function onIncoming(call) {
    track(call);
    if (incomingPolicy === "ignore") {
        emit({ event: "call.ignored", ...callInfo(call) });
        return;
    }
    emit({ event: "call.incoming", ...callInfo(call) });
    if (incomingPolicy === "answer") {
        call.answer().catch((e) => console.error(`auto-answer of ${call.callId}: ${e}`));
    } else if (incomingPolicy === "reject") {
        call.reject();
    }
}

async function start(opts) {
    if (client) throw new Error("this page already has a client");
    if (!sdk.createClient) throw new Error("matrix-js-sdk did not load");
    incomingPolicy = opts.incoming || "notify";
    client = sdk.createClient({
        baseUrl: opts.baseUrl,
        userId: opts.userId,
        accessToken: opts.accessToken,
        deviceId: opts.deviceId,
        timelineSupport: false,
    });
    if (!client.supportsVoip()) throw new Error("matrix-js-sdk says this page cannot do VoIP (no WebRTC?)");
    if (opts.crypto) {
        await client.initRustCrypto({ useIndexedDB: false });
    }
    if (opts.rawAudio) {
        // A steady tone is what noise suppression removes: capture the
        // (fake) microphone as it is.
        await client.getMediaHandler().setAudioSettings({
            autoGainControl: false,
            echoCancellation: false,
            noiseSuppression: false,
        });
    }
    client.on("Call.incoming", onIncoming);
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            emit({ event: "sync", state });
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`sync failed: ${data?.error?.message ?? "unknown"}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 1, lazyLoadMembers: false });
    await prepared;
    return {
        userId: client.getUserId(),
        deviceId: client.getDeviceId(),
        crypto: Boolean(client.getCrypto()),
        sdkVersion: __SDK_VERSION__,
        userAgent: navigator.userAgent,
    };
}

async function stop() {
    if (!client) return;
    // Hang up the calls in progress, so that their peers hear of it; leave
    // ringing ones alone, like a device that goes away unanswered.
    for (const call of calls.values()) {
        if (call.state !== "ringing" && call.state !== "ended") {
            call.hangup("user_hangup", false);
        }
    }
    // Stopping the client while a call is still ending breaks
    // MatrixCall.terminate(), which last removes the call from the client's
    // call handler (that stopClient removes). Not every way of ending emits
    // an event at that point: look. (The handler can hold another, ended
    // object with the same ID: the one it makes for the echo of our own
    // hangup.)
    const handler = client.callEventHandler;
    const ending = () => [...calls].some(([id, call]) => call.state === "ended" && handler.calls.get(id) === call);
    const deadline = Date.now() + 3000;
    while (handler && ending() && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
    }
    client.stopClient();
    client = null;
}

function setIncoming(policy) {
    if (!["notify", "answer", "reject", "ignore"].includes(policy)) throw new Error(`unknown policy ${policy}`);
    incomingPolicy = policy;
}

async function createRoom(opts) {
    const req = { preset: "private_chat", visibility: "private", invite: opts.invite ?? [], is_direct: Boolean(opts.direct) };
    if (opts.name) req.name = opts.name;
    if (opts.encrypted) {
        req.initial_state = [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }];
    }
    const { room_id: roomId } = await client.createRoom(req);
    return roomId;
}

async function joinRoom(roomId) {
    const room = await client.joinRoom(roomId);
    return room.roomId;
}

// waitInvite waits until the client is invited to a room by inviter (a
// direct chat someone else starts) and returns the room's ID.
async function waitInvite(inviter) {
    const find = () =>
        client
            .getRooms()
            .find((r) => r.getMyMembership() === "invite" && r.getDMInviter?.() === inviter)?.roomId;
    const found = find();
    if (found) return found;
    return new Promise((resolve) => {
        const check = () => {
            const id = find();
            if (id) {
                client.off(sdk.ClientEvent.Sync, check);
                client.off(sdk.RoomEvent.MyMembership, check);
                client.off(sdk.ClientEvent.Room, check);
                resolve(id);
            }
        };
        client.on(sdk.ClientEvent.Sync, check);
        client.on(sdk.RoomEvent.MyMembership, check);
        client.on(sdk.ClientEvent.Room, check);
    });
}

// waitRoom waits until the client's sync knows the room with the given
// membership of its own user (and, for encrypted rooms, the encryption
// state), so that a call placed next is sent correctly.
async function waitRoom(roomId, membership) {
    const ok = () => client.getRoom(roomId)?.getMyMembership() === membership;
    if (ok()) return;
    await new Promise((resolve) => {
        const check = () => {
            if (ok()) {
                client.off(sdk.ClientEvent.Sync, check);
                client.off(sdk.RoomEvent.MyMembership, check);
                client.off(sdk.ClientEvent.Room, check);
                resolve();
            }
        };
        client.on(sdk.ClientEvent.Sync, check);
        client.on(sdk.RoomEvent.MyMembership, check);
        client.on(sdk.ClientEvent.Room, check);
    });
}

// placeCall places a call; callId, if given, replaces the one js-sdk made
// up (for glare tests: the lesser call ID wins).
// waitUntil resolves with check()'s first result that is not undefined,
// re-checking on every event that subscribe hooks it to, or rejects after
// timeoutMs (0: never).
function waitUntil(what, timeoutMs, subscribe, check) {
    return new Promise((resolve, reject) => {
        let done = false;
        let timer = null;
        const unsubscribe = [];
        const finish = (fn, value) => {
            if (done) return;
            done = true;
            if (timer) clearTimeout(timer);
            for (const off of unsubscribe) off();
            fn(value);
        };
        const attempt = () => {
            try {
                const value = check();
                if (value !== undefined) finish(resolve, value);
            } catch (e) {
                finish(reject, e);
            }
        };
        subscribe((name) => {
            client.on(name, attempt);
            unsubscribe.push(() => client.off(name, attempt));
        });
        if (timeoutMs > 0) {
            timer = setTimeout(() => finish(reject, new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
        }
        attempt();
    });
}

// waitMember waits until the client's sync has userId in the room with the
// given membership.
async function waitMember(roomId, userId, membership, timeoutMs) {
    await waitUntil(
        `${userId} to be ${membership} in ${roomId}`,
        timeoutMs,
        (on) => {
            on(sdk.RoomMemberEvent.Membership);
            on(sdk.RoomStateEvent.Members);
            on(sdk.ClientEvent.Room);
            on(sdk.ClientEvent.Sync);
        },
        () => (client.getRoom(roomId)?.getMember(userId)?.membership === membership ? true : undefined),
    );
    return null;
}

// sendText sends an m.text message (encrypted in an encrypted room) and
// returns its event ID.
async function sendText(roomId, body) {
    const res = await client.sendMessage(roomId, { msgtype: "m.text", body });
    return res.event_id;
}

function messageInfo(ev) {
    const content = ev.getContent();
    return {
        eventId: ev.getId(),
        sender: ev.getSender(),
        body: content.body ?? "",
        msgtype: content.msgtype ?? "",
        inReplyTo: content["m.relates_to"]?.["m.in_reply_to"]?.event_id ?? "",
        encrypted: ev.isEncrypted(),
    };
}

// waitMessage waits until the room's live timeline has an m.room.message
// (decrypted, in an encrypted room) that matches: from sender, its body
// containing contains, replying to inReplyTo (each if given). Messages that
// arrived before the call count.
async function waitMessage(roomId, match, timeoutMs) {
    const matches = (ev) => {
        if (ev.getType() !== "m.room.message") return false;
        const info = messageInfo(ev);
        return (
            (!match.sender || info.sender === match.sender) &&
            (!match.contains || info.body.includes(match.contains)) &&
            (!match.inReplyTo || info.inReplyTo === match.inReplyTo)
        );
    };
    return waitUntil(
        `a message in ${roomId} matching ${JSON.stringify(match)}`,
        timeoutMs,
        (on) => {
            on(sdk.RoomEvent.Timeline);
            on(sdk.MatrixEventEvent.Decrypted);
            on(sdk.ClientEvent.Sync);
        },
        () => {
            const room = client.getRoom(roomId);
            if (!room) return undefined;
            const ev = room.getLiveTimeline().getEvents().find(matches);
            return ev ? messageInfo(ev) : undefined;
        },
    );
}

// audioCodecs, when set, are the only audio formats (MIME types, e.g.
// "audio/G722") this page's peer connections offer: applied with the
// standard setCodecPreferences to every audio transceiver just before each
// local description, whichever way js-sdk makes it.
let audioCodecs = null;
function preferAudioCodecs(pc) {
    if (!audioCodecs) return;
    const wanted = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) => audioCodecs.includes(c.mimeType));
    if (!wanted.length) throw new Error(`this browser has none of the audio codecs ${audioCodecs}`);
    for (const t of pc.getTransceivers()) {
        if (t.receiver.track?.kind === "audio" && !t.stopped) t.setCodecPreferences(wanted);
    }
}
for (const name of ["createOffer", "setLocalDescription"]) {
    const original = RTCPeerConnection.prototype[name];
    RTCPeerConnection.prototype[name] = function (...args) {
        preferAudioCodecs(this);
        return original.apply(this, args);
    };
}

async function placeCall(roomId, invitee, video, callId, codecs) {
    audioCodecs = codecs?.length ? codecs : null;
    const placedAt = now();
    const call = sdk.createNewMatrixCall(client, roomId, invitee ? { invitee } : undefined);
    if (!call) throw new Error("createNewMatrixCall returned null (VoIP unsupported here)");
    if (callId) {
        if (calls.has(callId)) throw new Error(`call ID ${callId} is taken`);
        call.callId = callId;
    }
    track(call);
    // placeVoiceCall/placeVideoCall resolve once the local media is there
    // and the peer connection exists; failures end the call (an error event
    // and a hangup), they do not reject.
    const placing = video ? call.placeVideoCall() : call.placeVoiceCall();
    await placing;
    return { ...callInfo(call), placedAt };
}

async function answer(callId, audio, video) {
    const call = getCall(callId);
    await call.answer(audio ?? undefined, video ?? undefined);
    return callInfo(call);
}

async function reject(callId) {
    const call = getCall(callId);
    call.reject();
    return callInfo(call);
}

async function hangup(callId, reason) {
    const call = getCall(callId);
    call.hangup(reason || "user_hangup", false);
    return callInfo(call);
}

async function setMicrophoneMuted(callId, muted) {
    return getCall(callId).setMicrophoneMuted(muted);
}

async function setRemoteOnHold(callId, onHold) {
    const call = getCall(callId);
    call.setRemoteOnHold(onHold);
    return callInfo(call);
}

async function info(callId) {
    return callInfo(getCall(callId));
}

function emptyKind() {
    return {
        inboundBytes: 0,
        inboundPackets: 0,
        inboundPacketsLost: 0,
        outboundBytes: 0,
        outboundPackets: 0,
        inboundCodec: "",
        outboundCodec: "",
        audioLevel: 0,
        totalAudioEnergy: 0,
        totalSamplesReceived: 0,
        framesDecoded: 0,
        frameWidth: 0,
        frameHeight: 0,
        jitter: 0,
    };
}

async function stats(callId) {
    const call = getCall(callId);
    const pc = call.peerConn;
    const out = { audio: emptyKind(), video: emptyKind(), audioTracks: [], t: now(), iceState: "", connectionState: "" };
    if (!pc) return out;
    out.iceState = pc.iceConnectionState;
    out.connectionState = pc.connectionState;
    const report = await pc.getStats();
    const codec = (id) => (id && report.get(id)?.mimeType) || "";
    for (const s of report.values()) {
        const k = out[s.kind];
        if (!k) continue;
        if (s.type === "inbound-rtp") {
            k.inboundBytes += s.bytesReceived ?? 0;
            k.inboundPackets += s.packetsReceived ?? 0;
            k.inboundPacketsLost += s.packetsLost ?? 0;
            k.inboundCodec ||= codec(s.codecId);
            k.jitter = Math.max(k.jitter, s.jitter ?? 0);
            if (s.kind === "audio") {
                out.audioTracks.push({
                    trackId: s.trackIdentifier ?? "",
                    mid: s.mid ?? "",
                    ssrc: s.ssrc ?? 0,
                    packets: s.packetsReceived ?? 0,
                    audioLevel: s.audioLevel ?? 0,
                    totalAudioEnergy: s.totalAudioEnergy ?? 0,
                });
                k.audioLevel = Math.max(k.audioLevel, s.audioLevel ?? 0);
                k.totalAudioEnergy += s.totalAudioEnergy ?? 0;
                k.totalSamplesReceived += s.totalSamplesReceived ?? 0;
            } else {
                k.framesDecoded += s.framesDecoded ?? 0;
                k.frameWidth = Math.max(k.frameWidth, s.frameWidth ?? 0);
                k.frameHeight = Math.max(k.frameHeight, s.frameHeight ?? 0);
            }
        } else if (s.type === "outbound-rtp") {
            k.outboundBytes += s.bytesSent ?? 0;
            k.outboundPackets += s.packetsSent ?? 0;
            k.outboundCodec ||= codec(s.codecId);
        }
    }
    return out;
}

// The remote audio track of a call: that of its remote usermedia feed (what
// js-sdk plays), else any audio track the peer connection receives.
function remoteAudioTrack(call) {
    for (const feed of call.getRemoteFeeds()) {
        const track = feed.stream?.getAudioTracks().find((t) => t.readyState === "live");
        if (track) return track;
    }
    return call.peerConn?.getReceivers().find((r) => r.track?.kind === "audio" && r.track.readyState === "live")?.track ?? null;
}

// One AudioContext per page, and an analyser per call on its remote audio
// track (made again when the track changes).
let audioContext = null;
const analysers = new Map(); // callId -> {trackId, source, analyser, bins}

function dropAnalyser(callId) {
    const a = analysers.get(callId);
    if (!a) return;
    a.source.disconnect();
    analysers.delete(callId);
}

// analyserFor returns the call's analyser on its remote audio track (made
// at the first reading, and again when the track changes), or null while
// the call has no remote audio track.
async function analyserFor(call) {
    const track = remoteAudioTrack(call);
    if (!track) return null;
    audioContext ??= new AudioContext();
    if (audioContext.state === "suspended") await audioContext.resume();
    let a = analysers.get(call.callId);
    if (!a || a.trackId !== track.id) {
        dropAnalyser(call.callId);
        const source = audioContext.createMediaStreamSource(new MediaStream([track]));
        const analyser = audioContext.createAnalyser();
        analyser.fftSize = 16384;
        analyser.smoothingTimeConstant = 0;
        analyser.minDecibels = -200;
        analyser.maxDecibels = 0;
        source.connect(analyser);
        a = { trackId: track.id, source, analyser, bins: new Float32Array(analyser.frequencyBinCount) };
        analysers.set(call.callId, a);
    }
    return a;
}

// remoteTone reads the dominant frequency (50 Hz to 8 kHz) of the call's
// remote audio and its level in dBFS (-200: silence), from a 16384-point
// FFT without smoothing, interpolated between bins (a parabola through the
// peak's dB and its neighbours').
async function remoteTone(callId) {
    const a = await analyserFor(getCall(callId));
    if (!a) return { hz: 0, db: -200, track: false, state: audioContext?.state ?? "", t: now() };
    a.analyser.getFloatFrequencyData(a.bins);
    const binHz = audioContext.sampleRate / a.analyser.fftSize;
    let peak = -1;
    let peakDb = -Infinity;
    const last = Math.min(a.bins.length - 2, Math.floor(8000 / binHz));
    for (let i = Math.max(1, Math.ceil(50 / binHz)); i <= last; i++) {
        if (a.bins[i] > peakDb) {
            peakDb = a.bins[i];
            peak = i;
        }
    }
    if (peak < 0 || !Number.isFinite(peakDb)) return { hz: 0, db: -200, track: true, state: audioContext.state, t: now() };
    let hz = peak * binHz;
    const [l, m, r] = [a.bins[peak - 1], a.bins[peak], a.bins[peak + 1]];
    const denom = l - 2 * m + r;
    if (Number.isFinite(l) && Number.isFinite(r) && denom !== 0) {
        const p = (0.5 * (l - r)) / denom;
        if (Math.abs(p) <= 1) hz = (peak + p) * binHz;
    }
    return { hz, db: Math.max(peakDb, -200), track: true, trackId: a.trackId, state: audioContext.state, t: now() };
}

// remoteSpectrum reads the analyser's spectrum of the call's remote audio
// as it is (getFloatFrequencyData: dBFS per bin of binHz, bin i centred on
// i·binHz), from 0 Hz to just above maxHz, for the test to judge (finding
// several tones at once is Go's, where it is unit-tested). JSON has no
// -Infinity (the level of digital silence) and a float32's last digits are
// noise: levels are clamped to minDecibels (-200) and rounded to 0.01 dB,
// which also keeps a reading of 8 kHz (~2700 bins) near 20 kB.
async function remoteSpectrum(callId, maxHz) {
    const a = await analyserFor(getCall(callId));
    if (!a) return { track: false, binHz: 0, db: [], state: audioContext?.state ?? "", t: now() };
    a.analyser.getFloatFrequencyData(a.bins);
    const binHz = audioContext.sampleRate / a.analyser.fftSize;
    const n = Math.min(a.bins.length, Math.floor(maxHz / binHz) + 2);
    // v > -200 is false for NaN and -Infinity alike.
    const db = Array.from(a.bins.subarray(0, n), (v) => (v > -200 ? Math.round(v * 100) / 100 : -200));
    return { track: true, trackId: a.trackId, binHz, db, state: audioContext.state, t: now() };
}

window.harness = {
    start,
    stop,
    setIncoming,
    createRoom,
    joinRoom,
    waitRoom,
    waitInvite,
    waitMember,
    sendText,
    waitMessage,
    placeCall,
    answer,
    reject,
    hangup,
    setMicrophoneMuted,
    setRemoteOnHold,
    info,
    stats,
    remoteTone,
    remoteSpectrum,
};
window.harnessReady = true;
