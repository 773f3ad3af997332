// Vite builds the app into dist/: index.html (served with no-cache) and assets/ with content hashes in their
// names (served immutable by api/webapp.py). JSX goes through Vite's own transform with Preact's runtime
// (tsconfig's jsxImportSource), so no Babel plugin is needed.
import { defineConfig } from 'vite';

export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    // The CSP forbids inline scripts and styles: nothing may be inlined as a data: URL module either.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    port: 5173,
    // The dev server proxies the API, so the app talks to one origin as it does when the API serves it.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
