// Bundle the page into dist/ (app.js, app.css; index.html copied). The WASM core
// (kappa_web.js, kappa_web_bg.wasm) is put in dist/ by build-wasm.sh, which runs first.
import { build } from 'esbuild';
import { copyFileSync } from 'node:fs';

await build({
  entryPoints: { app: 'src/app.js' },
  bundle: true, minify: true, format: 'esm', target: ['es2020'],
  outdir: 'dist', legalComments: 'none', logLevel: 'info',
});
copyFileSync('index.html', 'dist/index.html');
