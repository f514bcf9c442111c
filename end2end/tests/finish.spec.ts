import { test, expect, unique, openLive, join, send, row } from "./fixtures";
import { startServer, dropServer, metric } from "./server";

/** FNV-1a of the UTF-8 bytes, as src/client/feed.rs computes a name's colour. */
function authorClass(name: string): string {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(name)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return `author-${hash % 8}`;
}

test("times show in the reader's zone, filled in after hydration from a server page that has none", async ({ browser, baseURL, request }) => {
  const context = await browser.newContext({ baseURL, timezoneId: "Asia/Kathmandu" }); // UTC+05:45: no whole-hour luck
  const page = await openLive(context);
  const name = unique("Clock");
  await join(page, name);
  const text = unique("what time is it");
  await send(page, text);
  const time = row(page, name, text).locator("time");
  const datetime = await time.getAttribute("datetime");
  expect(datetime).toMatch(/^\d{4}-\d\d-\d\dT/);
  const expected = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "Asia/Kathmandu" }).format(new Date(datetime!));
  await expect(time).toHaveText(expected);
  await expect(time).toHaveAttribute("title", /\d/);
  await expect(page.locator(".log .day").first()).toHaveText("Today");

  // The server's HTML carries the time's datetime and no text (it cannot know the zone), so hydration matches.
  const html = await (await request.get("/")).text();
  expect(html).toMatch(new RegExp(`<time datetime="${datetime}">(<!>)*</time>`));
  await context.close();
});

test("a name has one colour, the same in every tab", async ({ context }) => {
  const [a, b] = [await openLive(context), await openLive(context)];
  const name = unique("Painter");
  await join(a, name);
  const text = unique("colourful");
  await send(a, text);
  for (const tab of [a, b]) await expect(row(tab, name, text)).toHaveClass(authorClass(name));
});

test("new messages below a reader who scrolled up: a button counts them, jumps to the first, and goes at the bottom", async ({ context }) => {
  test.setTimeout(90_000);
  const [writer, reader] = [await openLive(context), await openLive(context)];
  const name = unique("Chatty");
  await join(writer, name);
  const log = reader.getByRole("log");
  for (let i = 0; !(await log.evaluate((el) => el.scrollHeight > el.clientHeight + 200)); i++) {
    const text = unique(`filler ${i}`);
    await send(writer, text);
    await expect(row(reader, name, text)).toHaveCount(1);
  }
  await expect(reader.locator(".unread")).toHaveCount(0);
  await log.evaluate((el) => el.scrollTo({ top: 0 }));
  await log.dispatchEvent("scroll");

  const unread = [unique("unread 1"), unique("unread 2"), unique("unread 3")];
  for (const text of unread) {
    await send(writer, text);
    await expect(row(reader, name, text)).toHaveCount(1);
  }
  const button = reader.getByRole("button", { name: "3 new messages ↓" });
  await expect(button).toBeVisible();
  await expect(writer.locator(".unread"), "the writer is at the bottom").toHaveCount(0);
  // Announced to screen readers in the reader's tab, not in the writer's own.
  await expect(reader.locator(".sr-only[aria-live]")).toHaveText(`${name}: ${unread[2]}`);
  await expect(writer.locator(".sr-only[aria-live]")).not.toContainText(unread[2]);

  await button.click();
  await expect(row(reader, name, unread[0])).toBeInViewport();
  await log.evaluate((el) => el.scrollTo({ top: el.scrollHeight }));
  await log.dispatchEvent("scroll");
  await expect(reader.locator(".unread")).toHaveCount(0);
});

test("a counter near the limit, and an over-long message refused before it is sent", async ({ browser }) => {
  const server = await startServer({ args: ["--max-message-chars", "20"] });
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const page = await openLive(context);
    const name = unique("Counter");
    await join(page, name);
    const box = page.getByLabel("Message", { exact: true });
    const counter = page.locator("#message-counter");
    await box.pressSequentially("0123456789");
    await expect(counter).toHaveText("");
    await box.pressSequentially("abcdefg");
    await expect(counter, "17 is below 90 % of 20").toHaveText("");
    await box.pressSequentially("h");
    await expect(counter).toHaveText("18 / 20 characters");
    await box.pressSequentially("XYZ!");
    await expect(counter).toHaveText("22 / 20 characters");
    await expect(counter).toHaveClass(/over/);

    const appended = await metric(server, "broadcasting_messages_appended_total");
    await page.getByRole("button", { name: "Send" }).click();
    await expect(page.getByRole("alert")).toHaveText("Messages are at most 20 characters; this one has 22.");
    await expect(box, "the text is kept").toHaveValue("0123456789abcdefghXYZ!");
    expect(await metric(server, "broadcasting_messages_appended_total"), "nothing was sent").toBe(appended);

    await box.fill("0123456789abcdefghXY");
    await expect(counter).toHaveText("20 / 20 characters");
    await box.press("Enter");
    await expect(row(page, name, "0123456789abcdefghXY")).toHaveCount(1);
    await expect(page.getByRole("alert")).toHaveCount(0);
    await context.close();
  } finally {
    await dropServer(server);
  }
});
