import { test, expect, unique, openLive, join, send, row, expectOnceInOrder } from "./fixtures";

test("two tabs join as two names and each sees the other's messages live", async ({ context }) => {
  const [ada, bob] = [unique("Ada"), unique("Bob")];
  const tabA = await openLive(context);
  const tabB = await openLive(context);
  await join(tabA, ada);
  await join(tabB, bob);

  const fromA = unique("hello from A");
  await send(tabA, fromA);
  await expect(row(tabB, ada, fromA)).toHaveCount(1);
  await expect(row(tabA, ada, fromA)).toHaveCount(1);
  // the input is cleared and keeps focus for the next message
  await expect(tabA.getByLabel("Message", { exact: true })).toHaveValue("");
  await expect(tabA.getByLabel("Message", { exact: true })).toBeFocused();

  const fromB = unique("hello from B");
  await send(tabB, fromB);
  await expect(row(tabA, bob, fromB)).toHaveCount(1);
  await expect(row(tabB, bob, fromB)).toHaveCount(1);

  // each tab keeps its own name
  await expect(tabA.getByText("Posting as")).toContainText(ada);
  await expect(tabB.getByText("Posting as")).toContainText(bob);

  // rows appear once each, in id order
  await expectOnceInOrder(tabB);
});

test("a reload forgets the name and shows the join form again", async ({ context }) => {
  const page = await openLive(context);
  const name = unique("Reloader");
  await join(page, name);
  await page.reload();
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.getByLabel("Username")).toBeVisible();
  await expect(page.getByText("Posting as")).toHaveCount(0);
  // nothing about the name was stored in the browser
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  expect(stored).not.toContain(name);
});

test("a whitespace-only message adds nothing and says why", async ({ context, expectRefusal }) => {
  expectRefusal(422);
  const page = await openLive(context);
  await join(page, unique("Blank"));
  const before = await page.locator(".log p[data-key]").count();
  await send(page, "     ");
  await expect(page.getByRole("alert")).toHaveText("Type a message first.");
  await page.waitForTimeout(300);
  expect(await page.locator(".log p[data-key]").count()).toBe(before);
});

test("markup in a message is shown as text and never runs", async ({ context }) => {
  const page = await openLive(context);
  const name = unique("Mallory");
  await join(page, name);
  const payload = `<img src=x onerror="window.__xss=1"> ${unique("x")}`;
  await send(page, payload);
  await expect(row(page, name, payload)).toHaveCount(1);
  await page.reload(); // and again as server-rendered HTML
  await expect(row(page, name, payload)).toHaveCount(1);
  expect(await page.locator(".log img").count()).toBe(0);
  expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
});

test("a tab opened later has the history in its first HTML", async ({ context, browser, request, baseURL }) => {
  const page = await openLive(context);
  const name = unique("Early");
  await join(page, name);
  const text = unique("sent before the late tab opened");
  await send(page, text);
  await expect(row(page, name, text)).toHaveCount(1);

  const html = await (await request.get("/")).text();
  expect(html).toContain(`data-key=`);
  expect(html).toContain(text);

  // with JavaScript off, what shows is only the server's HTML
  const noScript = await browser.newContext({ javaScriptEnabled: false, baseURL });
  const late = await noScript.newPage();
  await late.goto("/");
  await expect(row(late, name, text)).toHaveCount(1);
  await noScript.close();
});

test("the log follows new messages unless the reader scrolled up", async ({ context }) => {
  const [writer, reader] = [await openLive(context), await openLive(context)];
  const name = unique("Chatty");
  await join(writer, name);
  const log = reader.getByRole("log");
  const gapToBottom = () => log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  const overflows = () => log.evaluate((el) => el.scrollHeight > el.clientHeight + 50);

  for (let i = 0; !(await overflows()); i++) {
    const text = unique(`filler ${i}`);
    await send(writer, text);
    await expect(row(reader, name, text)).toHaveCount(1);
  }
  await expect.poll(gapToBottom).toBeLessThan(2);

  // scrolled up: a new message arrives, the reader's place is kept
  await log.evaluate((el) => el.scrollTo({ top: 0 }));
  await log.dispatchEvent("scroll");
  const kept = unique("while scrolled up");
  await send(writer, kept);
  await expect(row(reader, name, kept)).toHaveCount(1);
  expect(await log.evaluate((el) => el.scrollTop)).toBe(0);

  // back at the bottom: it follows again
  await log.evaluate((el) => el.scrollTo({ top: el.scrollHeight }));
  await log.dispatchEvent("scroll");
  const followed = unique("back at the bottom");
  await send(writer, followed);
  await expect(row(reader, name, followed)).toHaveCount(1);
  await expect.poll(gapToBottom).toBeLessThan(2);
});

test("load older messages fetches the page before the oldest shown and keeps the reader's place", async ({ context }) => {
  // More than one page (200) of history, sent through the public API.
  const api = context.request;
  const joined = await (await api.post("/api/join", { form: { username: unique("Historian") } })).json();
  const tag = unique("history");
  for (let i = 0; i < 210; i++) {
    const res = await api.post("/api/send", { form: { ticket: joined.ticket, text: `${tag} ${i}` } });
    expect(res.status()).toBe(200);
  }
  const page = await openLive(context);
  const rows = page.locator(".log p[data-key]");
  await expect(rows).toHaveCount(200);
  const firstKey = Number(await rows.first().getAttribute("data-key"));

  const log = page.getByRole("log");
  await log.evaluate((el) => el.scrollTo({ top: 0 }));
  await log.dispatchEvent("scroll");
  // The row's message line (the row's box also holds a day separator, which goes once older rows of that day are in).
  const anchor = page.locator(`.log p[data-key="${firstKey}"] .text`);
  const topBefore = (await anchor.boundingBox())!.y;

  await page.getByRole("button", { name: "Load older messages" }).click();
  await expect(page.locator(`.log p[data-key="${firstKey - 1}"]`)).toHaveCount(1);
  expect(await rows.count()).toBeGreaterThan(200);
  await expectOnceInOrder(page);
  // the row the reader was looking at has not moved
  await expect.poll(async () => Math.abs((await anchor.boundingBox())!.y - topBefore)).toBeLessThan(5);
});
