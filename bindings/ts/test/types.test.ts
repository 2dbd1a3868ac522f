// The package's public types: what a TypeScript app sees must say exactly what it gets.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const dist = fileURLToPath(new URL("../../dist/", import.meta.url));

test("no `any` in the public declarations", () => {
  const files = readdirSync(dist).filter((f) => f.endsWith(".d.ts"));
  assert.ok(files.includes("index.d.ts"), `no index.d.ts in ${dist}`);
  for (const file of files) {
    const text = readFileSync(dist + file, "utf8");
    const found = text.split("\n").filter((line) => /\bany\b/.test(line.replace(/\/\/.*|\/\*.*\*\//g, "")));
    assert.deepEqual(found, [], `${file} mentions any`);
  }
});
