// Reads the kselftest harness's TAP output of one or more programs (one log each) and
// prints one "N passed, N failed, N skipped" line over all of them (a test is skipped only
// when the harness says "# SKIP"), then each failing test. A log whose plan ("1..N")
// promises more results than it has counts the missing ones as failed.
// Exit status 1 when a test failed or the output has no results.
import { readFileSync } from "node:fs";

let passed = 0;
let skipped = 0;
const failed = [];
let seen = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  let planned = 0;
  let here = 0;
  for (const line of text.split("\n")) {
    const plan = /^1\.\.(\d+)/.exec(line);
    if (plan) planned = Number(plan[1]);
    const m = /^(not ok|ok) \d+ (\S+)(.*)$/.exec(line);
    if (!m) continue;
    here++;
    if (/#\s*SKIP/i.test(m[3])) skipped++;
    else if (m[1] === "ok") passed++;
    else failed.push(m[2]);
  }
  if (planned > here)
    for (let i = here; i < planned; i++) failed.push(`(${file} test ${i + 1}: no result, the run stopped)`);
  if (here === 0 && planned === 0) failed.push(`(${file}: no results)`);
  seen += here;
}
console.log(`${passed} passed, ${failed.length} failed, ${skipped} skipped`);
for (const f of failed) console.log(`  failed: ${f}`);
process.exit(failed.length > 0 || seen === 0 ? 1 : 0);
