// The node side of the QuickBlox test bed, started by internal/testbed/qbclient:
// one Chromium (playwright-core) with one page, one QuickBlox SDK user (the
// fake microphone file is per browser process, so each tone needs its own
// browser). It serves page/ and the unpacked SDK (vendor/) on
// http://127.0.0.1:<port> (a secure context for getUserMedia and WebRTC) and
// speaks JSON lines:
//
//   stdin   {"id":1,"cmd":"open","args":{...}}
//   stdout  {"id":1,"ok":true,"result":...} or {"id":1,"ok":false,"error":"..."}
//   stdout  {"event":"session.accept","session":"...","t":...}
//   stdout  {"event":"console","type":"log","text":"...","t":...}
//
// The first line is {"event":"ready",...}. Commands run concurrently;
// replies carry the command's id. The page's events (SDK listeners, every
// stanza in and out) and its console messages are events. Closing stdin,
// SIGTERM or {"cmd":"shutdown"} closes the browser and exits.
import { chromium } from "playwright-core";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const roots = { "/vendor/": path.join(here, "vendor"), "/": path.join(here, "page") };
const executablePath = process.env.QBCLIENT_CHROMIUM || "/usr/bin/chromium";
const extraArgs = (process.env.QBCLIENT_CHROMIUM_ARGS || "").split(" ").filter(Boolean);

function send(msg) {
    process.stdout.write(JSON.stringify(msg) + "\n");
}

function log(...parts) {
    process.stderr.write(`qbclient driver: ${parts.join(" ")}\n`);
}

// A static file server for page/ and vendor/ on loopback.
const types = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
};
const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const pathname = decodeURIComponent(url.pathname);
    try {
        const prefix = Object.keys(roots).find((p) => pathname.startsWith(p));
        const root = roots[prefix];
        const file = path.join(root, path.normalize(pathname.slice(prefix.length)).replace(/^(\.\.[/\\])+/, ""));
        if (!file.startsWith(root + path.sep)) throw new Error("outside the served folders");
        const st = await stat(file);
        if (!st.isFile()) throw new Error("not a file");
        res.writeHead(200, {
            "Content-Type": types[path.extname(file)] ?? "application/octet-stream",
            "Content-Length": st.size,
            "Cache-Control": "no-store",
        });
        createReadStream(file).pipe(res);
    } catch {
        res.writeHead(404).end();
    }
});
await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
});
const pageURL = `http://127.0.0.1:${server.address().port}/index.html`;

const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Playwright mutes audio in headless mode; remote audio must play for
    // Chromium to decode it into the page's analyser.
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

// open makes the page's context and loads the harness page.
async function open(args) {
    if (page) throw new Error("the page is open already");
    context = await browser.newContext({ permissions: ["microphone", "camera"] });
    page = await context.newPage();
    page.on("console", (msg) => send({ event: "console", type: msg.type(), text: msg.text(), t: Date.now() }));
    page.on("pageerror", (err) => send({ event: "console", type: "pageerror", text: err.stack || String(err), t: Date.now() }));
    page.on("crash", () => send({ event: "page.crashed", t: Date.now() }));
    await page.exposeFunction("__harnessEmit", (ev) => send(ev));
    await page.goto(pageURL, { waitUntil: "load", timeout: args.timeoutMs });
    await page.waitForFunction(() => window.harnessReady === true, null, { timeout: args.timeoutMs });
    return { url: pageURL, userAgent: await page.evaluate(() => navigator.userAgent) };
}

// invoke calls window.harness[fn](...args) in the page.
async function invoke(args) {
    if (!page) throw new Error("no page: open first");
    return page.evaluate(([fn, fnArgs]) => window.harness[fn](...fnArgs), [args.fn, args.args ?? []]);
}

let shuttingDown = null;
function shutdown(code) {
    shuttingDown ??= (async () => {
        await Promise.race([
            (async () => {
                // Log out first, so that the XMPP server sees the stream
                // closed rather than a dropped connection.
                if (page) await page.evaluate(() => window.harness?.logout()).catch(() => {});
                if (context) await context.close();
                await browser.close();
            })().catch((err) => log("closing the browser:", err.message)),
            new Promise((resolve) => setTimeout(resolve, 10000)),
        ]);
        server.close();
        process.exit(code);
    })();
    return shuttingDown;
}

const commands = {
    open,
    invoke,
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

send({ event: "ready", t: Date.now(), pid: process.pid, browserVersion: browser.version(), url: pageURL });
