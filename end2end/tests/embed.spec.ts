import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type BrowserContext, type FrameLocator, type Page } from "@playwright/test";
import { test, expect, unique } from "./fixtures";
import { startServer, dropServer, metric, type Server } from "./server";

/**
 * The embed on a deployer's article: a page served from another site (http://localhost:PORT, while Broadcasting is
 * http://127.0.0.1:PORT; Chromium holds those two apart as sites, so the embeds are third-party frames, which are
 * sent no SameSite=Lax cookie) frames two feeds with README's snippet. The server is this test's own, started with
 * that origin in `embed-origins`, so its /metrics count this browser's streams alone.
 *
 * Twice: with third-party cookies allowed (Chrome's default for a profile; this Chromium blocks them, so the test
 * runs a profile of its own that allows them), the embeds get Web Locks and share one stream; blocked (Playwright's
 * default context here, as in an incognito window), Chrome refuses them the lock, and each embed holds its own.
 */

const OPEN_STREAMS = "broadcasting_open_streams";

/** README's snippet (its iframe and its script), for `origin` and the feed `feed`. */
function snippet(origin: string, feed: string): { iframe: string; script: string } {
  const readme = readFileSync(path.resolve(__dirname, "../../README.md"), "utf8");
  const section = readme.split("\n## Embedding\n")[1];
  const html = /```html\n([\s\S]*?)```/.exec(section)![1].replaceAll("https://comments.example", origin);
  const iframe = /<iframe[\s\S]*?<\/iframe>/.exec(html)![0].replace("/f/team-news/embed", `/f/${feed}/embed`);
  const script = /<script>[\s\S]*?<\/script>/.exec(html)![0];
  return { iframe, script };
}

let server: Server | undefined;
let host: HttpServer | undefined;
test.afterEach(async () => {
  if (server) await dropServer(server);
  if (host) await new Promise((resolve) => host!.close(resolve));
  server = host = undefined;
});

/** Serves `page()` at any path of http://localhost:PORT; that origin. */
async function serveHost(page: () => string): Promise<string> {
  host = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(page());
  });
  await new Promise<void>((resolve) => host!.listen(0, "127.0.0.1", resolve));
  return `http://localhost:${(host.address() as AddressInfo).port}`;
}

const frameOf = (page: Page, feed: string) => page.frameLocator(`iframe[src$="/f/${feed}/embed"]`);
const iframeOf = (page: Page, feed: string) => page.locator(`iframe[src$="/f/${feed}/embed"]`);
const row = (frame: FrameLocator, user: string, text: string) =>
  frame.locator(".log p[data-key]").filter({ hasText: `${user}: ${text}` });

/** The iframe's height as the host page set it, and its content's (the embed's `<main>`), in CSS pixels. */
async function heights(page: Page, feed: string): Promise<{ iframe: number; content: number }> {
  const iframe = await iframeOf(page, feed).evaluate((el) => el.getBoundingClientRect().height);
  const content = await frameOf(page, feed).locator("main").evaluate((el) => (el as HTMLElement).offsetHeight);
  return { iframe, content };
}

/** An article of the host with README's snippet for the feeds alpha and beta, framing Broadcasting at `base()`. */
async function article(base: () => string): Promise<string> {
  return serveHost(() => {
    const [alpha, beta] = [snippet(base(), "alpha"), snippet(base(), "beta")];
    return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>An article</title></head>
      <body><h1>An article</h1><p>Its text.</p>${alpha.iframe}<p>More text.</p>${beta.iframe}${alpha.script}</body></html>`;
  });
}

/** Waits until both embeds of `page` are hydrated and live. */
async function live(page: Page) {
  for (const feed of ["alpha", "beta"]) {
    await frameOf(page, feed).locator("main[data-hydrated]").waitFor();
    await expect(frameOf(page, feed).getByRole("status")).toHaveText("Live");
  }
}

async function joinAndSend(frame: FrameLocator, name: string, texts: string[]) {
  await frame.getByLabel("Username").fill(name);
  await frame.getByRole("button", { name: "Join" }).click();
  await expect(frame.getByText("Posting as")).toContainText(name);
  for (const text of texts) await sendFrom(frame, name, text);
}

async function sendFrom(frame: FrameLocator, name: string, text: string) {
  await frame.getByLabel("Message", { exact: true }).fill(text);
  await frame.getByRole("button", { name: "Send" }).click();
  await expect(row(frame, name, text)).toHaveCount(1);
}

const streamsSettleAt = (expected: number) =>
  expect.poll(() => metric(server!, OPEN_STREAMS), { message: "open event streams", timeout: 10_000 }).toBe(expected);

/** A browser with a profile of its own that allows third-party cookies (and with them, third-party site data). */
async function allowingThirdPartyCookies(): Promise<{ context: BrowserContext; done: () => Promise<void> }> {
  const profile = mkdtempSync(path.join(tmpdir(), "broadcasting-e2e-profile-"));
  mkdirSync(path.join(profile, "Default"));
  writeFileSync(path.join(profile, "Default", "Preferences"), JSON.stringify({ profile: { cookie_controls_mode: 0 } }));
  const context = await chromium.launchPersistentContext(profile, test.info().project.use.launchOptions ?? {});
  return { context, done: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}

test("two embeds on another site's page share one stream, are sized by postMessage, and join and send", async () => {
  test.setTimeout(60_000);
  let base = "";
  const origin = await article(() => base);
  server = await startServer({ args: ["--embed-origins", origin] });
  base = server.base;
  expect(new URL(origin).hostname).not.toBe(new URL(base).hostname);
  const { context, done } = await allowingThirdPartyCookies();
  // This context is not the fixtures' (which fail a test on a console error): watched here the same way.
  const errors: string[] = [];
  context.on("page", (page) => {
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => { if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`); });
  });
  const page = await context.newPage();
  await page.goto(`${origin}/article`);
  await live(page);
  // Two embeds, one leader, one stream.
  await streamsSettleAt(1);
  const leaders = await Promise.all(["alpha", "beta"].map((feed) => frameOf(page, feed).locator("[data-leads]").count()));
  expect(leaders[0] + leaders[1], "exactly one embed leads").toBe(1);

  // Each iframe was sized to its content by the snippet (the iframe starts at 20rem).
  const sized = async () => { const h = await heights(page, "alpha"); return h.iframe === h.content; };
  await expect.poll(sized).toBe(true);
  const before = await heights(page, "alpha");
  expect(before.iframe).not.toBe(320);

  const ada = unique("Ada");
  const alpha = frameOf(page, "alpha");
  const texts = [1, 2, 3, 4, 5].map((n) => unique(`comment ${n}`));
  await joinAndSend(alpha, ada, texts);
  // The log grew, and the iframe with it.
  await expect.poll(sized).toBe(true);
  expect((await heights(page, "alpha")).iframe).toBeGreaterThan(before.iframe);

  // A second article of the same site: its embeds follow the same leader and take its group (they have no cookie
  // either), and hear what the first page's embed sends, over the one stream.
  const second = await context.newPage();
  await second.goto(`${origin}/another-article`);
  await live(second);
  const elsewhere = frameOf(second, "alpha");
  await expect(row(elsewhere, ada, texts[4])).toHaveCount(1);
  const now = unique("live comment");
  await sendFrom(alpha, ada, now);
  await expect(row(elsewhere, ada, now)).toHaveCount(1);
  await expect(elsewhere.locator(".presence")).toContainText(ada);
  await expect(frameOf(second, "beta").locator(".log p[data-key]")).toHaveCount(0);
  expect(await metric(server!, OPEN_STREAMS), "four embeds on two pages, one stream").toBe(1);
  expect(errors, "errors in the browser").toEqual([]);
  await done();
});

test("with third-party cookies blocked, each embed holds a stream of its own, and joins and sends", async ({ browser }) => {
  test.setTimeout(60_000);
  let base = "";
  const origin = await article(() => base);
  server = await startServer({ args: ["--embed-origins", origin] });
  base = server.base;
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/article`);
  await live(page);
  await streamsSettleAt(2);
  for (const feed of ["alpha", "beta"]) await expect(frameOf(page, feed).locator("[data-leads]")).toHaveCount(1);
  const grace = unique("Grace");
  await joinAndSend(frameOf(page, "beta"), grace, [unique("hello")]);
  await expect(frameOf(page, "beta").locator(".presence")).toContainText(grace);
  await context.close();
});
