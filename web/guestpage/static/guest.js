// The voipbot guest call page: a browser guest joins a call that the bot
// bridges, over the bot's WebSocket (guest call protocol v1; the Go package
// web/guestpage documents it and how the page is served). No framework and
// no build step: this file is served as it is, under a strict CSP (no
// inline code, Trusted Types: text goes into the page by textContent only).
//
// The page's state is the body's data-state attribute, which the CSS reads
// to show each state's panel (and tests read too):
//   connecting → ready → starting → ringing → answered → connected → ended
// "Call again" opens a new socket and calls at once (connecting → starting
// → …): the protocol allows one call per socket.

const NAME_MAX = 64; // the protocol's limit on userInfo.name
const GATHER_CAP_MS = 2000; // how long the offer waits for ICE gathering
const TRICKLE_BATCH_MS = 50; // late candidates sent together
const STATS_EVERY_MS = 2000;
const MAX_MESSAGE = 64 * 1024; // the protocol's limit on one message
// Ringback as European exchanges play it: 425 Hz, 1 s on, 4 s off.
const RINGBACK = { hz: 425, on: 1, period: 5, level: 0.12 };

// What the guest reads for each way a call can end (data-end-reason).
const REASONS = {
    declined: "Nobody took the call",
    busy: "The line is busy",
    no_answer: "No answer",
    hangup: "The call ended",
    failed: "The call failed",
    shutdown: "The bot is restarting",
    error: "Something went wrong",
    local: "You hung up",
    lost: "The connection to the call was lost",
    unreachable: "Could not reach the call",
};
const REJECT_REASONS = ["declined", "busy", "no_answer"];
const HANGUP_REASONS = ["hangup", "failed", "shutdown"];

const $ = (id) => document.getElementById(id);
const ui = {
    title: $("title"),
    status: $("status"),
    setup: $("setup"),
    name: $("name"),
    nameHint: $("name-hint"),
    preview: $("preview"),
    meter: $("meter-level"),
    mic: $("mic"),
    camera: $("camera"),
    mediaError: $("media-error"),
    join: $("join"),
    remoteVideo: $("remote-video"),
    remoteAudio: $("remote-audio"),
    selfView: $("self-view"),
    peerName: $("peer-name"),
    peerInitial: $("peer-initial"),
    soundHint: $("sound-hint"),
    sound: $("sound"),
    mute: $("mute"),
    cameraToggle: $("camera-toggle"),
    hangup: $("hangup"),
    rtt: $("q-rtt"),
    loss: $("q-loss"),
    bitrateIn: $("q-in"),
    bitrateOut: $("q-out"),
    endReason: $("end-reason"),
    endDetail: $("end-detail"),
    again: $("again"),
};
const body = document.body;

let hello = null; // the bot's hello, once received
let call = null; // the current Call: one socket, at most one peer connection
let preview = null; // the setup panel's MediaStream
let audioCtx = null; // made at the first user gesture (autoplay rules)
let meter = null; // the preview's level meter

function setState(state, status) {
    body.dataset.state = state;
    ui.status.textContent = status;
}

// A name as the protocol takes it: trimmed, at most 64 characters.
function cleanName(s) {
    return Array.from(s.trim()).slice(0, NAME_MAX).join("");
}

function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // Without randomUUID (older browsers): a version 4 UUID by hand.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The AudioContext may only start after a user gesture: it is made (or
// resumed) from one, and used for the ringback and the level meter.
function audio() {
    if (!audioCtx) {
        const Ctx = window.AudioContext ?? window.webkitAudioContext;
        if (!Ctx) return null;
        audioCtx = new Ctx();
    }
    if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
    return audioCtx;
}

function stopStream(stream) {
    stream?.getTracks().forEach((t) => t.stop());
}

// --- Devices and preview --------------------------------------------------

function audioConstraints() {
    const id = ui.mic.value;
    return id ? { deviceId: { exact: id } } : true;
}

function videoConstraints() {
    if (!hello?.video || ui.camera.value === "none") return false;
    const id = ui.camera.value;
    const size = { width: { ideal: 1280 }, height: { ideal: 720 } };
    return id ? { ...size, deviceId: { exact: id } } : size;
}

// capture gets the chosen microphone and camera; when the camera cannot be
// had, the microphone alone (a guest without a camera still joins).
async function capture() {
    const video = videoConstraints();
    try {
        return { stream: await navigator.mediaDevices.getUserMedia({ audio: audioConstraints(), video }), cameraFailed: false };
    } catch (err) {
        if (!video || err.name === "NotAllowedError") throw err;
        return { stream: await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() }), cameraFailed: true };
    }
}

function mediaErrorText(err) {
    switch (err?.name) {
        case "NotAllowedError":
            return "The browser did not allow the microphone. Allow it (the icon in the address bar) and try again.";
        case "NotFoundError":
            return "No microphone was found.";
        case "NotReadableError":
            return "The microphone is in use by another program.";
        default:
            return `The microphone could not be started (${err?.name ?? err}).`;
    }
}

function fillSelect(select, devices, label, none) {
    const chosen = select.value;
    const options = devices.map((d, i) => new Option(d.label || `${label} ${i + 1}`, d.deviceId));
    if (none) options.push(new Option(none, "none"));
    select.replaceChildren(...options);
    if (options.some((o) => o.value === chosen)) select.value = chosen;
}

// listDevices fills the choices; labels are only given once the page may
// use the devices (after the preview's getUserMedia).
async function listDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    fillSelect(ui.mic, devices.filter((d) => d.kind === "audioinput"), "Microphone");
    if (hello?.video) fillSelect(ui.camera, devices.filter((d) => d.kind === "videoinput"), "Camera", "No camera");
}

// Select what the preview actually got, so that Join asks for the same.
function selectUsed(stream) {
    for (const track of stream.getTracks()) {
        const id = track.getSettings?.().deviceId;
        const select = track.kind === "audio" ? ui.mic : ui.camera;
        if (id && Array.from(select.options).some((o) => o.value === id)) select.value = id;
    }
}

async function startPreview() {
    if (!navigator.mediaDevices?.getUserMedia) {
        ui.mediaError.textContent = "This browser cannot make calls (no access to the microphone here).";
        ui.mediaError.hidden = false;
        return;
    }
    stopPreview();
    try {
        const { stream, cameraFailed } = await capture();
        if (body.dataset.state !== "ready") {
            stopStream(stream); // joined (or ended) meanwhile
            return;
        }
        preview = stream;
        ui.preview.srcObject = stream.getVideoTracks().length ? stream : null;
        ui.mediaError.hidden = !cameraFailed;
        ui.mediaError.textContent = cameraFailed ? "The camera could not be started: you will join with sound only." : "";
        await listDevices();
        selectUsed(stream);
        startMeter();
    } catch (err) {
        ui.mediaError.textContent = mediaErrorText(err);
        ui.mediaError.hidden = false;
        await listDevices().catch(() => {});
    }
}

function stopPreview() {
    stopMeter();
    stopStream(preview);
    preview = null;
    ui.preview.srcObject = null;
}

// The level meter shows that the chosen microphone picks up sound. It
// needs the AudioContext, so it starts at the first gesture if not before.
function startMeter() {
    stopMeter();
    const track = preview?.getAudioTracks()[0];
    if (!track || !audioCtx) return;
    const source = audioCtx.createMediaStreamSource(new MediaStream([track]));
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const m = { source, frame: 0 };
    const draw = () => {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const v of samples) sum += v * v;
        // RMS in dB, from -60 dBFS (empty) to 0 (full).
        const db = 10 * Math.log10(sum / samples.length + 1e-12);
        ui.meter.style.transform = `scaleX(${Math.min(1, Math.max(0, (db + 60) / 60)).toFixed(3)})`;
        m.frame = requestAnimationFrame(draw);
    };
    m.frame = requestAnimationFrame(draw);
    meter = m;
}

function stopMeter() {
    if (!meter) return;
    cancelAnimationFrame(meter.frame);
    meter.source.disconnect();
    meter = null;
    ui.meter.style.transform = "scaleX(0)";
}

// --- Ringback --------------------------------------------------------------

// startRingback plays the ringback tone locally (it is never sent): an
// oscillator whose gain is scheduled ahead on the audio clock, a cycle at a
// time, with short ramps so that it does not click.
function startRingback() {
    const ctx = audio();
    if (!ctx) return null;
    const osc = ctx.createOscillator();
    osc.frequency.value = RINGBACK.hz;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    let next = ctx.currentTime + 0.05;
    const schedule = () => {
        while (next < ctx.currentTime + 2 * RINGBACK.period) {
            gain.gain.setValueAtTime(0, next);
            gain.gain.linearRampToValueAtTime(RINGBACK.level, next + 0.02);
            gain.gain.setValueAtTime(RINGBACK.level, next + RINGBACK.on - 0.02);
            gain.gain.linearRampToValueAtTime(0, next + RINGBACK.on);
            next += RINGBACK.period;
        }
    };
    schedule();
    const timer = setInterval(schedule, RINGBACK.period * 1000);
    return {
        stop() {
            clearInterval(timer);
            gain.gain.cancelScheduledValues(ctx.currentTime);
            gain.gain.setValueAtTime(0, ctx.currentTime);
            osc.stop();
            osc.disconnect();
            gain.disconnect();
        },
    };
}

// --- Quality ---------------------------------------------------------------

function showQuality(el, value, text) {
    el.dataset.value = value === null ? "" : String(value);
    el.textContent = value === null ? "–" : text;
}

// sampleStats updates the quality line: the round-trip time of the
// candidate pair in use, the share of packets lost since the last sample,
// and the bit rates in and out from the byte counters' growth.
async function sampleStats(c) {
    if (!c.pc || c.ended) return;
    const report = await c.pc.getStats();
    let selectedPair = null;
    report.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) selectedPair = s.selectedCandidatePairId;
    });
    let pair = null;
    const totals = { at: performance.now(), bytesIn: 0, bytesOut: 0, lost: 0, received: 0 };
    report.forEach((s) => {
        switch (s.type) {
            case "candidate-pair":
                // Chromium names the pair in use on its transport; Firefox
                // marks it selected; else the nominated pair that works.
                if (selectedPair ? s.id === selectedPair : s.selected || (s.nominated && s.state === "succeeded")) pair = s;
                break;
            case "inbound-rtp":
                totals.bytesIn += s.bytesReceived ?? 0;
                totals.lost += Math.max(0, s.packetsLost ?? 0);
                totals.received += s.packetsReceived ?? 0;
                break;
            case "outbound-rtp":
                totals.bytesOut += s.bytesSent ?? 0;
                break;
        }
    });
    if (c.ended) return;
    const rtt = typeof pair?.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null;
    showQuality(ui.rtt, rtt === null ? null : Math.round(rtt * 10) / 10, `${Math.round(rtt)} ms`);
    const prev = c.lastStats;
    c.lastStats = totals;
    if (!prev) return;
    const seconds = (totals.at - prev.at) / 1000;
    const lost = totals.lost - prev.lost;
    const got = totals.received - prev.received;
    const loss = lost + got > 0 ? (100 * lost) / (lost + got) : null;
    showQuality(ui.loss, loss === null ? null : Math.round(loss * 10) / 10, `${loss?.toFixed(1)} %`);
    const kbps = (bytes) => (seconds > 0 ? Math.round((8 * bytes) / seconds / 100) / 10 : null);
    const bitsIn = kbps(totals.bytesIn - prev.bytesIn);
    const bitsOut = kbps(totals.bytesOut - prev.bytesOut);
    showQuality(ui.bitrateIn, bitsIn, `${Math.round(bitsIn)} kb/s`);
    showQuality(ui.bitrateOut, bitsOut, `${Math.round(bitsOut)} kb/s`);
}

function clearQuality() {
    for (const el of [ui.rtt, ui.loss, ui.bitrateIn, ui.bitrateOut]) showQuality(el, null, "");
}

// --- The call --------------------------------------------------------------

// A Call is one WebSocket to the bot and at most one call on it.
class Call {
    constructor(autoJoin) {
        this.autoJoin = autoJoin; // "Call again": join as soon as hello comes
        this.ended = false;
        this.sessionID = null;
        this.pc = null;
        this.local = null;
        this.offerSent = false;
        this.remoteSet = false;
        this.pendingRemote = []; // candidates that came before the answer
        this.pendingLocal = []; // late candidates waiting for their batch
        this.trickleTimer = 0;
        this.ringback = null;
        this.statsTimer = 0;
        this.lastStats = null;
        this.peerName = "";
        this.audioMuted = false;
        this.videoMuted = !hello?.video;
        this.hadHello = false;

        const url = new URL(location.href);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        url.pathname += "/ws";
        url.search = "";
        url.hash = "";
        this.ws = new WebSocket(url);
        this.ws.onmessage = (e) => this.onMessage(e.data);
        this.ws.onclose = () => this.onClose();
    }

    send(type, fields) {
        if (this.ws.readyState !== WebSocket.OPEN) return;
        const data = JSON.stringify({ type, ...fields });
        if (data.length > MAX_MESSAGE) {
            this.end("error", `The ${type} message is larger than the bot takes.`);
            return;
        }
        this.ws.send(data);
    }

    onMessage(data) {
        if (this.ended) return;
        let msg;
        try {
            msg = JSON.parse(data);
        } catch {
            return; // the bot sends JSON; anything else is not for us
        }
        if (!msg || typeof msg !== "object") return;
        // Messages about another session (there is none on this socket but
        // ours) are ignored, as are types this page does not know: a newer
        // bot may add some.
        if ("sessionID" in msg && msg.sessionID !== this.sessionID) return;
        const info = msg.userInfo && typeof msg.userInfo === "object" ? msg.userInfo : {};
        switch (msg.type) {
            case "hello":
                this.onHello(msg);
                break;
            case "accept":
                this.onAccept(msg, info);
                break;
            case "iceCandidates":
                this.onCandidates(msg.iceCandidates);
                break;
            case "update":
                showRemoteMuted(info);
                break;
            case "reject":
                this.end(REJECT_REASONS.includes(info.reason) ? info.reason : "declined", info.detail);
                break;
            case "hangUp":
                this.end(HANGUP_REASONS.includes(info.reason) ? info.reason : "hangup", info.detail);
                break;
            case "error":
                this.end("error", msg.error);
                break;
        }
    }

    onHello(msg) {
        if (this.hadHello) return;
        this.hadHello = true;
        hello = {
            video: msg.video === true,
            title: typeof msg.title === "string" && msg.title.trim() ? msg.title.trim() : "Call",
            iceServers: Array.isArray(msg.iceServers) ? msg.iceServers : [],
        };
        this.videoMuted = !hello.video;
        ui.title.textContent = hello.title;
        document.title = hello.title;
        body.dataset.video = String(hello.video);
        if (this.autoJoin && cleanName(ui.name.value)) {
            this.join();
            return;
        }
        setState("ready", "Enter your name and join.");
        if (!preview) startPreview();
    }

    async join() {
        const name = cleanName(ui.name.value);
        setState("starting", "Starting your microphone…");
        ui.join.disabled = true;
        stopPreview();
        let captured;
        try {
            captured = await capture();
        } catch (err) {
            ui.join.disabled = false;
            if (this.ended) return;
            setState("ready", "Enter your name and join.");
            ui.mediaError.textContent = mediaErrorText(err);
            ui.mediaError.hidden = false;
            return;
        }
        ui.join.disabled = false;
        if (this.ended) {
            stopStream(captured.stream);
            return;
        }
        this.local = captured.stream;
        const audioTrack = this.local.getAudioTracks()[0];
        const videoTrack = this.local.getVideoTracks()[0];
        this.videoMuted = !videoTrack;
        ui.selfView.srcObject = videoTrack ? new MediaStream([videoTrack]) : null;
        showLocalMuted(this);

        try {
            this.pc = new RTCPeerConnection({ iceServers: hello.iceServers });
        } catch (err) {
            this.end("error", `The call could not be set up (${err.message}).`);
            return;
        }
        const pc = this.pc;
        pc.onicecandidate = (e) => this.onLocalCandidate(e.candidate);
        pc.ontrack = (e) => onRemoteTrack(e.track);
        // Browsers without connectionState (older Firefox) have the ICE one.
        pc.onconnectionstatechange = () => this.onConnectionState();
        pc.oniceconnectionstatechange = () => this.onConnectionState();
        if (audioTrack) pc.addTrack(audioTrack, this.local);
        if (hello.video) {
            // A video call without a camera still receives the other
            // side's video.
            if (videoTrack) pc.addTrack(videoTrack, this.local);
            else pc.addTransceiver("video", { direction: "recvonly" });
        }
        try {
            await pc.setLocalDescription(await pc.createOffer());
            await iceGathered(pc, GATHER_CAP_MS);
        } catch (err) {
            this.end("error", `The call could not be set up (${err.message}).`);
            return;
        }
        if (this.ended) return;
        this.sessionID = uuid();
        // The offer holds every candidate gathered so far; the ones found
        // later are trickled (onLocalCandidate). No candidate event can run
        // between reading the description and setting offerSent.
        this.send("call", {
            sessionID: this.sessionID,
            callType: hello.video ? 1 : 2,
            sdp: pc.localDescription.sdp,
            userInfo: { name },
        });
        this.offerSent = true;
        if (this.ended) return;
        setState("ringing", "Ringing…");
        this.ringback = startRingback();
        this.statsTimer = setInterval(() => sampleStats(this).catch(() => {}), STATS_EVERY_MS);
    }

    onLocalCandidate(candidate) {
        if (!candidate?.candidate || !this.offerSent || this.ended) return;
        this.pendingLocal.push({
            candidate: candidate.candidate,
            sdpMid: candidate.sdpMid,
            sdpMLineIndex: candidate.sdpMLineIndex,
        });
        // Candidates come in bursts: one message per burst.
        this.trickleTimer ||= setTimeout(() => {
            this.trickleTimer = 0;
            const iceCandidates = this.pendingLocal.splice(0);
            if (iceCandidates.length && !this.ended) this.send("iceCandidates", { sessionID: this.sessionID, iceCandidates });
        }, TRICKLE_BATCH_MS);
    }

    async onAccept(msg, info) {
        if (body.dataset.state !== "ringing" || typeof msg.sdp !== "string") return;
        this.ringback?.stop();
        this.ringback = null;
        this.peerName = typeof info.name === "string" && info.name.trim() ? info.name.trim() : "Someone";
        ui.peerName.textContent = this.peerName;
        ui.peerInitial.textContent = Array.from(this.peerName)[0].toUpperCase();
        setState("answered", `${this.peerName} answered. Connecting…`);
        try {
            await this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        } catch (err) {
            if (this.ended) return; // hung up meanwhile: the connection is closed
            this.send("hangUp", { sessionID: this.sessionID, userInfo: {} });
            this.end("failed", `The answer could not be used (${err.message}).`);
            return;
        }
        this.remoteSet = true;
        for (const c of this.pendingRemote.splice(0)) this.addRemote(c);
        // The other side learns of a microphone or camera that is off only
        // from an update.
        if (this.audioMuted || (hello.video && this.videoMuted)) this.sendUpdate();
        this.onConnectionState();
    }

    onCandidates(list) {
        if (!Array.isArray(list)) return;
        for (const c of list) {
            if (!c || typeof c.candidate !== "string" || !c.candidate) continue;
            if (this.remoteSet) this.addRemote(c);
            else this.pendingRemote.push(c);
        }
    }

    addRemote(c) {
        const init = { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null };
        if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
        // A candidate the browser cannot use is no reason to end the call.
        this.pc.addIceCandidate(init).catch((err) => console.warn("guest: a candidate of the bot was not used:", err.message));
    }

    onConnectionState() {
        if (this.ended || !this.pc || !this.remoteSet) return;
        switch (this.pc.connectionState ?? this.pc.iceConnectionState) {
            case "connected":
            case "completed":
                setState("connected", `In call with ${this.peerName}`);
                break;
            case "disconnected":
                ui.status.textContent = "The connection is interrupted. Reconnecting…";
                break;
            case "failed":
                this.send("hangUp", { sessionID: this.sessionID, userInfo: {} });
                this.end("failed", "The connection to the call could not be kept up.");
                break;
        }
    }

    sendUpdate() {
        if (!this.offerSent) return;
        this.send("update", {
            sessionID: this.sessionID,
            userInfo: { audio_muted: String(this.audioMuted), video_muted: String(this.videoMuted) },
        });
    }

    setAudioMuted(muted) {
        this.audioMuted = muted;
        this.local?.getAudioTracks().forEach((t) => (t.enabled = !muted));
        showLocalMuted(this);
        this.sendUpdate();
    }

    setVideoMuted(muted) {
        const track = this.local?.getVideoTracks()[0];
        if (!track) return;
        this.videoMuted = muted;
        track.enabled = !muted;
        showLocalMuted(this);
        this.sendUpdate();
    }

    hangUp() {
        if (this.ended) return;
        if (this.offerSent) this.send("hangUp", { sessionID: this.sessionID, userInfo: {} });
        this.end("local", "");
    }

    onClose() {
        if (this.ended) return;
        if (this.hadHello) {
            this.end("lost", "");
            return;
        }
        // Never got a hello: is the link itself refused (the bot refuses
        // the upgrade with the page's status, which a socket cannot read)?
        this.ended = true;
        fetch(location.href, { method: "HEAD", cache: "no-store" }).then(
            (res) => {
                if (res.ok) this.showEnd("unreachable", "");
                else location.reload(); // the bot's error page says why
            },
            () => this.showEnd("unreachable", ""),
        );
    }

    // end ends the call here: media, peer connection, socket.
    end(reason, detail) {
        if (this.ended) return;
        this.ended = true;
        this.ringback?.stop();
        this.ringback = null;
        clearInterval(this.statsTimer);
        clearTimeout(this.trickleTimer);
        this.pc?.close();
        stopStream(this.local);
        if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
        this.showEnd(reason, detail);
    }

    showEnd(reason, detail) {
        stopPreview();
        ui.remoteAudio.srcObject = null;
        ui.remoteVideo.srcObject = null;
        ui.selfView.srcObject = null;
        body.dataset.remoteVideo = "false";
        body.dataset.endReason = reason;
        ui.endReason.textContent = REASONS[reason] ?? REASONS.hangup;
        ui.endDetail.textContent = typeof detail === "string" ? detail.slice(0, 300) : "";
        ui.again.textContent = this.hadHello ? "Call again" : "Try again";
        setState("ended", "Call ended");
    }
}

// iceGathered resolves when ICE gathering is complete, or after capMs:
// without STUN or TURN it completes at once, with them it can take long,
// and what comes later is trickled.
function iceGathered(pc, capMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
        const done = () => {
            clearTimeout(timer);
            pc.removeEventListener("icegatheringstatechange", check);
            resolve();
        };
        const check = () => {
            if (pc.iceGatheringState === "complete") done();
        };
        const timer = setTimeout(done, capMs);
        pc.addEventListener("icegatheringstatechange", check);
    });
}

// Remote audio plays through the <audio> element, remote video in the
// <video> (muted: its sound is the audio element's).
function onRemoteTrack(track) {
    if (track.kind === "audio") {
        ui.remoteAudio.srcObject = new MediaStream([track]);
        ui.remoteAudio.play().then(
            () => (ui.soundHint.hidden = true),
            // Autoplay refused (no gesture counted): ask for one.
            () => (ui.soundHint.hidden = false),
        );
        return;
    }
    ui.remoteVideo.srcObject = new MediaStream([track]);
    // A receiver's track is muted until frames arrive, and again when they
    // stop: show the video only while it has some.
    const show = () => (body.dataset.remoteVideo = String(!track.muted && track.readyState === "live"));
    track.addEventListener("mute", show);
    track.addEventListener("unmute", show);
    track.addEventListener("ended", show);
    show();
}

function showLocalMuted(c) {
    body.dataset.audioMuted = String(c.audioMuted);
    body.dataset.videoMuted = String(c.videoMuted);
    ui.mute.setAttribute("aria-pressed", String(c.audioMuted));
    ui.mute.textContent = c.audioMuted ? "Unmute" : "Mute";
    ui.cameraToggle.setAttribute("aria-pressed", String(c.videoMuted));
    ui.cameraToggle.textContent = c.videoMuted ? "Camera on" : "Camera off";
    ui.cameraToggle.disabled = !c.local?.getVideoTracks().length;
}

function showRemoteMuted(info) {
    if (info.audio_muted === "true" || info.audio_muted === "false") body.dataset.remoteAudioMuted = info.audio_muted;
    if (info.video_muted === "true" || info.video_muted === "false") body.dataset.remoteVideoMuted = info.video_muted;
}

function resetCallView() {
    body.dataset.remoteAudioMuted = "false";
    body.dataset.remoteVideoMuted = "false";
    body.dataset.remoteVideo = "false";
    delete body.dataset.endReason;
    ui.peerName.textContent = "";
    ui.peerInitial.textContent = "";
    ui.soundHint.hidden = true;
    clearQuality();
}

// --- Wiring ----------------------------------------------------------------

ui.setup.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!call || call.ended || body.dataset.state !== "ready") return;
    audio(); // the click is the gesture the ringback needs
    if (!cleanName(ui.name.value)) {
        ui.nameHint.hidden = false;
        ui.name.focus();
        return;
    }
    ui.nameHint.hidden = true;
    resetCallView();
    call.join();
});
ui.name.addEventListener("input", () => {
    if (cleanName(ui.name.value)) ui.nameHint.hidden = true;
});
ui.mic.addEventListener("change", () => body.dataset.state === "ready" && startPreview());
ui.camera.addEventListener("change", () => body.dataset.state === "ready" && startPreview());
navigator.mediaDevices?.addEventListener?.("devicechange", () => listDevices().catch(() => {}));

ui.mute.addEventListener("click", () => call?.setAudioMuted(!call.audioMuted));
ui.cameraToggle.addEventListener("click", () => call?.setVideoMuted(!call.videoMuted));
ui.hangup.addEventListener("click", () => call?.hangUp());
ui.sound.addEventListener("click", () => {
    audio();
    ui.remoteAudio.play().then(() => (ui.soundHint.hidden = true), () => {});
});
ui.again.addEventListener("click", () => {
    audio();
    resetCallView();
    setState("connecting", "Connecting…");
    call = new Call(true);
});

// The first gesture anywhere lets the AudioContext run: the level meter
// starts then.
const unlock = () => {
    audio();
    if (preview && !meter) startMeter();
};
document.addEventListener("pointerdown", unlock, { once: true });
document.addEventListener("keydown", unlock, { once: true });

// Leaving the page hangs up (closing the socket would too; hangUp says so
// at once).
window.addEventListener("pagehide", () => call?.hangUp());

resetCallView();
call = new Call(false);
