// The page side of the Element Call test bed: an init script (playwright
// addInitScript) that runs in every document of the page before Element
// Call's own scripts. driver.mjs wraps it as `(<this function>)(config)`.
//
// It
//   - presets localStorage: Element Call's session ("matrix-auth-store"), so
//     that it restores a logged-in client instead of showing its login page,
//     and its settings (matrix-setting-*), e.g. audio processing off so that
//     a test tone reaches the other side as it is;
//   - wraps RTCPeerConnection, to keep every connection Element Call's
//     LiveKit client makes for getStats();
//   - exposes window.__ecTestbed: what the page plays (remote audio as
//     Element Call renders it, per LiveKit participant), its tiles, and
//     statistics.
//
// Identities come from React's fibers: Element Call renders each remote
// LiveKit audio track as an <audio> element from a component whose props
// hold the track reference (trackRef.participant.identity), and each tile
// from props holding its view model (vm.rtcBackendIdentity and its
// behaviours). Props and view model fields are not renamed by minification;
// this is pinned to Element Call 0.26.1 and checked by the harness test.
(cfg) => {
    if (window.__ecTestbed) return;
    try {
        if (cfg.session) localStorage.setItem("matrix-auth-store", JSON.stringify(cfg.session));
        for (const [k, v] of Object.entries(cfg.localStorage ?? {})) localStorage.setItem(k, v);
    } catch (e) {
        // An opaque origin (about:blank) has no localStorage; nothing to preset there.
    }

    const now = () => performance.timeOrigin + performance.now();

    // Every peer connection the page made, closed ones included until read.
    const pcs = [];
    const Orig = window.RTCPeerConnection;
    if (Orig) {
        // A subclass keeps the prototype chain (feature checks on
        // RTCPeerConnection.prototype) and the static generateCertificate.
        class TestbedPeerConnection extends Orig {
            constructor(...args) {
                super(...args);
                pcs.push({ pc: this, created: now() });
            }
        }
        window.RTCPeerConnection = TestbedPeerConnection;
        if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = TestbedPeerConnection;
    }
    const livePCs = () => pcs.filter((e) => e.pc.connectionState !== "closed");
    // Peer connections are kept after they close, to tell what happened.

    // The React fiber of a DOM node, and its props and its ancestors' (up to depth).
    function fiberProps(el, depth, pick) {
        const key = Object.keys(el).find((k) => k.startsWith("__reactFiber$"));
        let f = key ? el[key] : null;
        for (let i = 0; f && i < depth; i++, f = f.return) {
            const v = f.memoizedProps && pick(f.memoizedProps);
            if (v) return v;
        }
        return null;
    }

    // The LiveKit track reference a media element renders, if any.
    function trackRefOf(el) {
        return fiberProps(el, 12, (p) => (p.trackRef?.participant ? p.trackRef : null));
    }

    // Remote audio as Element Call plays it: its <audio> elements with a
    // live audio track (EC renders only participants matched to a call
    // membership), each with the LiveKit identity it belongs to.
    function playedAudio() {
        const out = [];
        for (const el of document.querySelectorAll("audio")) {
            const stream = el.srcObject;
            if (!(stream instanceof MediaStream)) continue;
            const ref = trackRefOf(el);
            if (ref?.participant?.isLocal) continue;
            for (const track of stream.getAudioTracks()) {
                if (track.readyState !== "live") continue;
                out.push({
                    track,
                    identity: ref?.participant?.identity ?? "",
                    source: ref?.source ?? ref?.publication?.source ?? "",
                    elementMuted: el.muted || el.volume === 0,
                    paused: el.paused,
                });
            }
        }
        return out;
    }

    // Track id -> LiveKit identity, from every rendered <audio> and <video>.
    function trackIdentities() {
        const ids = new Map();
        for (const el of document.querySelectorAll("audio, video")) {
            const stream = el.srcObject;
            if (!(stream instanceof MediaStream)) continue;
            const ref = trackRefOf(el);
            if (!ref) continue;
            for (const track of stream.getTracks()) ids.set(track.id, ref.participant.identity);
        }
        return ids;
    }

    // One AudioContext, an analyser per played track and one on their mix.
    let audioContext = null;
    let mix = null;
    const analysers = new Map(); // track id -> {source, analyser, bins}

    function newAnalyser() {
        const analyser = audioContext.createAnalyser();
        analyser.fftSize = 16384;
        analyser.smoothingTimeConstant = 0;
        analyser.minDecibels = -200;
        analyser.maxDecibels = 0;
        return { analyser, bins: new Float32Array(analyser.frequencyBinCount) };
    }

    // The dominant frequency (50 Hz to 8 kHz) and its level in dBFS (-200:
    // silence), from a 16384-point FFT without smoothing, interpolated
    // between bins (a parabola through the peak's dB and its neighbours'),
    // as internal/testbed/jsclient measures js-sdk calls.
    function peak(a) {
        a.analyser.getFloatFrequencyData(a.bins);
        const binHz = audioContext.sampleRate / a.analyser.fftSize;
        let best = -1;
        let bestDb = -Infinity;
        const last = Math.min(a.bins.length - 2, Math.floor(8000 / binHz));
        for (let i = Math.max(1, Math.ceil(50 / binHz)); i <= last; i++) {
            if (a.bins[i] > bestDb) {
                bestDb = a.bins[i];
                best = i;
            }
        }
        if (best < 0 || !Number.isFinite(bestDb)) return { hz: 0, db: -200 };
        let hz = best * binHz;
        const [l, m, r] = [a.bins[best - 1], a.bins[best], a.bins[best + 1]];
        const denom = l - 2 * m + r;
        if (Number.isFinite(l) && Number.isFinite(r) && denom !== 0) {
            const p = (0.5 * (l - r)) / denom;
            if (Math.abs(p) <= 1) hz = (best + p) * binHz;
        }
        return { hz, db: Math.max(bestDb, -200) };
    }

    // remoteTones reads every played remote audio track, and their mix
    // (what the user hears: the tracks of unmuted elements summed).
    async function remoteTones() {
        const played = playedAudio();
        if (played.length === 0 && !audioContext) {
            return { tracks: [], mix: { hz: 0, db: -200, tracks: 0 }, state: "", t: now() };
        }
        audioContext ??= new AudioContext();
        if (audioContext.state === "suspended") await audioContext.resume();
        mix ??= newAnalyser();
        const seen = new Set();
        for (const p of played) {
            seen.add(p.track.id);
            if (analysers.has(p.track.id)) continue;
            const source = audioContext.createMediaStreamSource(new MediaStream([p.track]));
            const a = newAnalyser();
            source.connect(a.analyser);
            analysers.set(p.track.id, { source, ...a, mixed: false });
        }
        for (const [id, a] of analysers) {
            if (!seen.has(id)) {
                a.source.disconnect();
                analysers.delete(id);
            }
        }
        // The mix follows the elements' mute state.
        let mixed = 0;
        for (const p of played) {
            const a = analysers.get(p.track.id);
            const want = !p.elementMuted;
            if (want && !a.mixed) a.source.connect(mix.analyser);
            if (!want && a.mixed) a.source.disconnect(mix.analyser);
            a.mixed = want;
            if (want) mixed++;
        }
        const tracks = played.map((p) => ({
            ...peak(analysers.get(p.track.id)),
            trackId: p.track.id,
            identity: p.identity,
            source: p.source,
            trackMuted: p.track.muted,
            elementMuted: p.elementMuted,
            paused: p.paused,
        }));
        const m = mixed > 0 ? peak(mix) : { hz: 0, db: -200 };
        return { tracks, mix: { ...m, tracks: mixed }, state: audioContext.state, t: now() };
    }

    const encryptionNames = ["connecting", "okay", "key_missing", "key_invalid", "password_invalid"];
    const val = (b) => (b && "value" in b ? b.value : undefined);

    // The remote LiveKit participants whose audio EC renders: identity ->
    // their audio publications, from the <audio> elements' track references.
    function renderedAudio() {
        const out = new Map();
        for (const el of document.querySelectorAll("audio")) {
            const ref = trackRefOf(el);
            if (!ref || ref.participant.isLocal) continue;
            const list = out.get(ref.participant.identity) ?? [];
            list.push(ref.publication);
            out.set(ref.participant.identity, list);
        }
        return out;
    }

    // The tiles Element Call shows, from their view models. (A view model
    // does not expose its LiveKit participant: whether one is matched is
    // its waitingForMedia$, and its identity and audio publications come
    // from what EC renders.)
    function participants() {
        const out = new Map();
        const audio = renderedAudio();
        for (const el of document.querySelectorAll('[data-testid="videoTile"]')) {
            const vm = fiberProps(el, 12, (p) => (p.vm && "userId" in p.vm ? p.vm : null));
            const nameTag = el.querySelector('[data-testid="name_tag"]')?.textContent ?? "";
            if (!vm) {
                out.set(`dom:${out.size}`, { displayName: nameTag, found: false });
                continue;
            }
            if (out.has(vm.id)) continue;
            const identity = vm.rtcBackendIdentity ?? "";
            const status = val(vm.encryptionStatus$);
            const local = vm.local === true;
            const waiting = !local && val(vm.waitingForMedia$) === true;
            const pubs = audio.get(identity) ?? [];
            const videoRef = val(vm.video$);
            out.set(vm.id, {
                id: vm.id ?? "",
                userId: vm.userId ?? "",
                identity,
                connected: local || (!waiting && vm.waitingForMedia$ !== undefined),
                audioRendered: pubs.length > 0,
                audioEncrypted: pubs.some((p) => p?.isEncrypted === true),
                videoIdentity: videoRef?.participant?.identity ?? "",
                displayName: val(vm.displayName$) ?? nameTag,
                local,
                type: vm.type ?? "",
                encryption: typeof status === "number" ? (encryptionNames[status] ?? String(status)) : "",
                unencryptedWarning: val(vm.unencryptedWarning$) === true || !!el.querySelector('[aria-label="Not encrypted"]'),
                waitingForMedia: waiting,
                audioEnabled: val(vm.audioEnabled$) === true,
                videoEnabled: val(vm.videoEnabled$) === true,
                speaking: val(vm.speaking$) === true,
                found: true,
            });
        }
        return [...out.values()];
    }

    const num = (v) => (typeof v === "number" ? v : 0);

    // stats summarises getStats() of every live peer connection: inbound
    // and outbound RTP streams, with the LiveKit identity of inbound tracks
    // Element Call renders.
    async function stats() {
        const ids = trackIdentities();
        const out = { peerConnections: [], inbound: [], outbound: [], t: now() };
        for (const [i, e] of pcs.entries()) {
            const pc = e.pc;
            out.peerConnections.push({
                index: i,
                connectionState: pc.connectionState,
                iceConnectionState: pc.iceConnectionState,
                signalingState: pc.signalingState,
            });
            if (pc.connectionState === "closed") continue;
            let report;
            try {
                report = await pc.getStats();
            } catch {
                continue;
            }
            const byId = new Map();
            report.forEach((s) => byId.set(s.id, s));
            report.forEach((s) => {
                const codec = byId.get(s.codecId)?.mimeType ?? "";
                if (s.type === "inbound-rtp") {
                    out.inbound.push({
                        pc: i,
                        kind: s.kind,
                        ssrc: s.ssrc,
                        trackId: s.trackIdentifier ?? "",
                        identity: ids.get(s.trackIdentifier) ?? "",
                        codec,
                        packetsReceived: num(s.packetsReceived),
                        packetsLost: num(s.packetsLost),
                        bytesReceived: num(s.bytesReceived),
                        jitter: num(s.jitter),
                        totalAudioEnergy: num(s.totalAudioEnergy),
                        audioLevel: num(s.audioLevel),
                        concealedSamples: num(s.concealedSamples),
                        totalSamplesReceived: num(s.totalSamplesReceived),
                        framesDecoded: num(s.framesDecoded),
                        frameWidth: num(s.frameWidth),
                        frameHeight: num(s.frameHeight),
                    });
                } else if (s.type === "outbound-rtp") {
                    out.outbound.push({
                        pc: i,
                        kind: s.kind,
                        ssrc: s.ssrc,
                        codec,
                        packetsSent: num(s.packetsSent),
                        bytesSent: num(s.bytesSent),
                        framesEncoded: num(s.framesEncoded),
                    });
                }
            });
        }
        return out;
    }

    // connected: a LiveKit peer connection is up (the publisher or the
    // subscriber), i.e. the page reached the SFU.
    const connected = () => livePCs().some((e) => e.pc.connectionState === "connected");
    // idle: no peer connection is connecting or connected (after leaving;
    // one never used stays "new").
    const idle = () => !pcs.some((e) => ["connecting", "connected"].includes(e.pc.connectionState));
    const pcStates = () => pcs.map((e) => e.pc.connectionState);

    window.__ecTestbed = { remoteTones, participants, stats, connected, idle, pcStates };
}
