// Bundle the page into dist/: index.html, app.js, app.css. Everything the page loads is
// in these files (mqtt.js and uPlot included): nothing is fetched from outside the Pi.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
try {
  await build({
    entryPoints: { app: join(here, 'src', 'main.js') },
    bundle: true,
    minify: true,
    // A classic script: Mosquitto's http_dir sends no Content-Type, and browsers refuse a
    // module script without a JavaScript MIME type.
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    outdir: dist,
    legalComments: 'linked', // the libraries' licence texts go along, in app.js.LEGAL.txt
    logLevel: 'warning',
  });
} catch {
  console.error('dashboard: the build failed (esbuild said why, above)');
  process.exit(1);
}

// A content hash in the URLs: a browser never keeps an old app.js after `make dashboard`.
const tag = (name) => createHash('sha256').update(readFileSync(join(dist, name))).digest('hex').slice(0, 12);
const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('app.js', `app.js?v=${tag('app.js')}`)
  .replace('app.css', `app.css?v=${tag('app.css')}`);
writeFileSync(join(dist, 'index.html'), html);
console.log('dashboard: built %s', dist);
