// Drives headless Chromium over every page of the built book and reports
// what a reader would see broken. Run by tests/browser.rs, which builds the
// book, serves it over HTTP and passes:
//
//   node check.mjs BASE_URL SCREENSHOT_DIR CHROMIUM PAGE...
//
// For every page: it loads without a console error or an uncaught
// exception; every image (the SVG charts and diagrams) loaded with a size;
// every link to another page of the book answers 200; every code block has
// text. Then the search, opened with `?search=ENOBUFS`, must list results.
// A few screenshots are kept in SCREENSHOT_DIR for a person to look at.
// Exit status 0 when everything held, 1 with one line per problem.

import { chromium } from "playwright-core";

const [base, shots, executable, ...pages] = process.argv.slice(2);
const problems = [];
const problem = (page, what) => problems.push(`${page}: ${what}`);

const browser = await chromium.launch({ executablePath: executable, headless: true });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const checkedLinks = new Map();

// A screenshot, for a person to look at: a failure is a problem to report,
// never a crash of the whole check.
async function shot(page, path, label) {
  try {
    await page.screenshot({ path });
  } catch (e) {
    problem(label, `no screenshot: ${e.message.split("\n")[0]}`);
  }
}

for (const name of pages) {
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  const response = await page
    .goto(`${base}/${name}`, { waitUntil: "load" })
    .catch((e) => ({ status: () => e.message.split("\n")[0] }));
  if (!response || response.status() !== 200) {
    problem(name, `answered ${response ? response.status() : "nothing"}`);
    await page.close();
    continue;
  }
  for (const e of errors) problem(name, `console error: ${e}`);

  // Images: loaded, with a size (a broken SVG has naturalWidth 0).
  const images = await page.$$eval("img", (all) =>
    all.map((i) => ({ src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0 })),
  );
  for (const i of images) if (!i.ok) problem(name, `image did not load: ${i.src}`);

  // Code blocks: each has some text (an include that went wrong renders empty).
  const empty = await page.$$eval("pre code", (all) =>
    all.filter((c) => c.textContent.trim().length === 0).length,
  );
  if (empty > 0) problem(name, `${empty} empty code block(s)`);

  // Links inside the book: every target page answers 200.
  const links = await page.$$eval("main a[href]", (all) => all.map((a) => a.href));
  for (const href of links) {
    const url = new URL(href);
    if (!url.href.startsWith(base)) continue; // outside the book: not ours to check
    url.hash = "";
    if (!checkedLinks.has(url.href)) {
      const r = await context.request.get(url.href);
      checkedLinks.set(url.href, r.status());
    }
    const status = checkedLinks.get(url.href);
    if (status !== 200) problem(name, `link to ${url.href} answered ${status}`);
  }
  await page.close();
}

// Search: the book's own search box, driven by the URL.
{
  const page = await context.newPage();
  const results = page.locator("#mdbook-searchresults li, #searchresults li");
  try {
    await page.goto(`${base}/index.html?search=ENOBUFS`, { waitUntil: "load" });
    await results.first().waitFor({ timeout: 10000 });
    const n = await results.count();
    if (n === 0) problem("search", "ENOBUFS found nothing");
  } catch {
    problem("search", "no results listed for ENOBUFS within 10 s");
  }
  await shot(page, `${shots}/search-ENOBUFS.png`, "search");
  await page.close();
}

// Screenshots of a few pages, for a person to look at.
for (const name of ["04_uring.html", "04_uring_hardening.html", "05_uring_multishot.html", "05_uring_multishot_hardening.html", "results.html"]) {
  if (!pages.includes(name)) continue;
  const page = await context.newPage();
  await page.goto(`${base}/${name}`, { waitUntil: "load" });
  await shot(page, `${shots}/${name.replace(".html", "")}.png`, name);
  await page.close();
}

await browser.close();
console.log(
  `${pages.length} pages, ${checkedLinks.size} distinct links inside the book checked, search tried`,
);
for (const p of problems) console.log(`problem: ${p}`);
process.exit(problems.length === 0 ? 0 : 1);
