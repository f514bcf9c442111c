import AxeBuilder from "@axe-core/playwright";
import { test, expect, unique, openLive, join, send, type Page } from "./fixtures";

/** axe-core's WCAG 2.x A and AA rules on the whole page: the violations, with the elements each names. */
async function violations(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

for (const colorScheme of ["light", "dark"] as const) {
  test(`no accessibility violations (${colorScheme}): before joining, joined, and with an error shown`, async ({ browser, baseURL, expectRefusal }) => {
    expectRefusal(422);
    const context = await browser.newContext({ baseURL, colorScheme });
    const page = await openLive(context);
    expect(await violations(page), "before joining").toEqual([]);

    const name = unique("Reader");
    await join(page, name);
    await send(page, unique("a message to check"));
    expect(await violations(page), "joined, with messages").toEqual([]);

    await send(page, "   ");
    await expect(page.getByRole("alert")).toHaveText("Type a message first.");
    expect(await violations(page), "with an error shown").toEqual([]);
    await context.close();
  });
}
