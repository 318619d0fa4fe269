#!/usr/bin/env node
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const entry = join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(entry)) {
  process.stderr.write('scoreline is not built yet: run "npm install" (or "npm run build") in ' + join(__dirname, '..') + '\n');
  process.exit(2);
}
// `scoreline runs list | head`: the reader went away, which is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err && err.code === 'EPIPE') process.exit(process.exitCode || 0);
    throw err;
  });
}
require(entry).main().catch((err) => {
  process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`);
  process.exitCode = 1;
});
