// Bundles src/harness.js (with matrix-js-sdk) for the browser into dist/,
// next to the page that loads it and the Rust crypto WebAssembly module.
// Run by internal/testbed/jsclient before each launch; `npm run build` by hand.
import * as esbuild from "esbuild";
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, process.argv[2] ?? "dist");
const tmp = `${out}.${process.pid}.tmp`;
const sdkPkg = JSON.parse(await readFile(path.join(here, "node_modules/matrix-js-sdk/package.json"), "utf8"));
// The crypto package's browser entry point fetches the module from
// new URL("./pkg/matrix_sdk_crypto_wasm_bg.wasm", import.meta.url): keep the
// bundle an ES module and put the .wasm where that URL points.
// (Resolved from matrix-js-sdk, which depends on it: the entry point resolved
// for require lies in the package's root directory.)
const sdkRequire = createRequire(path.join(here, "node_modules/matrix-js-sdk/package.json"));
const wasmPkg = path.dirname(sdkRequire.resolve("@matrix-org/matrix-sdk-crypto-wasm"));

await rm(tmp, { recursive: true, force: true });
await mkdir(path.join(tmp, "pkg"), { recursive: true });
await esbuild.build({
    entryPoints: [path.join(here, "src/harness.js")],
    outfile: path.join(tmp, "harness.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    sourcemap: "linked",
    logLevel: "warning",
    define: {
        "process.env.NODE_ENV": '"production"',
        __SDK_VERSION__: JSON.stringify(sdkPkg.version),
    },
});
await copyFile(path.join(wasmPkg, "pkg/matrix_sdk_crypto_wasm_bg.wasm"), path.join(tmp, "pkg/matrix_sdk_crypto_wasm_bg.wasm"));
await copyFile(path.join(here, "src/index.html"), path.join(tmp, "index.html"));
await rm(out, { recursive: true, force: true });
await rename(tmp, out);
await writeFile(path.join(out, "VERSION"), `matrix-js-sdk ${sdkPkg.version}\n`);
