// Drives Brooklet's web console in headless Chromium, as a user would:
//
//   node browse.js CONSOLE_URL SCREENSHOT_DIR
//
// against a broker that tests/tests/it/console_browser.rs started and
// filled: a topic `xss` whose record 0 has the value
// `<script>alert(1)</script>`, and a group `lagging` with no members that
// committed offset 2 of `jobs/0` out of 5 records (lag 3). Prints `ok: …`
// per step; exits 1 with the reason (and a screenshot `failed.png`) on the
// first step that fails. Every wait is Playwright's, with a timeout.
"use strict";
const path = require("path");
const { chromium } = require("playwright-core");

const [url, shots] = process.argv.slice(2);
if (!url || !shots) {
  console.error("usage: node browse.js CONSOLE_URL SCREENSHOT_DIR");
  process.exit(2);
}
const chromiumPath = process.env.BROOKLET_CHROMIUM || "/usr/bin/chromium";
const XSS = "<script>alert(1)</script>";

async function main(page, problems) {
  const step = (what) => console.log("ok: " + what);
  const shot = (name) => page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });

  await page.goto(url + "#/overview");
  await page.locator("main td", { hasText: /^Version$/ }).waitFor();
  await page.locator("main .uplot").first().waitFor();
  step("overview");

  // Create a topic through the form on the topics page.
  await page.locator("nav a", { hasText: "Topics" }).click();
  const create = page.locator("form", { hasText: "Create topic" });
  await create.locator("input[name=name]").fill("browsed");
  await create.locator("input[name=partitions]").fill("2");
  await create.locator("textarea[name=config]").fill("retention.ms=86400000");
  await create.locator("button[type=submit]").click();
  await create.locator(".notice", { hasText: "created browsed" }).waitFor();
  await page.locator("main table a", { hasText: /^browsed$/ }).waitFor();
  await shot("topics");
  step("created topic browsed");

  // Send a record from the topic's page.
  await page.locator("main table a", { hasText: /^browsed$/ }).click();
  await page.locator("main td", { hasText: /^retention\.ms$/ }).waitFor();
  const send = page.locator("form", { hasText: "Send a record" });
  await send.locator("input[name=key]").fill("user-7");
  await send.locator("textarea[name=value]").fill('{"hello": "from the browser"}');
  await send.locator("textarea[name=headers]").fill("origin: browser");
  await send.locator("button[type=submit]").click();
  await send.locator(".notice", { hasText: /^sent to partition [01] at offset 0$/ }).waitFor();
  step("sent a record: " + (await send.locator(".notice").innerText()));

  // Find it in the record browser by its key alone: the browser reads the
  // partition the key maps to.
  await page.locator("main a", { hasText: "Browse records" }).click();
  const records = page.locator("form", { hasText: "partition" }).first();
  await records.locator("input[name=key]").fill("user-7");
  await records.locator("button[type=submit]").click();
  const sent = page.locator("tr.record", { hasText: "user-7" });
  await sent.waitFor();
  const value = await sent.locator("td").nth(3).innerText();
  if (!value.includes('"hello": "from the browser"')) throw new Error("the sent value shows as " + JSON.stringify(value));
  await sent.locator("td", { hasText: "origin:" }).waitFor();
  await shot("records");
  step("found the record in the record browser");

  // A value that is markup shows as text and runs nothing.
  await page.goto(url + "#/topics/xss/records");
  await page.locator("tr.record pre", { hasText: XSS }).waitFor();
  const text = await page.locator("tr.record pre").first().textContent();
  if (text !== XSS) throw new Error("the <script> value shows as " + JSON.stringify(text));
  const scripts = await page.locator("main script").count();
  if (scripts) throw new Error(scripts + " script elements in the page's content");
  step("a <script> value shows as text");

  // A group's lag, from the groups list.
  await page.locator("nav a", { hasText: "Groups" }).click();
  await page.locator("main table a", { hasText: /^lagging$/ }).click();
  await page.locator("strong.lag", { hasText: /^3$/ }).waitFor();
  // The chart's lag comes from the broker's sampler (every 5 s), not from
  // this page: wait for a poll that carries the sample.
  await page.waitForResponse(async (r) => r.url().includes("/api/groups/lagging") && (await r.json()).lag_history.lag.includes(3));
  const row = page.locator("main tr", { hasText: "jobs" });
  const cells = await row.locator("td").allInnerTexts();
  if (cells.slice(1, 5).join(" ") !== "0 2 5 3") throw new Error("the group's partition row reads " + JSON.stringify(cells));
  await shot("group");
  step("group lagging has lag 3, charted by the broker");

  // A page whose data fails to load says so.
  await page.goto(url + "#/topics/doesnotexist");
  await page.locator("#error", { hasText: "doesnotexist" }).waitFor();
  if (await page.locator("form", { hasText: "Send a record" }).isVisible()) throw new Error("a missing topic's page offers to send to it");
  step("a missing topic shows: " + (await page.locator("#error").innerText()));

  // The overview again, once its charts have a few samples to draw.
  const sampled = page.waitForResponse(async (r) => r.url().includes("/api/history") && (await r.json()).at_ms.length >= 3);
  await page.locator("nav a", { hasText: "Overview" }).click();
  await sampled;
  await page.locator("main td", { hasText: /^Version$/ }).waitFor();
  await shot("overview");
  step("overview charted");

  if (problems.length) throw new Error(problems.join("; "));
  step("no dialog, no page error");
}

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  let code = 0;
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(Number(process.env.BROOKLET_BROWSER_TIMEOUT_MS || 30000));
  const problems = [];
  page.on("dialog", (d) => { problems.push("a " + d.type() + " dialog opened: " + d.message()); d.dismiss().catch(() => {}); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  // A failed fetch (the 404 the last step provokes) logs "Failed to load
  // resource"; any other console error (a CSP violation, say) is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push("console error: " + m.text());
  });
  try {
    await main(page, problems);
  } catch (e) {
    code = 1;
    console.error("FAILED: " + e.message);
    if (problems.length) console.error("also: " + problems.join("; "));
    await page.screenshot({ path: path.join(shots, "failed.png") }).catch(() => {});
  } finally {
    await browser.close();
  }
  process.exit(code);
})().catch((e) => { console.error("FAILED: " + (e && e.stack || e)); process.exit(1); });
