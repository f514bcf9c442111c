import { readFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FrameLocator, Page } from "@playwright/test";
import { test, expect, unique } from "./fixtures";
import { startServer, dropServer, metric, type Server } from "./server";

/**
 * The embed on a deployer's article: a page served from another site (http://localhost:PORT, while Broadcasting is
 * http://127.0.0.1:PORT; Chromium holds those two apart as sites, so the embeds are third-party frames, which are
 * sent no SameSite=Lax cookie) frames two feeds with README's snippet. The server is this test's own, started with
 * that origin in `embed-origins`, so its /metrics count this browser's streams alone.
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

test("two embeds on another site's page: join and send in one, sized by postMessage, one stream for all", async ({ browser }) => {
  test.setTimeout(60_000);
  let base = "";
  const origin = await serveHost(() => {
    const [alpha, beta] = [snippet(base, "alpha"), snippet(base, "beta")];
    return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>An article</title></head>
      <body><h1>An article</h1><p>Its text.</p>${alpha.iframe}<p>More text.</p>${beta.iframe}${alpha.script}</body></html>`;
  });
  server = await startServer({ args: ["--embed-origins", origin] });
  base = server.base;
  expect(new URL(origin).hostname).not.toBe(new URL(base).hostname);

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/article`);
  for (const feed of ["alpha", "beta"]) {
    await frameOf(page, feed).locator("main[data-hydrated]").waitFor();
    await expect(frameOf(page, feed).getByRole("status")).toHaveText("Live");
  }
  // Two embeds, one leader, one stream.
  await expect.poll(() => metric(server!, OPEN_STREAMS), { message: "open event streams", timeout: 10_000 }).toBe(1);
  const leaders = await Promise.all(["alpha", "beta"].map((feed) => frameOf(page, feed).locator("[data-leads]").count()));
  expect(leaders[0] + leaders[1], "exactly one embed leads").toBe(1);

  // Each iframe was sized to its content by the snippet (the iframe starts at 20rem).
  const alpha = frameOf(page, "alpha");
  await expect.poll(async () => { const h = await heights(page, "alpha"); return h.iframe === h.content; }).toBe(true);
  const before = await heights(page, "alpha");
  expect(before.iframe).not.toBe(320);

  const ada = unique("Ada");
  await alpha.getByLabel("Username").fill(ada);
  await alpha.getByRole("button", { name: "Join" }).click();
  await expect(alpha.getByText("Posting as")).toContainText(ada);
  const texts = [1, 2, 3, 4, 5].map((n) => unique(`comment ${n}`));
  for (const text of texts) {
    await alpha.getByLabel("Message", { exact: true }).fill(text);
    await alpha.getByRole("button", { name: "Send" }).click();
    await expect(row(alpha, ada, text)).toHaveCount(1);
  }
  // The log grew, and the iframe with it.
  await expect.poll(async () => { const h = await heights(page, "alpha"); return h.iframe === h.content; }).toBe(true);
  const after = await heights(page, "alpha");
  expect(after.iframe).toBeGreaterThan(before.iframe);

  // A second article of the same site: its embeds join the same leader and group (they have no cookie either), and
  // hear what the first page's embed sends, over the one stream.
  const second = await context.newPage();
  await second.goto(`${origin}/another-article`);
  for (const feed of ["alpha", "beta"]) await expect(frameOf(second, feed).getByRole("status")).toHaveText("Live");
  await expect(row(frameOf(second, "alpha"), ada, texts[4])).toHaveCount(1);
  const live = unique("live comment");
  await alpha.getByLabel("Message", { exact: true }).fill(live);
  await alpha.getByRole("button", { name: "Send" }).click();
  await expect(row(frameOf(second, "alpha"), ada, live)).toHaveCount(1);
  await expect(frameOf(second, "alpha").locator(".presence")).toContainText(ada);
  await expect(frameOf(second, "beta").locator(".log p[data-key]")).toHaveCount(0);
  expect(await metric(server!, OPEN_STREAMS), "four embeds on two pages, one stream").toBe(1);
  await context.close();
});
