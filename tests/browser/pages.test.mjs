// authd's hosted pages in a real browser: Debian's chromium driven by playwright-core, against
// the real daemon binary (target/debug/authd) on a free port with a temporary config, and a
// real webhook receiver (this file's HTTP server, which checks the Standard Webhooks signature
// of every delivery) that catches the reset, magic and confirmation links.
//
// Run: `npm ci && npm test` in tests/browser after `cargo build` (AUTHD_BIN overrides the
// binary, CHROMIUM the browser). Screenshots go to tests/browser/artifacts/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const artifacts = join(here, "artifacts");
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.AUTHD_BIN ?? join(repo, "target", "debug", "authd");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// ---------------------------------------------------------------- helpers

/** A free TCP port on 127.0.0.1. */
async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** RFC 4648 base32 decoding (TOTP secrets). */
function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/=+$/, "").toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) at time-step `counter`: written from the RFC,
 * independent of the Rust code. */
function totp(secretBase32, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", base32Decode(secretBase32)).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary =
    ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(binary % 1_000_000).padStart(6, "0");
}

/** The webhook receiver: verifies each delivery's Standard Webhooks signature, queues the
 * messages, and serves a landing page for allowed redirects. */
function startReceiver(port, secretBytes) {
  const messages = [];
  const waiters = [];
  const server = createServer((req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><html lang=en><title>App</title><h1>The app</h1></html>");
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const id = req.headers["webhook-id"];
      const ts = req.headers["webhook-timestamp"];
      const expected = createHmac("sha256", secretBytes).update(`${id}.${ts}.${body}`).digest();
      const good = String(req.headers["webhook-signature"] ?? "")
        .split(" ")
        .some((sig) => {
          const [v, b64] = sig.split(",");
          const given = Buffer.from(b64 ?? "", "base64");
          return v === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
        });
      if (!good) {
        res.writeHead(401).end("bad signature");
        return;
      }
      messages.push(JSON.parse(body));
      res.writeHead(204).end();
      for (const w of waiters.splice(0)) w();
    });
  });
  server.listen(port, "127.0.0.1");
  return {
    server,
    /** The next message of `kind`, waiting up to 10 s. */
    async next(kind) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const i = messages.findIndex((m) => m.kind === kind);
        if (i >= 0) return messages.splice(i, 1)[0];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${kind} message within 10 s`);
        await new Promise((ok) => {
          waiters.push(ok);
          setTimeout(ok, Math.min(left, 250));
        });
      }
    },
  };
}

// ---------------------------------------------------------------- set-up

let daemon;
let daemonLog = "";
let receiver;
let browser;
let base;
let hookBase;
let dir;
const cspViolations = [];

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "authd-browser-"));
  const port = await freePort();
  const hookPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  hookBase = `http://127.0.0.1:${hookPort}`;
  const secret = randomBytes(24);
  writeFileSync(join(dir, "whsec"), `whsec_${secret.toString("base64")}\n`);
  receiver = startReceiver(hookPort, secret);
  const sender = (path) =>
    `{ type = "webhook", url = "${hookBase}/${path}", secret_file = "${join(dir, "whsec")}", retry_base = "50ms" }`;
  const config = `version = 1
[server]
listen = "127.0.0.1:${port}"
[store]
path = "${join(dir, "authd.redb")}"
[pages]
base_path = "/ui"
title = "Example"
public_url = "${base}"
allowed_redirects = ["${hookBase}/app/"]
cookie = { name = "authd_session", secure = false, same_site = "lax" }
[resources.user]
attributes.email = { type = "ci_string", unique = true, max_length = 200 }
[resources.user.confirmation]
monitor_fields = ["email"]
sender = ${sender("confirm")}
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "argon2id", memory_kib = 1024, iterations = 1, parallelism = 1 }
[resources.user.strategies.password.resettable]
sender = ${sender("reset")}
[resources.user.strategies.magic]
type = "magic_link"
identity_field = "email"
sender = ${sender("magic")}
[resources.user.strategies.totp]
type = "totp"
issuer = "Example"
required_after = ["password"]
brute_force = { max_failures = 5, window = "5m" }
[resources.user.strategies.keys]
type = "api_key"
`;
  const configPath = join(dir, "authd.toml");
  writeFileSync(configPath, config);
  daemon = spawn(BIN, ["serve", "--config", configPath], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  daemon.stdout.on("data", (d) => (daemonLog += d));
  daemon.stderr.on("data", (d) => (daemonLog += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline || daemon.exitCode !== null) {
      throw new Error(`the daemon did not start:\n${daemonLog}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  daemon?.kill("SIGTERM");
  receiver?.server.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(`${page.url()}: ${m.text()}`);
  });
  return page;
}

/** axe-core in the page (evaluated through the DevTools protocol, so the page's CSP, which
 * allows no script, stays as it is): no serious or critical violation; then a screenshot. */
async function check(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`),
    [],
    `axe on ${name}`,
  );
  // The stylesheet loaded (CSP style-src 'self').
  const styled = await page.evaluate(() => document.styleSheets.length > 0 && document.styleSheets[0].cssRules.length > 0);
  assert.ok(styled, `${name}: the stylesheet did not load`);
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

const PASSWORD = "correct horse battery";
const NEW_PASSWORD = "another correct horse";
const EMAIL = "ada@example.com";
let confirmation; // the confirmation message of the registration

async function signInWithPassword(page, password, { returnTo } = {}) {
  const q = returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : "";
  await page.goto(`${base}/ui/user/password/sign_in${q}`);
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: "Sign in" }).click()]);
}

// ---------------------------------------------------------------- the flows

test("register, sign out, sign in, reset by the emailed link, sign in with the new password", async () => {
  const page = await newPage();
  await page.goto(`${base}/ui/user/password/register`);
  await check(page, "register");
  // A refused form first: the JSON API's messages next to their fields.
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password", { exact: true }).fill("short");
  await page.getByLabel("Password confirmation").fill("other");
  await page.getByRole("button", { name: "Create the account" }).click();
  await page.waitForLoadState("load");
  const alert = page.getByRole("alert");
  await assert.doesNotReject(alert.waitFor());
  assert.match(await alert.innerText(), /is too short/);
  await check(page, "register-errors");

  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Password confirmation").fill(PASSWORD);
  await page.getByRole("button", { name: "Create the account" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  assert.match(await page.locator("dl.user").innerText(), /ada@example\.com/);
  await check(page, "account");
  confirmation = await receiver.next("confirmation");

  // The session cookie works on the JSON API's /me too (the browser context's cookies; a
  // script in the page could not call it: the pages' CSP allows no connections).
  const me = await (await page.request.get(`${base}/auth/user/me`)).json();
  assert.equal(me.user.email, EMAIL);

  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(`${base}/ui/user/password/sign_in`);
  await check(page, "sign-in");

  await signInWithPassword(page, PASSWORD);
  await page.waitForURL(`${base}/ui/user/account`);
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(`${base}/ui/user/password/sign_in`);

  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await check(page, "reset-request");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByRole("button", { name: "Send the link" }).click();
  await page.getByRole("heading", { name: "Check your inbox" }).waitFor();
  await check(page, "check-inbox");

  const reset = await receiver.next("password_reset");
  assert.ok(reset.data.url.startsWith(`${base}/ui/user/password/reset?token=`), reset.data.url);
  await page.goto(reset.data.url);
  await check(page, "reset");
  await page.getByLabel("Password", { exact: true }).fill(NEW_PASSWORD);
  await page.getByLabel("Password confirmation").fill(NEW_PASSWORD);
  await page.getByRole("button", { name: "Set the password" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  await page.getByRole("button", { name: "Sign out", exact: true }).click();

  await signInWithPassword(page, PASSWORD);
  assert.match(await page.getByRole("alert").innerText(), /Authentication failed/);
  await signInWithPassword(page, NEW_PASSWORD);
  await page.waitForURL(`${base}/ui/user/account`);
  await page.context().close();
});

test("a confirmation link lands on a button that confirms", async () => {
  // The registration's link died with the reset (a reset ends every token of the user): a
  // new user's link is used here.
  assert.ok(confirmation.data.url.startsWith(`${base}/ui/user/confirm?confirm=`), confirmation.data.url);
  const page = await newPage();
  const email = "linus@example.com";
  await page.goto(`${base}/ui/user/password/register`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Password confirmation").fill(PASSWORD);
  await page.getByRole("button", { name: "Create the account" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  const message = await receiver.next("confirmation");
  assert.equal(message.user.email, email);
  await page.goto(message.data.url);
  await check(page, "confirm");
  // Opening the link confirmed nothing yet.
  const confirmedAt = async () =>
    (await (await page.request.get(`${base}/auth/user/me`)).json()).user.confirmed_at;
  assert.equal(await confirmedAt(), null);
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("heading", { name: "Your address is confirmed" }).waitFor();
  await check(page, "confirmed");
  assert.match(await confirmedAt(), /^\d{4}-\d\d-\d\dT/);
  await page.context().close();
});

test("a magic link lands on a button that signs in", async () => {
  const page = await newPage();
  await page.goto(`${base}/ui/user/magic/request`);
  await check(page, "magic-request");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByRole("button", { name: "Send me a link" }).click();
  await page.getByRole("heading", { name: "Check your inbox" }).waitFor();
  const magic = await receiver.next("magic_link");
  assert.ok(magic.data.url.startsWith(`${base}/ui/user/magic/sign_in?token=`), magic.data.url);
  await page.goto(magic.data.url);
  await check(page, "magic-landing");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  await page.context().close();
});

test("TOTP: set up with the server's QR code, then the second step with a code computed in JS", async () => {
  const page = await newPage();
  await signInWithPassword(page, NEW_PASSWORD);
  await page.waitForURL(`${base}/ui/user/account`);
  await page.getByRole("button", { name: "Set up two-step verification" }).click();
  await page.getByRole("img", { name: /QR code/ }).waitFor();
  await check(page, "totp-setup");
  const secret = (await page.locator("figcaption code").innerText()).trim();
  const step = Math.floor(Date.now() / 1000 / 30);
  await page.getByLabel("Code", { exact: true }).fill(totp(secret, step));
  await page.getByRole("button", { name: "Turn on" }).click();
  await page.getByRole("heading", { name: "Two-step verification is on" }).waitFor();
  await check(page, "totp-recovery-codes");
  await page.goto(`${base}/ui/user/account`);
  await page.getByRole("button", { name: "Sign out", exact: true }).click();

  // The next sign-in continues at the TOTP step; the code of the next period (within the
  // grace period) is a fresh one, since the setup used this period's.
  await signInWithPassword(page, NEW_PASSWORD);
  await page.getByRole("heading", { name: "Two-step verification" }).waitFor();
  await check(page, "totp-verify");
  await page.getByLabel("Code", { exact: true }).fill("000000");
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByRole("alert").waitFor();
  await page.getByLabel("Code", { exact: true }).fill(totp(secret, step + 1));
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  await check(page, "account-totp-on");

  // An API key from the account page, shown once.
  await page.getByLabel("Name", { exact: true }).fill("laptop");
  await page.getByRole("button", { name: "Create an API key" }).click();
  await page.getByRole("heading", { name: "Your new API key" }).waitFor();
  const key = (await page.locator("code.secret").innerText()).trim();
  const viaKey = await fetch(`${base}/auth/user/me`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(viaKey.status, 200);
  await page.context().close();
});

test("a form posted without its CSRF token is refused", async () => {
  const page = await newPage();
  await page.goto(`${base}/ui/user/password/sign_in`);
  await page.evaluate(() => document.querySelector('input[name="csrf_token"]').remove());
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password", { exact: true }).fill(NEW_PASSWORD);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST"),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
  assert.equal(response.status(), 403);
  await page.getByRole("heading", { name: "This form has expired" }).waitFor();
  const cookies = await page.context().cookies();
  assert.ok(!cookies.some((c) => c.name === "authd_session"), "no session cookie was set");
  await check(page, "csrf-refused");
  await page.context().close();
});

test("return_to: an allowed target is followed, an open redirect is refused", async () => {
  // A fresh user without TOTP, so that the sign-in ends at the redirect.
  const page = await newPage();
  const email = "grace@example.com";
  await page.goto(`${base}/ui/user/password/register`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Password confirmation").fill(PASSWORD);
  await page.getByRole("button", { name: "Create the account" }).click();
  await page.waitForURL(`${base}/ui/user/account`);
  const signIn = async (returnTo) => {
    await page.goto(`${base}/ui/user/password/sign_in?return_to=${encodeURIComponent(returnTo)}`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForLoadState("load");
  };
  for (const evil of [
    "https://evil.example/",
    "//evil.example/",
    `${hookBase}.evil.example/app/`,
    `http://user@evil.example/app/`,
    "javascript:alert(1)",
    `${hookBase}/elsewhere/`,
  ]) {
    await signIn(evil);
    assert.equal(page.url(), `${base}/ui/user/account`, `return_to=${evil}`);
  }
  await signIn(`${hookBase}/app/welcome`);
  assert.equal(page.url(), `${hookBase}/app/welcome`);
  await page.context().close();
});

test("no page broke its Content-Security-Policy", () => {
  assert.deepEqual(cspViolations, []);
});
