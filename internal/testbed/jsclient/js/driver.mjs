// The node side of the test harness, started by internal/testbed/jsclient: it serves
// dist/ on http://127.0.0.1:<port> (a secure context for getUserMedia and
// WebRTC), launches Chromium through playwright-core with fake media
// devices, and speaks JSON lines:
//
//   stdin   {"id":1,"cmd":"newClient","args":{...}}
//   stdout  {"id":1,"ok":true,"result":...} or {"id":1,"ok":false,"error":"..."}
//   stdout  {"event":"call.state","client":"c1","call":"...","state":"connected","t":...}
//
// The first line is {"event":"ready",...}. Commands run concurrently; replies
// carry the command's id. Closing stdin, SIGTERM or {"cmd":"shutdown"} closes
// the browser and exits. Browser console errors (and with JSCLIENT_VERBOSE=1
// everything the pages log) go to stderr.
import { chromium } from "playwright-core";
import { createReadStream, readdirSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
const verbose = process.env.JSCLIENT_VERBOSE === "1";
const executablePath = process.env.JSCLIENT_CHROMIUM || "/usr/bin/chromium";

function send(msg) {
    process.stdout.write(JSON.stringify(msg) + "\n");
}

function log(...parts) {
    process.stderr.write(`jsclient: ${parts.join(" ")}\n`);
}

// A static file server for dist/ on loopback.
const types = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json",
    ".wasm": "application/wasm",
};
const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const file = path.join(dist, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ""));
    try {
        if (!file.startsWith(dist + path.sep)) throw new Error("outside dist");
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

// Child processes of this process, from /proc (the browser's main process).
function childPids() {
    const pids = [];
    for (const name of readdirSync("/proc")) {
        if (!/^\d+$/.test(name)) continue;
        try {
            const st = readFileSync(`/proc/${name}/stat`, "utf8");
            const ppid = Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]);
            if (ppid === process.pid) pids.push(Number(name));
        } catch {
            // gone meanwhile
        }
    }
    return pids;
}

const extraArgs = (process.env.JSCLIENT_CHROMIUM_ARGS || "").split(" ").filter(Boolean);
const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Playwright mutes audio in headless mode; remote audio must play out
    // for Chromium to decode it and measure its level.
    ignoreDefaultArgs: ["--mute-audio"],
    args: [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-dev-shm-usage",
        ...extraArgs,
    ],
    // Closing is ours to do (stdin, SIGTERM, shutdown): see below.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
});

const clients = new Map(); // id -> {context, page}
let clientSeq = 0;

async function newClient(args) {
    const id = `c${++clientSeq}`;
    const context = await browser.newContext({ permissions: ["microphone", "camera"] });
    const entry = { id, context, page: null };
    clients.set(id, entry);
    try {
        const page = await context.newPage();
        entry.page = page;
        page.on("console", (msg) => {
            const type = msg.type();
            const text = msg.text();
            // Chromium's own line for every HTTP error status is noise: js-sdk
            // logs the requests that matter itself.
            if (verbose || (type === "error" && !text.startsWith("Failed to load resource"))) {
                log(`[${id} console.${type}]`, text);
            }
        });
        page.on("pageerror", (err) => log(`[${id} pageerror]`, err.stack || String(err)));
        page.on("crash", () => {
            log(`[${id}] page crashed`);
            send({ event: "client.crashed", client: id, t: Date.now() });
        });
        await page.exposeFunction("__harnessEmit", (ev) => send({ ...ev, client: id }));
        await page.goto(pageURL, { waitUntil: "load" });
        await page.waitForFunction(() => window.harnessReady === true, null, { timeout: 30000 });
        const info = await page.evaluate((opts) => window.harness.start(opts), args);
        return { client: id, ...info };
    } catch (err) {
        clients.delete(id);
        await context.close().catch(() => {});
        throw err;
    }
}

async function closeClient(args) {
    const entry = clients.get(args.client);
    if (!entry) return null;
    clients.delete(args.client);
    if (entry.page) {
        await Promise.race([
            entry.page.evaluate(() => window.harness?.stop()).catch(() => {}),
            new Promise((resolve) => setTimeout(resolve, 5000)),
        ]);
    }
    await entry.context.close().catch(() => {});
    return null;
}

async function invoke(args) {
    const entry = clients.get(args.client);
    if (!entry) throw new Error(`no client ${args.client}`);
    return entry.page.evaluate(([fn, fnArgs]) => window.harness[fn](...fnArgs), [args.fn, args.args ?? []]);
}

let shuttingDown = null;
function shutdown(code) {
    shuttingDown ??= (async () => {
        await Promise.race([
            (async () => {
                for (const id of [...clients.keys()]) await closeClient({ client: id });
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
    newClient,
    closeClient,
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

send({
    event: "ready",
    t: Date.now(),
    pid: process.pid,
    browserPids: childPids(),
    browserVersion: browser.version(),
    url: pageURL,
});
