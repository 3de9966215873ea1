// The pages' build: src/ -> dist/ (checked in, so serving them needs no Node.js). Two pages
// of one build: the viewer (index.html, /viewer/) and the operator page (admin.html,
// /admin/); code both use (fhirclient, the sign-in, dom.js) is one shared chunk.
// Deterministic: the same sources and package-lock.json give the same bytes, which is how
// a check can tell that dist/ was rebuilt (`npm ci && npm run build && git diff --exit-code dist`).
import { readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const PAGES = [
  { html: 'index.html', js: 'src/main.js' },
  { html: 'admin.html', js: 'src/admin/main.js' },
];

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { main: 'src/main.js', admin: 'src/admin/main.js', style: 'src/style.css' },
  bundle: true,
  splitting: true,
  format: 'esm',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  minify: true,
  charset: 'utf8',
  legalComments: 'eof',
  entryNames: '[name]-[hash]',
  chunkNames: 'shared-[hash]',
  outdir: dist,
  metafile: true,
  // fhirclient's "pure" build: no fetch/AbortController polyfills for old browsers
  define: { FHIRCLIENT_PURE: 'true', 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});

const outputs = Object.entries(result.metafile.outputs);
const named = (entry) => basename(outputs.find(([, o]) => o.entryPoint === entry)[0]);
for (const page of PAGES) {
  const template = await readFile(join(here, 'src', page.html), 'utf8');
  const html = template.replace('{{js}}', named(page.js)).replace('{{css}}', named('src/style.css'));
  await writeFile(join(dist, page.html), html);
}

for (const [file, output] of outputs) console.log(`${basename(file)}\t${output.bytes} bytes`);
