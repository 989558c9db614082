// What the browser scenarios share: Chromium through playwright-core, axe-core, and
// checks a person would notice (horizontal scrolling, inline scripts running).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(join(process.env.NODE_PATH, "noop.js"));
export const { chromium } = require("playwright-core");
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export async function launch(config) {
  return chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
}

// Serious and critical axe-core findings: [{id, impact, help, targets}]. The page's CSP
// forbids inline scripts, so axe is evaluated through the debugging protocol.
export async function axeProblems(page, frame = page) {
  return frame.evaluate(async (source) => {
    if (!window.axe) (0, eval)(source);
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")) }));
  }, AXE);
}

export async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

// Whether an inline script added to the page runs (the CSP must stop it): an inline
// script runs as it is inserted, and a blocked one raises a policy violation event.
export async function inlineScriptRuns(page) {
  return page.evaluate(() => new Promise((resolve) => {
    document.addEventListener("securitypolicyviolation", (event) => {
      resolve({ ran: Boolean(window.__inlineRan), blocked: event.violatedDirective });
    }, { once: true });
    const script = document.createElement("script");
    script.textContent = "window.__inlineRan = true;";
    document.body.append(script);
    if (window.__inlineRan) resolve({ ran: true, blocked: null });
  }));
}

export function report(findings) {
  process.stdout.write(`${JSON.stringify(findings)}\n`);
}
