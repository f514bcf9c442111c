import { createHmac } from "node:crypto";
import { test as base, expect, type Page, type BrowserContext, type Locator } from "@playwright/test";

/**
 * Every page a test opens fails the test if it throws or logs a console error. Chromium itself logs
 * "Failed to load resource" for every 4xx answer, so a test that provokes a refusal on purpose names the status
 * it expects with `expectRefusal(status)`; that one line is then allowed, nothing else.
 */
export const test = base.extend<{ expectRefusal: (status: number) => void }>({
  expectRefusal: [
    async ({ context }, use) => {
      const errors: string[] = [];
      const allowed: RegExp[] = [];
      const watch = (page: Page) => {
        page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
        page.on("console", (msg) => {
          if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) {
            errors.push(`console.error: ${msg.text()}`);
          }
        });
      };
      context.pages().forEach(watch);
      context.on("page", watch);
      await use((status) => allowed.push(new RegExp(`^Failed to load resource: the server responded with a status of ${status} `)));
      expect(errors, "errors in the browser").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
export type { Page };

export const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`;

/** Opens `/` and waits until the page is hydrated and its event stream is live. */
export async function openLive(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.goto("/");
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.getByRole("status")).toHaveText("Live");
  return page;
}

export async function join(page: Page, name: string) {
  await page.getByLabel("Username").fill(name);
  await page.getByRole("button", { name: "Join" }).click();
  await expect(page.getByText("Posting as")).toContainText(name);
}

export async function send(page: Page, text: string) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

/** Each row's message as `USER: TEXT`, without its time and day. */
export const said = (rows: Locator) =>
  rows.evaluateAll((ps) => ps.map((p) => `${p.querySelector(".user")?.textContent}: ${p.querySelector(".text")?.textContent}`));

/** Asserts that each row of the page's log shows once, in id order. */
export async function expectOnceInOrder(page: Page) {
  const keys = await page.locator(".log p[data-key]").evaluateAll((ps) => ps.map((p) => Number(p.getAttribute("data-key"))));
  expect(new Set(keys).size, "no row twice").toBe(keys.length);
  expect(keys, "rows in id order").toEqual([...keys].sort((a, b) => a - b));
}

/** The log row `USER: TEXT`. */
export const row = (page: Page, user: string, text: string) =>
  page.locator(".log p[data-key]").filter({ hasText: `${user}: ${text}` });

/** The secret the specs' servers check sign-in tokens with (`--token-secret`). */
export const TOKEN_SECRET = "the e2e deployer's secret, thirty-two bytes or more";

/** A sign-in token as a deployer's backend signs it: HS256 with `TOKEN_SECRET`. */
export function signToken(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", TOKEN_SECRET).update(body).digest("base64url")}`;
}
