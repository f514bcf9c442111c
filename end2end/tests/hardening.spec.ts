import { test, expect, unique, openLive, join, send, row, said, type Page } from "./fixtures";

/**
 * Each payload, if it ever ran, would set `window.__xss` (or open a dialog). They are sent through the UI, read live
 * by a second tab, and read again from the first HTML of a third: every time shown as typed, nothing run, no element
 * made from them.
 */
const PAYLOADS = [
  "<script>window.__xss=1</script>",
  "<img src=x onerror=\"window.__xss=2\">",
  "<svg onload=\"window.__xss=3\">",
  "<svg><script>window.__xss=4</script></svg>",
  "<a href=\"javascript:window.__xss=5\">click me</a>",
  "<iframe src=\"javascript:window.__xss=6\"></iframe>",
  "<body onload=\"window.__xss=7\">",
  "<div onmouseover=\"window.__xss=8\">hover me</div>",
  "\"><script>window.__xss=9</script>",
  "'><img src=x onerror=window.__xss=10>",
  "<scr<script>ipt>window.__xss=11</scr</script>ipt>",
  "<IMG SRC=\"jav&#x09;ascript:window.__xss=12\">",
  "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=13>",
  "<details open ontoggle=\"window.__xss=14\">",
  "<input autofocus onfocus=\"window.__xss=15\">",
  "<video><source onerror=\"window.__xss=16\"></video>",
  "<object data=\"javascript:window.__xss=17\"></object>",
  "<embed src=\"javascript:window.__xss=18\">",
  "<form action=\"javascript:window.__xss=19\"><button>go</button></form>",
  "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__xss=20\">",
  "<style>@import 'javascript:window.__xss=21';</style>",
  "<!--<img src=x onerror=window.__xss=22>-->",
  "<![CDATA[<script>window.__xss=23</script>]]>",
  "\u202e<script>window.__xss=24</script>",
  "abc\u202edef\u202c ghi \u2067isolate\u2069",
  "<template><script>window.__xss=26</script></template>",
  "<noscript><p title=\"</noscript><img src=x onerror=window.__xss=27>\">",
  "javascript:window.__xss=28",
  "{{constructor.constructor('window.__xss=29')()}}",
  "<svg><animate onbegin=\"window.__xss=30\" attributeName=x dur=1s>",
  "<base href=\"javascript:window.__xss=31//\">",
  "&lt;script&gt;window.__xss=32&lt;/script&gt;",
  "</p></div></main><script>window.__xss=33</script>",
  "<a href=# onclick=\"window.__xss=34\">x</a>",
];

/** The rows by `user` that carry `tag` anywhere in their text. */
const tagged = (page: Page, user: string, tag: string) =>
  page.locator(".log p[data-key]").filter({ hasText: `${user}:` }).filter({ hasText: tag });

test("markup, script and bidi payloads are shown as typed and never run", async ({ context }) => {
  // 34 sends, each awaited in the sender's log: about 75 s against the debug build the suite runs on.
  test.setTimeout(180_000);
  const sender = await openLive(context);
  const reader = await openLive(context);
  for (const page of [sender, reader]) page.on("dialog", () => expect(false, "a payload opened a dialog").toBe(true));
  const name = unique("Mallory");
  await join(sender, name);
  const tag = unique("x");
  const sent = PAYLOADS.map((payload) => `${payload} ${tag}`);
  for (const text of sent) {
    await send(sender, text);
    await expect(tagged(sender, name, tag).last().locator(".text")).toHaveText(text);
  }

  const later = await openLive(context);
  for (const page of [sender, reader, later]) {
    const shown = await said(tagged(page, name, tag));
    expect(shown).toEqual(sent.map((text) => `${name}: ${text}`));
    // a payload's markup never became elements: each row is exactly its time, <strong><bdi>name</bdi>:</strong> and
    // <bdi>text</bdi> (and a day separator where a day starts)
    const shapes = await tagged(page, name, tag).evaluateAll((ps) =>
      ps.map((p) => [...p.querySelectorAll("*")].map((el) => `${el.parentElement === p ? "" : ">"}${el.tagName}`).join(" ")),
    );
    expect(new Set(shapes.map((shape) => shape.replace(/^SPAN /, "")))).toEqual(new Set(["TIME STRONG >BDI BDI"]));
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  }
});

test("the page runs under a Content-Security-Policy without unsafe-inline", async ({ context, request }) => {
  const response = await request.get("/");
  const policy = response.headers()["content-security-policy"];
  expect(policy).toMatch(/script-src [^;]*'nonce-/);
  expect(policy).not.toContain("unsafe-inline");
  expect(policy).toContain("frame-ancestors 'none'");
  // the page still hydrates and goes live under it (a blocked script would also fail this test via the console)
  const page = await openLive(context);
  const name = unique("Csp");
  await join(page, name);
  await send(page, "under policy");
  await expect(row(page, name, "under policy")).toHaveCount(1);
});

test("a right-to-left name is its own bidi run: the row still reads name, then text", async ({ context }) => {
  const page = await openLive(context);
  // Without isolation, the digits that open the text join the name's right-to-left run and are drawn left of it.
  const hebrew = () => String.fromCharCode(0x05d0 + Math.floor(Math.random() * 27));
  const name = `אבי ${hebrew()}${hebrew()}${hebrew()}`;
  const text = `42 ${unique("is the answer")}`;
  await join(page, name);
  await send(page, text);
  const line = row(page, name, text);
  await expect(line).toHaveCount(1);
  const boxes = await line.evaluate((p, [name, text]) => {
    const box = (needle: string) => {
      const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = node.textContent!.indexOf(needle);
        if (at >= 0) {
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + needle.length);
          return range.getBoundingClientRect().toJSON();
        }
      }
      return null;
    };
    // The whole text, not "42" alone: the row's time reads "17:42" once an hour.
    return { name: box(name), digits: box(text) };
  }, [name, text]);
  expect(boxes.name && boxes.digits, "both found").toBeTruthy();
  expect(boxes.name!.right).toBeLessThanOrEqual(boxes.digits!.left + 1);
});
