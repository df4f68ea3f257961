/** Fenced code blocks of a Markdown file, for tests that run a document's code as written. */

export interface CodeBlock {
  /** The info string after the fence: its first word is the language. */
  readonly info: string;
  readonly lang: string;
  readonly code: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The nearest `#`/`##`/`###` heading above the block. */
  readonly heading: string;
}

/** Every fenced (```) block of `md`, in order. */
export function codeBlocks(md: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = md.split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^#{1,6}\s+(.*)$/.exec(line);
    if (h) heading = h[1]!.trim();
    const open = /^```(.*)$/.exec(line);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    if (i === lines.length) throw new Error(`unclosed code block at line ${start + 1}`);
    const info = open[1]!.trim();
    blocks.push({
      info,
      lang: info.split(/\s+/)[0] ?? "",
      code: `${body.join("\n")}\n`,
      line: start + 1,
      heading,
    });
  }
  return blocks;
}

/**
 * Turns each line `EXPR; // LITERAL` (LITERAL a boolean or a decimal/hex number) into a
 * strict-equality check, so a snippet whose comments state its results proves them when
 * run. Returns the code and the number of checks it now makes.
 */
export function checkResultComments(code: string): { code: string; checks: number } {
  let checks = 0;
  const out = code.split("\n").map((line, i) => {
    const m = /^(\s*)([^/\s].*?);\s*\/\/\s*(true|false|-?0x[0-9a-fA-F_]+|-?\d[\d_]*)\s*$/.exec(line);
    if (!m || /^(const|let|var|import|export|return)\b/.test(m[2]!)) return line;
    checks++;
    return `${m[1]}__expect(${m[2]}, ${m[3]}, ${i + 1});`;
  });
  const prelude =
    "const __expect = (got, want, line) => {\n" +
    "  if (got !== want) throw new Error('line ' + line + ': got ' + String(got) + ', the comment says ' + String(want));\n" +
    "};\n";
  return { code: prelude + out.join("\n"), checks };
}
