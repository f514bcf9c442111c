// Screenshots of the running app for the README and for looking at the UI:
//   node end2end/scripts/screenshot.mjs [base-url] [out-dir]
// Two tabs of one browser (same session group) joined as two people, side by side, in light and dark,
// and a phone-sized view.
import { chromium } from "@playwright/test";

const base = process.argv[2] ?? "http://127.0.0.1:3000";
const out = process.argv[3] ?? "docs";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

async function live(page) {
  await page.goto(base + "/");
  await page.locator("main[data-hydrated]").waitFor();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
}
async function join(page, name) {
  await page.getByLabel("Username").fill(name);
  await page.getByRole("button", { name: "Join" }).click();
  await page.getByText("Posting as").waitFor();
}
async function send(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".log p[data-key]").filter({ hasText: text }).first().waitFor();
}

for (const scheme of ["light", "dark"]) {
  const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 560, height: 640 } });
  const [ada, bob] = [await context.newPage(), await context.newPage()];
  await live(ada);
  await live(bob);
  await join(ada, "Ada");
  await join(bob, "Grace");
  if (scheme === "light") {
    await send(ada, "Hi Grace, can you see this?");
    await send(bob, "Instantly. No reload needed.");
    await send(ada, "Same browser, two tabs, two names.");
  }
  await bob.locator(".log p[data-key]").last().waitFor();
  await ada.waitForTimeout(300);
  // Both tabs side by side in one picture: a page of this origin with two same-origin frames.
  const frames = await context.newPage();
  await frames.setViewportSize({ width: 1140, height: 660 });
  await frames.goto(base + "/not-a-page"); // any same-origin document
  await frames.setContent(`<body style="margin:0;display:flex;gap:20px;padding:10px;background:#888">
    <iframe src="${base}/" style="width:550px;height:640px;border:0;border-radius:8px"></iframe>
    <iframe src="${base}/" style="width:550px;height:640px;border:0;border-radius:8px"></iframe></body>`);
  for (const [i, name] of [[0, "Ada"], [1, "Grace"]]) {
    const frame = frames.frameLocator("iframe").nth(i);
    await frame.locator("main[data-hydrated]").waitFor();
    await frame.getByLabel("Username").fill(name);
    await frame.getByRole("button", { name: "Join" }).click();
    await frame.getByText("Posting as").waitFor();
  }
  await frames.waitForTimeout(500);
  await frames.screenshot({ path: `${out}/two-tabs-${scheme}.png` });
  await context.close();
}

const phone = await browser.newContext({ viewport: { width: 390, height: 760 }, deviceScaleFactor: 1, isMobile: true });
const page = await phone.newPage();
await live(page);
await page.screenshot({ path: `${out}/phone.png` });
await browser.close();
console.log(`screenshots written to ${out}/`);
