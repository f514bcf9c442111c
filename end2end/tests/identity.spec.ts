import AxeBuilder from "@axe-core/playwright";
import { test, expect, unique, join, send, type Page, TOKEN_SECRET, signToken } from "./fixtures";
import { startServer, dropServer, type Server } from "./server";

/**
 * Sign-in from the deployer's app: a page opened with `#token=…` (an HS256 token this test signs, as a deployer's
 * backend would) posts as the token's name with the verified mark, and the token leaves the address bar at once. An
 * anonymous tab of the same feed sees the mark on that name, and none on a typed name that imitates it. A server of
 * this test's own takes tokens (`join = both`), so what every other spec sees is unchanged.
 */
const SECRET = TOKEN_SECRET;
const sign = signToken;

let server: Server;

/** axe-core's WCAG 2.x A and AA rules on the whole page, as `a11y.spec.ts` runs them. */
async function violations(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

test.beforeAll(async () => {
  server = await startServer({ args: ["--join", "both", "--token-secret", SECRET] });
});

test.afterAll(async () => {
  await dropServer(server);
});

test("a page opened with a token posts as its verified name, and another tab sees the mark", async ({ browser }) => {
  const context = await browser.newContext({ baseURL: server.base });
  const feed = unique("signed");
  const name = "Ada Lovelace";
  const token = sign({ sub: "user-42", name, exp: Math.floor(Date.now() / 1000) + 600 });

  // The anonymous tab first, so it is live in the feed when the signed-in tab sends.
  const reader = await context.newPage();
  await reader.goto(`/f/${feed}`);
  await reader.locator("main[data-hydrated]").waitFor();
  await expect(reader.getByRole("status")).toHaveText("Live");
  await join(reader, "✓ Ada Lovelace");

  const page = await context.newPage();
  await page.goto(`/f/${feed}#token=${token}`);
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.locator(".posting-as")).toContainText(`Posting as ${name}`);
  await expect(page.locator(".posting-as .mark.verified")).toBeVisible();
  // The token is out of the address bar (and this history entry) at once.
  expect(new URL(page.url()).hash).toBe("");
  expect(page.url()).not.toContain(token.slice(-16));
  expect(await page.evaluate(() => location.href)).toBe(`${server.base}/f/${feed}`);

  await send(page, "hello from the app");
  await send(reader, "me too");
  for (const tab of [reader, page]) {
    const signed = tab.locator(".log p[data-key]").filter({ hasText: "hello from the app" });
    await expect(signed.locator(".user")).toHaveText(name);
    await expect(signed.locator(".mark.verified")).toBeVisible();
    await expect(signed.locator(".mark.verified .sr-only")).toHaveText(" (verified)");
    const typed = tab.locator(".log p[data-key]").filter({ hasText: "me too" });
    await expect(typed.locator(".user")).toHaveText("✓ Ada Lovelace");
    await expect(typed.locator(".mark")).toHaveCount(0);
  }
  // Who is here marks the signed-in name as its messages are marked, and not the typed look-alike.
  for (const tab of [reader, page]) {
    const here = tab.getByRole("region", { name: "Who is here" });
    await expect(here.locator(".mark.verified")).toHaveCount(1);
    await expect(here.locator("bdi:has(+ .mark.verified)")).toHaveText(name);
    await expect(here.locator("bdi", { hasText: "✓ Ada" })).toHaveText("✓ Ada Lovelace");
  }
  // The mark is told apart by its box, which no typed character draws.
  const badge = await page.locator(".log .mark.verified").first().evaluate((el) => {
    const style = getComputedStyle(el);
    return { border: style.borderTopStyle, background: style.backgroundColor };
  });
  expect(badge.border).toBe("solid");
  expect(badge.background).not.toBe("rgba(0, 0, 0, 0)");
  expect(await violations(page), "the marks, light").toEqual([]);
  await page.screenshot({ path: "test-results/identity-signed-in.png" });
  await reader.screenshot({ path: "test-results/identity-reader.png" });

  // Rendered by the server as the tab hydrates it: a fresh load shows the same marks.
  await reader.reload();
  await reader.locator("main[data-hydrated]").waitFor();
  await expect(reader.locator(".log p[data-key]").filter({ hasText: "hello from the app" }).locator(".mark.verified")).toBeVisible();
  await expect(reader.locator(".log .mark")).toHaveCount(1);
  await reader.emulateMedia({ colorScheme: "dark" });
  expect(await violations(reader), "the marks, dark").toEqual([]);
  await reader.screenshot({ path: "test-results/identity-reader-dark.png" });
  await context.close();
});

const inSeconds = (seconds: number) => Math.floor(Date.now() / 1000) + seconds;

test("shortly before a sign-in expires the page gets a new token from the site and goes on posting", async ({ browser }) => {
  const refreshUrl = "https://app.example.test/auth/broadcasting-token";
  const own = await startServer({ args: ["--join", "both", "--token-secret", SECRET, "--token-refresh-url", refreshUrl] });
  try {
    const context = await browser.newContext({ baseURL: own.base });
    const page = await context.newPage();
    // The site's refresh endpoint, played here: it knows the user by its own cookies and signs a fresh token.
    let asked = 0;
    await page.route(refreshUrl, async (route) => {
      asked += 1;
      expect(route.request().method()).toBe("POST");
      const token = sign({ sub: "user-42", name: "Ada Lovelace", exp: inSeconds(600) });
      await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ token }) });
    });
    // A sign-in of 6 s: renewed a fifth of it (1.2 s) before it ends.
    await page.goto(`/f/${unique("renew")}#token=${sign({ sub: "user-42", name: "Ada Lovelace", exp: inSeconds(6) })}`);
    await page.locator("main[data-hydrated]").waitFor();
    await expect(page.locator(".posting-as")).toContainText("Posting as Ada Lovelace");
    await send(page, "before the renewal");
    await expect.poll(() => asked, { timeout: 10_000 }).toBe(1);
    await page.waitForTimeout(2_000); // past the first token's expiry
    await send(page, "after the renewal");
    await expect(page.locator(".log p[data-key]").filter({ hasText: "after the renewal" }).locator(".mark.verified")).toBeVisible();
    await expect(page.getByText("Your sign-in expired")).toHaveCount(0);
    await context.close();
  } finally {
    await dropServer(own);
  }
});

test("without a refresh URL an expired sign-in says so and shows the join form again", async ({ browser }) => {
  const context = await browser.newContext({ baseURL: server.base });
  const page = await context.newPage();
  await page.goto(`/f/${unique("expire")}#token=${sign({ sub: "user-7", name: "Grace", exp: inSeconds(3) })}`);
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.locator(".posting-as")).toContainText("Posting as Grace");
  await expect(page.getByRole("alert")).toHaveText("Your sign-in expired; rejoin.", { timeout: 10_000 });
  await expect(page.getByLabel("Username")).toBeVisible();
  await expect(page.locator(".posting-as")).toHaveCount(0);
  await context.close();
});

test("the embed takes a token as the full page does: it posts as the verified name", async ({ browser }) => {
  const context = await browser.newContext({ baseURL: server.base });
  const page = await context.newPage();
  const feed = unique("embed-signed");
  await page.goto(`/f/${feed}/embed#token=${sign({ sub: "user-9", name: "Lin", exp: inSeconds(600) })}`);
  await page.locator("main.embed[data-hydrated]").waitFor();
  await expect(page.locator(".posting-as")).toContainText("Posting as Lin");
  expect(new URL(page.url()).hash).toBe("");
  await send(page, "from the article");
  await expect(page.locator(".log p[data-key]").filter({ hasText: "from the article" }).locator(".mark.verified")).toBeVisible();
  await context.close();
});
