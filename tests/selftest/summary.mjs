// Reads the kselftest harness's TAP output and prints "N passed, N failed, N skipped"
// (a test is skipped only when the harness says "# SKIP"), then each failing test.
// Exit status 1 when a test failed or the output has no results.
import { readFileSync } from "node:fs";

const text = readFileSync(process.argv[2], "utf8");
let passed = 0;
let skipped = 0;
const failed = [];
let planned = 0;
for (const line of text.split("\n")) {
  const plan = /^1\.\.(\d+)/.exec(line);
  if (plan) planned = Number(plan[1]);
  const m = /^(not ok|ok) \d+ (\S+)(.*)$/.exec(line);
  if (!m) continue;
  if (/#\s*SKIP/i.test(m[3])) skipped++;
  else if (m[1] === "ok") passed++;
  else failed.push(m[2]);
}
const seen = passed + skipped + failed.length;
if (planned > seen)
  for (let i = seen; i < planned; i++) failed.push(`(test ${i + 1}: no result, the run stopped)`);
console.log(`${passed} passed, ${failed.length} failed, ${skipped} skipped`);
for (const f of failed) console.log(`  failed: ${f}`);
process.exit(failed.length > 0 || seen === 0 ? 1 : 0);
