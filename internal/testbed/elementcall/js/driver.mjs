// The node side of the Element Call test bed, started by
// internal/testbed/elementcall: one Chromium (playwright-core) with one page,
// one Element Call user. It speaks JSON lines:
//
//   stdin   {"id":1,"cmd":"open","args":{...}}
//   stdout  {"id":1,"ok":true,"result":...} or {"id":1,"ok":false,"error":"..."}
//   stdout  {"event":"console","type":"log","text":"...","t":...}
//
// The first line is {"event":"ready",...}. Commands run concurrently; replies
// carry the command's id. Every console message and page error of the page
// is an event (the Go side writes them to the console log). Closing stdin,
// SIGTERM or {"cmd":"shutdown"} closes the browser and exits.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const executablePath = process.env.ELEMENTCALL_CHROMIUM || "/usr/bin/chromium";
const extraArgs = (process.env.ELEMENTCALL_CHROMIUM_ARGS || "").split(" ").filter(Boolean);
// page.js is one function expression, called with its config in every document.
const pageScript = readFileSync(path.join(here, "page.js"), "utf8");

function send(msg) {
    process.stdout.write(JSON.stringify(msg) + "\n");
}

function log(...parts) {
    process.stderr.write(`elementcall driver: ${parts.join(" ")}\n`);
}

const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Playwright mutes audio in headless mode; remote audio must play out
    // for Chromium to decode it into the page's analysers.
    ignoreDefaultArgs: ["--mute-audio"],
    args: [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        // Nothing of the browser's own reaches beyond loopback.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        ...extraArgs,
    ],
    // Closing is ours to do (stdin, SIGTERM, shutdown): see below.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
});

let context = null;
let page = null;

// open makes the page's context (one user per browser: its localStorage
// and IndexedDB hold that user's device) and loads url.
async function open(args) {
    if (!context) {
        context = await browser.newContext({
            permissions: ["microphone", "camera"],
            locale: "en-US",
            viewport: { width: 1280, height: 720 },
        });
        await context.addInitScript({ content: `(${pageScript})(${JSON.stringify(args.init)});` });
        page = await context.newPage();
        page.on("console", (msg) => send({ event: "console", type: msg.type(), text: msg.text(), t: Date.now() }));
        page.on("pageerror", (err) => send({ event: "console", type: "pageerror", text: err.stack || String(err), t: Date.now() }));
        page.on("crash", () => send({ event: "console", type: "crash", text: "the page crashed", t: Date.now() }));
        // Chromium's console line for a failed request has no URL: these do.
        page.on("requestfailed", (req) =>
            send({ event: "console", type: "requestfailed", text: `${req.method()} ${req.url()}: ${req.failure()?.errorText ?? ""}`, t: Date.now() }),
        );
        page.on("response", (res) => {
            if (res.status() >= 400) send({ event: "console", type: "http", text: `${res.status()} ${res.request().method()} ${res.url()}`, t: Date.now() });
        });
    }
    await page.goto(args.url, { waitUntil: "domcontentloaded", timeout: args.timeoutMs });
    return { url: page.url() };
}

function needPage() {
    if (!page) throw new Error("no page: open first");
    return page;
}

// setSwitch sets one of Element Call's on/off buttons (role switch,
// aria-checked) by its test id, and waits until it shows the state asked
// for and is not busy.
async function setSwitch(p, testId, on, timeout) {
    const sw = p.getByTestId(testId).first();
    await sw.waitFor({ state: "visible", timeout });
    if ((await sw.getAttribute("aria-checked")) !== String(on)) await sw.click({ timeout });
    await p.waitForFunction(
        ([id, want]) => {
            const el = document.querySelector(`[data-testid="${id}"]`);
            return el && el.getAttribute("aria-checked") === want && el.getAttribute("aria-busy") !== "true";
        },
        [testId, String(on)],
        { timeout, polling: 100 },
    );
}

// join waits for the lobby, sets the camera and microphone, clicks "Join
// call" and waits until the call view is up with a peer connection to the
// SFU.
async function join(args) {
    const p = needPage();
    const deadline = Date.now() + args.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const marks = {};
    const button = p.getByTestId("lobby_joinCall");
    await button.waitFor({ state: "visible", timeout: left() });
    marks.lobby = Date.now();
    await setSwitch(p, "incall_videomute", !!args.video, left());
    await setSwitch(p, "incall_mute", !args.muted, left());
    await p.waitForFunction(() => !document.querySelector('[data-testid="lobby_joinCall"]')?.disabled, null, { timeout: left(), polling: 100 });
    await button.click({ timeout: left() });
    marks.clicked = Date.now();
    await p.getByTestId("incall_leave").waitFor({ state: "visible", timeout: left() });
    marks.inCall = Date.now();
    await p.waitForFunction(() => window.__ecTestbed?.connected(), null, { timeout: left(), polling: 100 });
    marks.connected = Date.now();
    return marks;
}

// leave clicks "End call" and waits until the call view is gone and every
// peer connection closed.
async function leave(args) {
    const p = needPage();
    const deadline = Date.now() + args.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const button = p.getByTestId("incall_leave");
    await button.click({ timeout: left() });
    await button.waitFor({ state: "detached", timeout: left() });
    try {
        await p.waitForFunction(() => window.__ecTestbed?.idle(), null, { timeout: left(), polling: 100 });
    } catch (err) {
        const states = await p.evaluate(() => window.__ecTestbed?.pcStates()).catch(() => null);
        throw new Error(`${err.message} (peer connections: ${JSON.stringify(states)}, at ${p.url()})`);
    }
    return null;
}

async function setMedia(args) {
    const p = needPage();
    await setSwitch(p, args.testId, args.on, args.timeoutMs);
    return null;
}

// invoke calls a function of window.__ecTestbed (page.js).
async function invoke(args) {
    return needPage().evaluate(([fn, fnArgs]) => window.__ecTestbed[fn](...fnArgs), [args.fn, args.args ?? []]);
}

// evaluate runs a function body of the test's in the page.
async function evaluate(args) {
    return needPage().evaluate(([body, arg]) => new Function("arg", body)(arg), [args.body, args.arg ?? null]);
}

async function screenshot(args) {
    await needPage().screenshot({ path: args.path, fullPage: true, timeout: args.timeoutMs });
    return null;
}

let shuttingDown = null;
function shutdown(code) {
    shuttingDown ??= (async () => {
        await Promise.race([
            (async () => {
                if (context) await context.close();
                await browser.close();
            })().catch((err) => log("closing the browser:", err.message)),
            new Promise((resolve) => setTimeout(resolve, 10000)),
        ]);
        process.exit(code);
    })();
    return shuttingDown;
}

const commands = {
    open,
    join,
    leave,
    setMedia,
    invoke,
    evaluate,
    screenshot,
    ping: async () => ({ t: Date.now() }),
    shutdown: async () => {
        setImmediate(() => shutdown(0));
        return null;
    },
};

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
