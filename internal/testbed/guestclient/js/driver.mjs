// The node side of internal/testbed/guestclient: one Chromium
// (playwright-core) with one page, one browser guest (the fake microphone
// file is per browser process, so each guest with a tone of its own needs
// a browser of its own). It loads the call page from wherever the test
// serves it (web/guestpage behind a test bot) and speaks JSON lines:
//
//   stdin   {"id":1,"cmd":"open","args":{"url":"http://127.0.0.1:…/call/…"}}
//   stdout  {"id":1,"ok":true,"result":...} or {"id":1,"ok":false,"error":"..."}
//   stdout  {"event":"page","doc":"…","state":"ringing",…,"t":...}
//   stdout  {"event":"console","type":"error","text":"...","t":...}
//
// The first line is {"event":"ready",...}. Commands run concurrently;
// replies carry the command's id. The page is watched, not changed: an init
// script observes the attributes and texts the page shows its state by
// (data-state and the rest, see snapshot below) and reports every change
// as a "page" event. Closing stdin, SIGTERM or {"cmd":"shutdown"} closes
// the browser and exits.
import { chromium } from "playwright-core";
import readline from "node:readline";

const executablePath = process.env.GUESTCLIENT_CHROMIUM || "/usr/bin/chromium";
const extraArgs = (process.env.GUESTCLIENT_CHROMIUM_ARGS || "").split(" ").filter(Boolean);
const rawAudio = process.env.GUESTCLIENT_RAW_AUDIO === "1";
const [vw, vh] = (process.env.GUESTCLIENT_VIEWPORT || "480x900").split("x").map(Number);

function send(msg) {
    process.stdout.write(JSON.stringify(msg) + "\n");
}

function log(...parts) {
    process.stderr.write(`guestclient driver: ${parts.join(" ")}\n`);
}

// watch runs in the page before its own scripts, at every load. It reports
// the page's state as the page shows it: the body's data attributes, the
// texts of the status line, the end and the peer, and the quality readout's
// values. A MutationObserver on the whole document catches each change the
// moment the page makes it (the observer runs in the same task), so the
// time stamps are the page's. With rawAudio it also turns the browser's
// voice processing off in the page's getUserMedia: echo cancellation and
// noise suppression would take a steady test tone for noise.
function watch({ rawAudio }) {
    const doc = Math.random().toString(36).slice(2);
    const text = (id) => document.getElementById(id)?.textContent ?? "";
    const value = (id) => document.getElementById(id)?.dataset.value ?? "";
    const snapshot = () => {
        const b = document.body;
        if (!b) return null;
        return {
            doc,
            title: document.title,
            state: b.dataset.state ?? "",
            status: text("status"),
            endReason: b.dataset.endReason ?? "",
            endText: text("end-reason"),
            endDetail: text("end-detail"),
            peer: text("peer-name"),
            video: b.dataset.video === "true",
            audioMuted: b.dataset.audioMuted === "true",
            videoMuted: b.dataset.videoMuted === "true",
            remoteAudioMuted: b.dataset.remoteAudioMuted === "true",
            remoteVideoMuted: b.dataset.remoteVideoMuted === "true",
            remoteVideo: b.dataset.remoteVideo === "true",
            quality: { rtt: value("q-rtt"), loss: value("q-loss"), in: value("q-in"), out: value("q-out") },
        };
    };
    Object.defineProperty(window, "__guestclientSnapshot", { value: snapshot });
    let last = "";
    const emit = () => {
        const s = snapshot();
        if (!s) return;
        const key = JSON.stringify(s);
        if (key === last) return;
        last = key;
        window.__guestclientEmit?.({ event: "page", t: performance.timeOrigin + performance.now(), ...s });
    };
    new MutationObserver(emit).observe(document, {
        subtree: true,
        childList: true,
        characterData: true,
        attributes: true,
        attributeFilter: ["data-state", "data-video", "data-end-reason", "data-audio-muted", "data-video-muted", "data-remote-audio-muted", "data-remote-video-muted", "data-remote-video", "data-value"],
    });
    document.addEventListener("DOMContentLoaded", emit);

    if (rawAudio && navigator.mediaDevices?.getUserMedia) {
        const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = (c) => {
            if (c?.audio) {
                const audio = c.audio === true ? {} : c.audio;
                c = { ...c, audio: { ...audio, echoCancellation: false, noiseSuppression: false, autoGainControl: false } };
            }
            return getUserMedia(c);
        };
    }
}

// spectrum reads the spectrum of the remote audio the page plays (its
// <audio id="remote-audio">'s stream) with an analyser of the harness's own
// (an FFT of 16384 samples, no smoothing: jsclient.Spectrum's), from 0 Hz
// to just above maxHz. JSON has no -Infinity: levels are clamped to -200.
async function spectrum({ maxHz }) {
    const el = document.getElementById("remote-audio");
    const track = el?.srcObject?.getAudioTracks?.()[0];
    const now = performance.timeOrigin + performance.now();
    const a = (window.__guestclientAnalyser ??= {});
    const playing = !!el && !el.paused && !el.muted && el.volume > 0;
    if (!track) return { track: false, binHz: 0, db: [], state: a.ctx?.state ?? "", playing, t: now };
    a.ctx ??= new AudioContext();
    if (a.ctx.state === "suspended") await a.ctx.resume();
    if (a.trackId !== track.id) {
        a.source?.disconnect();
        a.source = a.ctx.createMediaStreamSource(new MediaStream([track]));
        a.analyser = a.ctx.createAnalyser();
        a.analyser.fftSize = 16384;
        a.analyser.smoothingTimeConstant = 0;
        a.analyser.minDecibels = -200;
        a.analyser.maxDecibels = 0;
        a.source.connect(a.analyser);
        a.bins = new Float32Array(a.analyser.frequencyBinCount);
        a.trackId = track.id;
    }
    a.analyser.getFloatFrequencyData(a.bins);
    const binHz = a.ctx.sampleRate / a.analyser.fftSize;
    const n = Math.min(a.bins.length, Math.floor(maxHz / binHz) + 2);
    const db = Array.from(a.bins.subarray(0, n), (v) => (v > -200 ? Math.round(v * 100) / 100 : -200));
    return { track: true, trackId: track.id, binHz, db, state: a.ctx.state, playing, t: now };
}

const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Playwright mutes audio in headless mode; remote audio must play for
    // Chromium to decode it into the analyser.
    ignoreDefaultArgs: ["--mute-audio"],
    args: [
        "--disable-gpu",
        "--no-first-run",
        // Nothing of the browser's own reaches beyond loopback.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        ...extraArgs,
    ],
    // Closing is ours to do (stdin, SIGTERM, shutdown): see below.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
});

const context = await browser.newContext({ permissions: ["microphone", "camera"], viewport: { width: vw, height: vh } });
const page = await context.newPage();
page.on("console", (msg) => send({ event: "console", type: msg.type(), text: msg.text(), t: Date.now() }));
page.on("pageerror", (err) => send({ event: "console", type: "pageerror", text: err.stack || String(err), t: Date.now() }));
page.on("crash", () => send({ event: "page.crashed", t: Date.now() }));
await page.exposeFunction("__guestclientEmit", (ev) => send(ev));
await page.addInitScript(watch, { rawAudio });

const commands = {
    // open loads url and returns the response's status and the title.
    async open({ url, timeoutMs }) {
        const res = await page.goto(url, { waitUntil: "load", timeout: timeoutMs });
        return { status: res?.status() ?? 0, title: await page.title(), url: page.url() };
    },
    async click({ selector, timeoutMs }) {
        await page.click(selector, { timeout: timeoutMs });
        return null;
    },
    async fill({ selector, value, timeoutMs }) {
        await page.fill(selector, value, { timeout: timeoutMs });
        return null;
    },
    async select({ selector, value, timeoutMs }) {
        await page.selectOption(selector, value, { timeout: timeoutMs });
        return null;
    },
    // options lists a select's options.
    async options({ selector }) {
        return page.$$eval(`${selector} option`, (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
    },
    async snapshot() {
        return page.evaluate(() => window.__guestclientSnapshot?.() ?? null);
    },
    spectrum: (args) => page.evaluate(spectrum, args),
    // waitVideo waits until a video element of the page shows frames.
    async waitVideo({ selector, timeoutMs }) {
        const handle = await page.waitForFunction(
            (sel) => {
                const v = document.querySelector(sel);
                return v && v.videoWidth > 0 && !v.paused && v.readyState >= 2 && { width: v.videoWidth, height: v.videoHeight };
            },
            selector,
            { timeout: timeoutMs },
        );
        return handle.jsonValue();
    },
    async screenshot({ path, fullPage }) {
        await page.screenshot({ path, fullPage: !!fullPage, animations: "disabled", caret: "hide" });
        return null;
    },
    ping: async () => ({ t: Date.now() }),
    shutdown: async () => {
        setImmediate(() => shutdown(0));
        return null;
    },
};

let shuttingDown = null;
function shutdown(code) {
    shuttingDown ??= (async () => {
        await Promise.race([
            (async () => {
                // Closing the page runs its pagehide: it hangs up.
                await context.close();
                await browser.close();
            })().catch((err) => log("closing the browser:", err.message)),
            new Promise((resolve) => setTimeout(resolve, 10000)),
        ]);
        process.exit(code);
    })();
    return shuttingDown;
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(130));
browser.on("disconnected", () => {
    if (!shuttingDown) {
        log("the browser disconnected");
        send({ event: "browser.disconnected", t: Date.now() });
        shutdown(1);
    }
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
    if (!line.trim()) return;
    let msg;
    try {
        msg = JSON.parse(line);
    } catch (err) {
        log("bad command line:", err.message);
        return;
    }
    const fn = commands[msg.cmd];
    if (!fn) {
        send({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
        return;
    }
    fn(msg.args ?? {}).then(
        (result) => send({ id: msg.id, ok: true, result: result ?? null }),
        (err) => send({ id: msg.id, ok: false, error: err?.message ?? String(err) }),
    );
});
rl.on("close", () => shutdown(0));

send({ event: "ready", t: Date.now(), pid: process.pid, browserVersion: browser.version() });
