// The viewer's build: src/ -> dist/ (checked in, so serving it needs no Node.js).
// Deterministic: the same sources and package-lock.json give the same bytes, which is how
// a check can tell that dist/ was rebuilt (`npm ci && npm run build && git diff --exit-code dist`).
import { readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['src/main.js', 'src/style.css'],
  bundle: true,
  format: 'esm',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  minify: true,
  charset: 'utf8',
  legalComments: 'eof',
  entryNames: '[name]-[hash]',
  outdir: dist,
  metafile: true,
  // fhirclient's "pure" build: no fetch/AbortController polyfills for old browsers
  define: { FHIRCLIENT_PURE: 'true', 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});

const outputs = Object.entries(result.metafile.outputs);
const named = (entry) => basename(outputs.find(([, o]) => o.entryPoint === entry)[0]);
const template = await readFile(join(here, 'src', 'index.html'), 'utf8');
const page = template.replace('{{js}}', named('src/main.js')).replace('{{css}}', named('src/style.css'));
await writeFile(join(dist, 'index.html'), page);

for (const [file, output] of outputs) console.log(`${basename(file)}\t${output.bytes} bytes`);
