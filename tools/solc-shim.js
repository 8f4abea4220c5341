#!/usr/bin/env node
// Why: forge wants a native `solc`, which it cannot download here. This shim
// makes solc-js (npm `solc`, pinned in package.json) answer the two ways forge
// calls it: `--version`, and `--standard-json` with the input on stdin.
// It prints ONLY the compiler's JSON so forge can parse it.
'use strict';
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\n');
  process.stdout.write(`Version: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}
let basePath = process.cwd();
const i = args.indexOf('--base-path');
if (i >= 0 && args[i + 1]) basePath = args[i + 1];
const fs = require('fs');
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  // Resolve imports that forge did not inline (it usually sends all sources).
  const findImports = (p) => {
    for (const candidate of [path.resolve(basePath, p), path.resolve(p)]) {
      if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
    }
    return { error: `File not found: ${p}` };
  };
  process.stdout.write(solc.compile(input, { import: findImports }));
});
